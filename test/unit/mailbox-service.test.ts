/**
 * The mailbox host service and MailboxClient in memory: a fake registrar that
 * captures the host's handler, in-memory stream pairs as connections, the
 * store in memory, and a FakeClock for leases, TTLs, rate limits, idle
 * timeouts and the sweep.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import fc from 'fast-check'
import * as lp from 'it-length-prefixed'
import { afterEach, describe, expect, it } from 'vitest'
import { MAILBOX_PROTOCOL, MailboxClient } from '../../protocols/mailbox/client.js'
import { Request, Response } from '../../protocols/mailbox/pb/mailbox.js'
import { MAILBOX_DEFAULTS } from '../../relay/mailbox/limits.js'
import { MailboxService } from '../../relay/mailbox/service.js'
import { MailboxStore } from '../../relay/mailbox/store.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { StoredEnvelopeInfo } from '../../protocols/mailbox/client.js'
import type { MailboxLimits } from '../../relay/mailbox/limits.js'
import type { MailboxObserver } from '../../relay/mailbox/service.js'
import type { Connection, ConnectionLimits, PeerId, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import type { Uint8ArrayList } from 'uint8arraylist'

const DAY = 24 * 3600_000
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

async function makePeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

interface Host {
  service: MailboxService
  store: MailboxStore
  clock: FakeClock
  handles: Array<{ protocol: string, options?: StreamHandlerOptions }>
  events: { deposited: number[], refused: string[], expired: Array<{ envelopes: number, mailboxes: number }> }
  /** A stream from `peer` to the host, served by the host's handler; `limits` makes the connection a limited one. */
  connect(peer: PeerId, options?: { limits?: ConnectionLimits, ip?: string }): Promise<Stream>
  /** A MailboxClient for `peer` whose dials reach this host. */
  client(peer: PeerId): MailboxClient
}

