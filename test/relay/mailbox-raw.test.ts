/**
 * A /parley/mailbox/1.0.0 client written from the spec (protocols/mailbox/README.md
 * §5–§7) alone: a bare libp2p node writing varint-length-prefixed protobuf
 * frames with it-length-prefixed and the pb codec, no MailboxClient, so that
 * what the host does is checked against the contract rather than against
 * parley's own client.
 */
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import * as lp from 'it-length-prefixed'
import { createLibp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import { Request, Response } from '../../protocols/mailbox/pb/mailbox.js'
import { useNetwork } from '../fixtures/network.js'
import type { ParleyRelay } from '../../index.js'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

const PROTOCOL = '/parley/mailbox/1.0.0'

/** One stream to the host: write requests, read responses, as the spec frames them. */
interface RawStream {
  stream: Stream
  send(request: Partial<Request>): void
  sendRaw(bytes: Uint8Array): void
  /** The next response, or undefined when the host ended the stream. */
  next(): Promise<Response | undefined>
  /** The byte length of each frame read so far. */
  sizes: number[]
}

describe('mailbox host, from a client written from the spec alone', () => {
  const net = useNetwork()
  let peers: Libp2p[] = []

  afterEach(async () => {
    const stopping = peers
    peers = []
    await Promise.allSettled(stopping.map(async p => { await p.stop() }))
  })

  async function rawPeer (): Promise<Libp2p> {
    const node = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    peers.push(node)
    return node
  }

  async function open (node: Libp2p, relay: ParleyRelay): Promise<RawStream> {
    const stream = await node.dialProtocol(relay.multiaddrs[0], PROTOCOL)
    const frames = lp.decode(stream)[Symbol.asyncIterator]()
    const sizes: number[] = []
    return {
      stream,
      sizes,
      send (request) { stream.send(lp.encode.single(Request.encode(request))) },
      sendRaw (bytes) { stream.send(bytes) },
      async next () {
        const frame = await frames.next() as IteratorResult<Uint8ArrayList>
        if (frame.done === true) return undefined
        sizes.push(frame.value.byteLength)
        return Response.decode(frame.value)
      }
    }
  }

  async function ask (node: Libp2p, relay: ParleyRelay, request: Partial<Request>): Promise<Response> {
    const s = await open(node, relay)
    s.send(request)
    const response = await s.next()
    await s.stream.close()
    if (response == null) throw new Error('no answer')
    return response
  }

  it('registers, deposits, opens, receives pushes, and deletes as the spec says', async () => {
    const relay = await net.relay()
    const bob = await rawPeer()
    const alice = await rawPeer()

    const registered = await ask(bob, relay, { register: {} })
    expect(registered.status).toBe(Response.Status.OK)
    expect(registered.info).toMatchObject({ envelopes: 0, maxEnvelopes: 1000 })

    const mailbox = bob.peerId.toMultihash().bytes
    const deposited = await ask(alice, relay, { deposit: { mailbox, envelope: Uint8Array.from([1, 2, 3]), ttlMs: 0n } })
    expect(deposited.status).toBe(Response.Status.OK)
    expect(deposited.id?.byteLength).toBeGreaterThan(0)
    expect(deposited.id?.byteLength).toBeLessThanOrEqual(32)
    expect(deposited.expiresAt).toBeGreaterThan(BigInt(Date.now()))

    const session = await open(bob, relay)
    session.send({ open: { window: 0 } })
    const opened = await session.next()
    expect(opened).toMatchObject({ status: Response.Status.OK, envelopes: [] })
    expect(opened?.info?.envelopes).toBe(1)
    const push = await session.next()
    expect(push?.status).toBe(Response.Status.OK)
    expect(push?.envelopes.map(e => [e.id, Array.from(e.envelope)])).toEqual([[deposited.id, [1, 2, 3]]])

    // a new deposit while the session is open is pushed at once
    const second = await ask(alice, relay, { deposit: { mailbox, envelope: Uint8Array.from([4]), ttlMs: 1000n } })
    const pushed = await session.next()
    expect(pushed?.envelopes.map(e => e.id)).toEqual([second.id])
    expect(pushed?.envelopes[0].expiresAt).toBe(second.expiresAt)

    // Delete is not answered; closing our side ends the session and the host closes its own
    session.send({ delete: { ids: [deposited.id as Uint8Array<ArrayBuffer>, second.id as Uint8Array<ArrayBuffer>] } })
    await session.stream.close()
    expect(await session.next()).toBeUndefined()

    const reopened = await open(bob, relay)
    reopened.send({ open: { window: 0 } })
    expect((await reopened.next())?.info?.envelopes).toBe(0)
    await reopened.stream.close()
  })

  it('answers requests on one stream in order, INVALID for a request with no or several fields, FORBIDDEN for a Delete outside a session', async () => {
    const relay = await net.relay()
    const bob = await rawPeer()
    const s = await open(bob, relay)
    s.send({})
    s.send({ register: {}, open: { window: 0 } })
    s.send({ delete: { ids: [new Uint8Array(16)] } })
    s.send({ register: {} })
    s.send({ deposit: { mailbox: Uint8Array.from([1, 2, 3]), envelope: Uint8Array.from([1]), ttlMs: 0n } })
    s.send({ deposit: { mailbox: bob.peerId.toMultihash().bytes, envelope: new Uint8Array(0), ttlMs: 0n } })
    const statuses = []
    for (let i = 0; i < 6; i++) statuses.push((await s.next())?.status)
    expect(statuses).toEqual([
      Response.Status.INVALID, Response.Status.INVALID, Response.Status.FORBIDDEN, Response.Status.OK, Response.Status.INVALID, Response.Status.INVALID
    ])
    await s.stream.close()
  })

  it('answers an undecodable frame INVALID and closes the stream', async () => {
    const relay = await net.relay()
    const bob = await rawPeer()
    const s = await open(bob, relay)
    // a length-delimited field whose length runs past the frame's end
    s.sendRaw(lp.encode.single(Uint8Array.from([0x0a, 0x7f, 0x01])).subarray())
    expect((await s.next())?.status).toBe(Response.Status.INVALID)
    expect(await s.next()).toBeUndefined()
  })

  it('resets a stream that announces a frame over 1 MiB, without waiting for its bytes', async () => {
    const relay = await net.relay()
    const bob = await rawPeer()
    const s = await open(bob, relay)
    // the varint of 1 MiB + 1, and nothing after it
    s.sendRaw(Uint8Array.from([0x81, 0x80, 0x40]))
    await expect(s.next()).rejects.toThrow()
  })

  it('replaces an owner\'s session with a newer one, closing the old stream', async () => {
    const relay = await net.relay()
    const bob = await rawPeer()
    expect((await ask(bob, relay, { register: {} })).status).toBe(Response.Status.OK)
    const first = await open(bob, relay)
    first.send({ open: { window: 0 } })
    expect((await first.next())?.status).toBe(Response.Status.OK)
    const second = await open(bob, relay)
    second.send({ open: { window: 0 } })
    expect((await second.next())?.status).toBe(Response.Status.OK)
    expect(await first.next()).toBeUndefined()
    expect(relay.mailbox?.openSessions).toBe(1)
    await second.stream.close()
  })

  it('closes a stream that sends no request within the idle timeout, but never an open session', async () => {
    const relay = await net.relay({ mailbox: { idleTimeout: 200 } })
    const bob = await rawPeer()
    expect((await ask(bob, relay, { register: {} })).status).toBe(Response.Status.OK)
    const session = await open(bob, relay)
    session.send({ open: { window: 0 } })
    expect((await session.next())?.status).toBe(Response.Status.OK)

    const idle = await open(bob, relay)
    // the host ends the idle stream by itself
    expect(await idle.next()).toBeUndefined()
    // the session, idle just as long, still gets what is deposited
    const alice = await rawPeer()
    const { id } = await ask(alice, relay, { deposit: { mailbox: bob.peerId.toMultihash().bytes, envelope: Uint8Array.from([7]), ttlMs: 0n } })
    expect((await session.next())?.envelopes.map(e => e.id)).toEqual([id])
    await session.stream.close()
  })

  it('bounds open sessions: past maxSessions an Open is UNAVAILABLE with a retry-after', async () => {
    const relay = await net.relay({ mailbox: { maxSessions: 1 } })
    const bob = await rawPeer()
    const carol = await rawPeer()
    for (const owner of [bob, carol]) expect((await ask(owner, relay, { register: {} })).status).toBe(Response.Status.OK)
    const first = await open(bob, relay)
    first.send({ open: { window: 0 } })
    expect((await first.next())?.status).toBe(Response.Status.OK)
    const refused = await ask(carol, relay, { open: { window: 0 } })
    expect(refused.status).toBe(Response.Status.UNAVAILABLE)
    expect(refused.retryAfterMs).toBeGreaterThan(0)
    await first.stream.close()
    expect(await first.next()).toBeUndefined()
    expect((await ask(carol, relay, { open: { window: 0 } })).status).toBe(Response.Status.OK)
  })

  it('refuses mailbox streams past maxStreamsPerConnection on one connection', async () => {
    const relay = await net.relay({ mailbox: { maxStreamsPerConnection: 2 } })
    const bob = await rawPeer()
    const held = [await open(bob, relay), await open(bob, relay)]
    // the third is not served: its request goes unanswered (the stream is reset or ended)
    const third = await open(bob, relay).catch(() => undefined)
    if (third != null) {
      const answer = await (async () => {
        third.send({ register: {} })
        return third.next()
      })().catch(() => undefined)
      expect(answer).toBeUndefined()
    }
    // the two held are served, and once one goes another is
    held[0].send({ register: {} })
    expect((await held[0].next())?.status).toBe(Response.Status.OK)
    await held[1].stream.close()
    expect(await held[1].next()).toBeUndefined()
    expect((await ask(bob, relay, { register: {} })).status).toBe(Response.Status.OK)
    await held[0].stream.close()
  })

  it('splits pushes of large envelopes so that no frame is over 1 MiB', async () => {
    const relay = await net.relay()
    const bob = await rawPeer()
    const alice = await rawPeer()
    expect((await ask(bob, relay, { register: {} })).status).toBe(Response.Status.OK)
    const depositing = await open(alice, relay)
    for (let i = 0; i < 20; i++) depositing.send({ deposit: { mailbox: bob.peerId.toMultihash().bytes, envelope: new Uint8Array(65_536).fill(i), ttlMs: 0n } })
    for (let i = 0; i < 20; i++) expect((await depositing.next())?.status).toBe(Response.Status.OK)
    await depositing.stream.close()

    const session = await open(bob, relay)
    session.send({ open: { window: 0 } })
    expect((await session.next())?.info?.envelopes).toBe(20)
    const pushes: number[][] = []
    while (pushes.flat().length < 20) pushes.push((await session.next())?.envelopes.map(e => e.envelope[0]) ?? [])
    expect(pushes.flat()).toEqual(Array.from({ length: 20 }, (_, i) => i))
    expect(pushes.length).toBeGreaterThan(1)
    expect(Math.max(...session.sizes)).toBeLessThanOrEqual(1_048_576)
    await session.stream.close()
  })
})