describe('mailbox host service (in memory, fake clock)', () => {
  let stopping: Array<() => Promise<void>> = []

  afterEach(async () => {
    const running = stopping
    stopping = []
    for (const stop of running) await stop()
  })

  async function host (limits: Partial<MailboxLimits> = {}): Promise<Host> {
    const clock = new FakeClock()
    const store = await MailboxStore.open({ clock })
    const events: Host['events'] = { deposited: [], refused: [], expired: [] }
    const observer: MailboxObserver = {
      deposited: size => { events.deposited.push(size) },
      refused: (request, status) => { events.refused.push(`${request}:${status}`) },
      expired: swept => { events.expired.push(swept) }
    }
    let handler: StreamHandler | undefined
    const handles: Host['handles'] = []
    const registrar = {
      async handle (protocol: string, h: StreamHandler, options?: StreamHandlerOptions) {
        handler = h
        handles.push({ protocol, options })
      },
      async unhandle () { handler = undefined }
    } as unknown as Registrar
    const service = new MailboxService({ registrar, logger: defaultLogger() }, { store, limits: { ...MAILBOX_DEFAULTS, ...limits }, clock, observer })
    await service.start()
    stopping.push(async () => {
      await service.stop()
      store.close()
    })

    const connect = async (peer: PeerId, options: { limits?: ConnectionLimits, ip?: string } = {}): Promise<Stream> => {
      const [outbound, inbound] = await streamPair()
      const connection = {
        remotePeer: peer,
        remoteAddr: multiaddr(`/ip4/${options.ip ?? '198.51.100.7'}/tcp/4001`),
        limits: options.limits
      } as unknown as Connection
      if (handler == null) throw new Error('the host serves nothing')
      Promise.resolve(handler(inbound, connection)).catch(() => {})
      return outbound
    }
    return {
      service,
      store,
      clock,
      handles,
      events,
      connect,
      client: (peer) => new MailboxClient({
        dialer: { dialProtocol: async (_host, protocol) => { expect(protocol).toBe(MAILBOX_PROTOCOL); return connect(peer) } },
        logger: defaultLogger()
      })
    }
  }

  const HOST_ID = makePeer()

  it('serves /parley/mailbox/1.0.0 only on unlimited connections, with a bound on streams per connection', async () => {
    const h = await host({ maxStreamsPerConnection: 3 })
    expect(h.handles).toEqual([{ protocol: MAILBOX_PROTOCOL, options: expect.objectContaining({ runOnLimitedConnection: false, maxInboundStreams: 3 }) }])

    // were a limited connection's stream handed over anyway, it would be reset unanswered
    const stream = await h.connect(await makePeer(), { limits: { bytes: 1000n } })
    const closed = new Promise(resolve => { stream.addEventListener('close', resolve, { once: true }) })
    stream.send(lp.encode.single(Request.encode({ register: {} })))
    await closed
    expect(h.store.held.mailboxes).toBe(0)
  })

  it('registers, deposits and pushes through MailboxClient; the lease and the TTL run on the host\'s clock', async () => {
    // a daily sweep: the fake clock runs every one of them over the weeks below
    const h = await host({ sweepInterval: DAY })
    const bob = await makePeer()
    const alice = await makePeer()
    const hostId = await HOST_ID
    const info = await h.client(bob).register(hostId)
    expect(info.expiresAt).toBe(BigInt(h.clock.now() + 30 * DAY))

    // a TTL over the maximum is shortened to it; 0 is the default
    const long = await h.client(alice).deposit(hostId, bob, bytes('long'), { ttlMs: 365 * DAY })
    expect(long.expiresAt).toBe(h.clock.now() + 30 * DAY)
    const plain = await h.client(alice).deposit(hostId, bob, bytes('plain'))
    expect(plain.expiresAt).toBe(h.clock.now() + 14 * DAY)
    expect(h.events.deposited).toEqual([4, 5])

    // past its TTL the envelope is not pushed, even before the sweep deletes it
    h.clock.advance(14 * DAY)
    const session = await h.client(bob).open(hostId)
    const first = await session[Symbol.asyncIterator]().next()
    expect((first.value as StoredEnvelopeInfo[]).map(e => e.id)).toEqual([long.id])
    await session.close()

    // past the lease (renewed by the Open), the mailbox is gone for depositors
    h.clock.advance(30 * DAY)
    await expect(h.client(alice).deposit(hostId, bob, bytes('late'))).rejects.toMatchObject({ name: 'MailboxRefusedError', status: Response.Status.NO_SUCH_MAILBOX })
    expect(h.events.refused).toEqual(['deposit:NO_SUCH_MAILBOX'])
  })

  it('sweeps on its timer and reports what expired', async () => {
    const h = await host({ sweepInterval: 1000 })
    const bob = await makePeer()
    const hostId = await HOST_ID
    await h.client(bob).register(hostId)
    await h.client(await makePeer()).deposit(hostId, bob, bytes('x'), { ttlMs: 500 })
    h.clock.advance(1000)
    expect(h.events.expired).toEqual([{ envelopes: 1, mailboxes: 0 }])
    expect(h.store.held.envelopes).toBe(0)
  })

  it('rate-limits a depositor until its bucket refills on the host\'s clock', async () => {
    const h = await host({ depositsPerSecondPerPeer: 1, depositBurstPerPeer: 1 })
    const bob = await makePeer()
    const alice = h.client(await makePeer())
    const hostId = await HOST_ID
    await h.client(bob).register(hostId)
    await alice.deposit(hostId, bob, bytes('1'))
    await expect(alice.deposit(hostId, bob, bytes('2'))).rejects.toMatchObject({ status: Response.Status.RATE_LIMITED, retryAfterMs: 1000 })
    h.clock.advance(1000)
    await alice.deposit(hostId, bob, bytes('3'))
  })

  it('closes a stream idle past the timeout, and resets it one timeout later if the peer keeps its side open', async () => {
    const h = await host({ idleTimeout: 5000 })
    const stream = await h.connect(await makePeer())
    const frames = lp.decode(stream)[Symbol.asyncIterator]()
    const ended = frames.next()
    h.clock.advance(5000)
    expect((await ended).done).toBe(true)
    const closed = new Promise<Event>(resolve => { stream.addEventListener('close', resolve, { once: true }) })
    h.clock.advance(5000)
    expect(await closed).toMatchObject({ error: expect.anything() })
  })

  it('acts on nothing after it idled a stream out, and the client sends such a request again on a new stream', async () => {
    const h = await host({ idleTimeout: 5000 })
    const bob = await makePeer()
    const hostId = await HOST_ID
    const client = h.client(bob)
    await client.register(hostId)
    // the host closes the idle request stream; the client learns it only later
    h.clock.advance(5000)
    await client.register(hostId)
    const alice = h.client(await makePeer())
    await alice.deposit(hostId, bob, bytes('1'))
    h.clock.advance(5000)
    await alice.deposit(hostId, bob, bytes('2'))
    // each deposit stored once
    expect(h.store.usage(bob.toMultihash().bytes).envelopes).toBe(2)
    await client.close()
    await alice.close()
  })

  it('answers requests in order on one stream, and a refusal leaves the stream usable', async () => {
    const h = await host()
    const bob = await makePeer()
    const stream = await h.connect(bob)
    const frames = lp.decode(stream)[Symbol.asyncIterator]()
    const next = async (): Promise<Response> => Response.decode((await frames.next()).value as Uint8ArrayList)
    stream.send(lp.encode.single(Request.encode({ open: { window: 0 } })))
    stream.send(lp.encode.single(Request.encode({ register: {} })))
    stream.send(lp.encode.single(Request.encode({ open: { window: 1000 } })))
    expect((await next()).status).toBe(Response.Status.NO_SUCH_MAILBOX)
    expect((await next()).status).toBe(Response.Status.OK)
    expect((await next()).status).toBe(Response.Status.OK)
    expect(h.service.openSessions).toBe(1)
    await stream.close()
    expect((await frames.next()).done).toBe(true)
    expect(h.service.openSessions).toBe(0)
  })

  it('survives hostile requests: any frames from any peer are answered or the stream is ended, and the host keeps serving with its totals true', async () => {
    const h = await host({ depositsPerSecondPerPeer: 1000, depositBurstPerPeer: 1000, depositsPerSecondPerIp: 1000, depositBurstPerIp: 1000, maxEnvelopesPerMailbox: 20 })
    const peers = await Promise.all([0, 1, 2].map(async () => makePeer()))
    const owner = peers[0]
    const hostId = await HOST_ID
    await h.client(owner).register(hostId)
    const id = fc.uint8Array({ minLength: 0, maxLength: 40 })
    const mailbox = fc.oneof(fc.constantFrom(...peers.map(p => p.toMultihash().bytes)), fc.uint8Array({ maxLength: 140 }))
    const request = fc.record({
      register: fc.option(fc.constant({}), { nil: undefined }),
      deposit: fc.option(fc.record({ mailbox, envelope: fc.uint8Array({ maxLength: 300 }), ttlMs: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }), { nil: undefined }),
      open: fc.option(fc.record({ window: fc.nat() }), { nil: undefined }),
      delete: fc.option(fc.record({ ids: fc.array(id, { maxLength: 5 }) }), { nil: undefined })
    })
    const frame = fc.oneof(
      { weight: 4, arbitrary: request.map(r => lp.encode.single(Request.encode(r as Partial<Request>)).subarray()) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => lp.encode.single(b).subarray()) }
    )
    await fc.assert(fc.asyncProperty(fc.constantFrom(...peers), fc.array(frame, { minLength: 1, maxLength: 6 }), async (from, frames) => {
      const stream = await h.connect(from)
      // reading from the start, as a client does, so that no answer is missed
      const answers = (async () => {
        const statuses: string[] = []
        try {
          for await (const buf of lp.decode(stream)) statuses.push(Response.decode(buf).status)
        } catch {
          // the host ended the stream: what a protocol break earns
        }
        return statuses
      })()
      try {
        for (const f of frames) stream.send(f)
        await stream.close()
      } catch {
        // the host may have reset the stream already
      }
      for (const status of await answers) expect(Object.values(Response.Status)).toContain(status)
    }), { seed: 0x3a11b0c5, numRuns: 150, timeout: 2000, interruptAfterTimeLimit: 30_000 })

    // still serving, and its totals are what the database holds
    await h.client(owner).register(hostId)
    const db = (h.store as any).db
    const envelopes = db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM envelopes').get()
    const mailboxes = db.prepare('SELECT COUNT(*) AS n FROM mailboxes').get()
    expect(h.store.held).toEqual({ mailboxes: mailboxes.n, envelopes: envelopes.n, bytes: envelopes.bytes })
    expect(h.store.held.mailboxes).toBeGreaterThanOrEqual(1)
  })
})
