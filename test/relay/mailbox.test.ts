import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as lp from 'it-length-prefixed'
import { afterEach, describe, expect, it } from 'vitest'
import { MAILBOX_PROTOCOL, MailboxClient, MailboxRefusedError } from '../../protocols/mailbox/client.js'
import { Request, Response } from '../../protocols/mailbox/pb/mailbox.js'
import { loadRelayConfig } from '../../relay/config.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { useNetwork } from '../fixtures/network.js'
import { httpGet, metricValue } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import { bareNode } from './hop.js'
import type { MailboxSession, StoredEnvelopeInfo } from '../../protocols/mailbox/client.js'
import type { ParleyRelay, RelayConfig } from '../../index.js'
import type { Libp2p } from '@libp2p/interface'

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
const text = (data: Uint8Array): string => new TextDecoder().decode(data)

/** Reads batches from a session until `count` envelopes came. */
async function receive (session: MailboxSession, count: number): Promise<StoredEnvelopeInfo[]> {
  const got: StoredEnvelopeInfo[] = []
  if (count === 0) return got
  for await (const batch of session) {
    got.push(...batch)
    if (got.length >= count) break
  }
  return got
}

async function refusal (promise: Promise<unknown>): Promise<MailboxRefusedError> {
  try {
    await promise
  } catch (err: any) {
    expect(err).toBeInstanceOf(MailboxRefusedError)
    return err
  }
  throw new Error('expected a refusal')
}

describe('mailbox host (/parley/mailbox/1.0.0 on the relay)', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()
  let peers: Libp2p[] = []
  let sessions: MailboxSession[] = []

  afterEach(async () => {
    const closing = sessions
    sessions = []
    await Promise.allSettled(closing.map(async s => { await s.close() }))
    const stopping = peers
    peers = []
    await Promise.allSettled(stopping.map(async p => { await p.stop() }))
  })

  /** A bare libp2p peer connected to the relay, and a MailboxClient on it. */
  async function client (relay: ParleyRelay): Promise<{ node: Libp2p, mailbox: MailboxClient }> {
    const node = await bareNode()
    peers.push(node)
    await node.dial(relay.multiaddrs[0])
    return { node, mailbox: new MailboxClient({ dialer: node, logger: node.logger }) }
  }

  async function open (c: { mailbox: MailboxClient }, relay: ParleyRelay, window?: number): Promise<MailboxSession> {
    const session = await c.mailbox.open(relay.peerId, { window })
    sessions.push(session)
    return session
  }

  async function relayWith (config: RelayConfig = {}): Promise<ParleyRelay> {
    return net.relay({ metrics: '127.0.0.1:0', ...config })
  }

  it('registers, takes a deposit from another peer, delivers it on open, and forgets it once deleted; new deposits are pushed at once', async () => {
    const relay = await relayWith()
    const bob = await client(relay)
    const alice = await client(relay)

    const info = await bob.mailbox.register(relay.peerId)
    expect(info).toMatchObject({ envelopes: 0, bytes: 0n, maxEnvelopes: 1000, maxBytes: 16n * 1024n * 1024n })
    expect(Number(info.expiresAt)).toBeGreaterThan(Date.now() + 29 * 24 * 3600_000)

    const stored = await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('sealed 1'))
    expect(stored.id.byteLength).toBeGreaterThan(0)
    expect(stored.id.byteLength).toBeLessThanOrEqual(32)
    // the default TTL: 14 days
    expect(stored.expiresAt).toBeGreaterThan(Date.now() + 13 * 24 * 3600_000)
    expect(stored.expiresAt).toBeLessThanOrEqual(Date.now() + 14 * 24 * 3600_000)
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('sealed 2'), { ttlMs: 60_000 })

    const session = await open(bob, relay)
    expect(session.info.envelopes).toBe(2)
    const iterator = session[Symbol.asyncIterator]()
    const first: StoredEnvelopeInfo[] = []
    while (first.length < 2) first.push(...((await iterator.next()).value as StoredEnvelopeInfo[]))
    expect(first.map(e => text(e.envelope))).toEqual(['sealed 1', 'sealed 2'])
    expect(first[0].id).toEqual(stored.id)

    // deposited while the owner has its mailbox open: pushed at once
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('sealed 3'))
    const pushed = (await iterator.next()).value as StoredEnvelopeInfo[]
    expect(pushed.map(e => text(e.envelope))).toEqual(['sealed 3'])

    await session.delete([...first, ...pushed].map(e => e.id))
    await until(() => relay.metrics.value('parley_relay_mailbox_envelopes').then(n => n === 0), { every: 20, what: 'the deleted envelopes to be gone' })
    await session.close()
    expect((await iterator.next()).done).toBe(true)

    const again = await open(bob, relay)
    expect(again.info.envelopes).toBe(0)
    // the operator's figures, as /metrics serves them
    const { body } = await httpGet(`${relay.metricsUrl ?? ''}/metrics`)
    expect(metricValue(body, 'parley_relay_mailbox_deposits_total')).toBe(3)
    expect(metricValue(body, 'parley_relay_mailbox_deposited_bytes_total')).toBe(24)
    expect(metricValue(body, 'parley_relay_mailboxes')).toBe(1)
    expect(metricValue(body, 'parley_relay_mailbox_envelopes')).toBe(0)
    expect(metricValue(body, 'parley_relay_mailbox_bytes')).toBe(0)
    expect(metricValue(body, 'parley_relay_mailbox_refusals_total', { request: 'deposit', status: 'QUOTA_EXCEEDED' })).toBe(0)
    expect(metricValue(body, 'parley_relay_mailbox_expired_total', { kind: 'envelope' })).toBe(0)
    expect(metricValue(body, 'parley_relay_mailbox_limit', { limit: 'maxEnvelopesPerMailbox' })).toBe(1000)
  })

  it('pushes no more than the window until the owner deletes', async () => {
    const relay = await relayWith()
    const bob = await client(relay)
    const alice = await client(relay)
    await bob.mailbox.register(relay.peerId)
    for (let i = 0; i < 5; i++) await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes(`m${i}`))

    const session = await open(bob, relay, 2)
    const iterator = session[Symbol.asyncIterator]()
    const batch = (await iterator.next()).value as StoredEnvelopeInfo[]
    expect(batch.map(e => text(e.envelope))).toEqual(['m0', 'm1'])
    // nothing more comes until a delete frees the window
    await session.delete([batch[0].id])
    const next = (await iterator.next()).value as StoredEnvelopeInfo[]
    expect(next.map(e => text(e.envelope))).toEqual(['m2'])
  })

  it('carries many concurrent deposits from one client on one stream, each answered with its own id', async () => {
    const relay = await relayWith()
    const bob = await client(relay)
    const alice = await client(relay)
    await bob.mailbox.register(relay.peerId)
    // more than the host's 8 streams per connection at once: the client pipelines them on one
    const stored = await Promise.all(Array.from({ length: 30 }, async (_, i) => ({ i, ...await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes(`m${i}`)) })))
    const streams = alice.node.getConnections(relay.peerId).flatMap(c => c.streams).filter(s => s.protocol === MAILBOX_PROTOCOL)
    expect(streams).toHaveLength(1)

    const session = await open(bob, relay, 64)
    const byId = new Map((await receive(session, 30)).map(e => [Buffer.from(e.id).toString('hex'), text(e.envelope)]))
    for (const { i, id } of stored) expect(byId.get(Buffer.from(id).toString('hex'))).toBe(`m${i}`)
  })

  it('ends a session\'s iteration when a newer session of the same owner replaces it, and pushes to the newer one', async () => {
    const relay = await relayWith()
    const bob = await client(relay)
    const alice = await client(relay)
    await bob.mailbox.register(relay.peerId)
    const older = await open(bob, relay)
    const olderBatches = older[Symbol.asyncIterator]()
    const newer = await open(bob, relay)
    expect((await olderBatches.next()).done).toBe(true)
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('to the newer'))
    expect((await receive(newer, 1)).map(e => text(e.envelope))).toEqual(['to the newer'])
    expect(relay.mailbox?.openSessions).toBe(1)
  })

  it('keeps mailboxes and envelopes across a restart on the same data dir', async () => {
    const dataDir = await tempDir()
    const first = await relayWith({ dataDir })
    const bob = await client(first)
    const alice = await client(first)
    await bob.mailbox.register(first.peerId)
    await alice.mailbox.deposit(first.peerId, bob.node.peerId, bytes('survives'))
    await first.stop()

    const second = await relayWith({ dataDir })
    expect(second.peerId.equals(first.peerId)).toBe(true)
    await bob.node.dial(second.multiaddrs[0])
    const session = await open(bob, second)
    expect(session.info.envelopes).toBe(1)
    expect((await receive(session, 1)).map(e => text(e.envelope))).toEqual(['survives'])
  })

  it('keeps no depositor peer ID in its files, in any form grep finds', async () => {
    const dataDir = await tempDir()
    const relay = await relayWith({ dataDir })
    const bob = await client(relay)
    const alice = await client(relay)
    await bob.mailbox.register(relay.peerId)
    for (let i = 0; i < 3; i++) await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes(`from alice ${i}`))

    const files = (await readdir(dataDir)).filter(f => f.startsWith('mailboxes.sqlite'))
    expect(files).toContain('mailboxes.sqlite')
    const id = alice.node.peerId
    const forms = [Buffer.from(id.toString()), Buffer.from(id.toMultihash().bytes), Buffer.from(id.toCID().toString())]
    for (const file of files) {
      const content = await readFile(join(dataDir, file))
      for (const form of forms) expect({ file, found: content.includes(form) }).toEqual({ file, found: false })
    }
    // what it does keep: the owner's mailbox
    const db = Buffer.concat(await Promise.all(files.map(async f => readFile(join(dataDir, f)))))
    expect(db.includes(Buffer.from(bob.node.peerId.toMultihash().bytes))).toBe(true)
  })

  it('refuses a depositor past its share of one mailbox with QUOTA_EXCEEDED, while another depositor still gets in', async () => {
    const relay = await relayWith({ mailbox: { maxEnvelopesPerMailbox: 8, depositorSharePercent: 25 } })
    const bob = await client(relay)
    const flooder = await client(relay)
    const carol = await client(relay)
    await bob.mailbox.register(relay.peerId)

    await flooder.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('f1'))
    await flooder.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('f2'))
    const err = await refusal(flooder.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('f3')))
    expect(err.status).toBe(Response.Status.QUOTA_EXCEEDED)
    expect(err.reason).toMatch(/share/)

    await carol.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('c1'))
    expect(await relay.metrics.value('parley_relay_mailbox_refusals_total', { request: 'deposit', status: 'QUOTA_EXCEEDED' })).toBe(1)
  })

  it('refuses an envelope over the size limit with TOO_LARGE, and a deposit to an unregistered peer with NO_SUCH_MAILBOX', async () => {
    const relay = await relayWith({ mailbox: { maxEnvelopeBytes: 1000 } })
    const bob = await client(relay)
    const alice = await client(relay)
    expect((await refusal(alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('early')))).status).toBe(Response.Status.NO_SUCH_MAILBOX)
    expect((await refusal(bob.mailbox.open(relay.peerId))).status).toBe(Response.Status.NO_SUCH_MAILBOX)

    await bob.mailbox.register(relay.peerId)
    const tooLarge = await refusal(alice.mailbox.deposit(relay.peerId, bob.node.peerId, new Uint8Array(1001)))
    expect(tooLarge.status).toBe(Response.Status.TOO_LARGE)
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, new Uint8Array(1000))
    // over the protocol's 64 KiB the client does not even send it
    expect((await refusal(alice.mailbox.deposit(relay.peerId, bob.node.peerId, new Uint8Array(65_537)))).status).toBe(Response.Status.TOO_LARGE)
  })

  it('lets no other peer receive or delete an owner\'s envelopes', async () => {
    const relay = await relayWith()
    const bob = await client(relay)
    const mallory = await client(relay)
    await bob.mailbox.register(relay.peerId)
    const { id } = await mallory.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('for bob'))

    // Open names the mailbox of the connection's own peer: mallory has none
    expect((await refusal(mallory.mailbox.open(relay.peerId))).status).toBe(Response.Status.NO_SUCH_MAILBOX)
    // with a mailbox of its own, mallory's Delete of bob's id touches only mallory's
    await mallory.mailbox.register(relay.peerId)
    const own = await open(mallory, relay)
    await own.delete([id])
    await own.close()

    const session = await open(bob, relay)
    expect((await receive(session, 1)).map(e => e.id)).toEqual([id])
  })

  it('rate-limits deposits per peer with RATE_LIMITED and a retry-after', async () => {
    const relay = await relayWith({ mailbox: { depositsPerSecondPerPeer: 1, depositBurstPerPeer: 2 } })
    const bob = await client(relay)
    const alice = await client(relay)
    const carol = await client(relay)
    await bob.mailbox.register(relay.peerId)
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('1'))
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('2'))
    const err = await refusal(alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('3')))
    expect(err.status).toBe(Response.Status.RATE_LIMITED)
    expect(err.retryAfterMs).toBeGreaterThan(0)
    expect(err.retryAfterMs).toBeLessThanOrEqual(1000)
    // another peer has a bucket of its own
    await carol.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('c'))
  })

  it('sweeps expired envelopes and counts them', async () => {
    const relay = await relayWith({ mailbox: { sweepInterval: 20 } })
    const bob = await client(relay)
    const alice = await client(relay)
    await bob.mailbox.register(relay.peerId)
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('short-lived'), { ttlMs: 1 })
    await alice.mailbox.deposit(relay.peerId, bob.node.peerId, bytes('kept'))
    await until(async () => await relay.metrics.value('parley_relay_mailbox_expired_total', { kind: 'envelope' }) === 1, { every: 20, what: 'the sweep to delete the expired envelope' })
    expect(await relay.metrics.value('parley_relay_mailbox_envelopes')).toBe(1)
    const session = await open(bob, relay)
    expect((await receive(session, 1)).map(e => text(e.envelope))).toEqual(['kept'])
  })

  it('serves no mailboxes when turned off (--no-mailbox)', async () => {
    const { config } = await loadRelayConfig({ mailbox: false }, {})
    expect(config.mailbox?.enabled).toBe(false)
    const relay = await relayWith({ mailbox: { enabled: false } })
    expect(relay.mailbox).toBeUndefined()
    const bob = await client(relay)
    await expect(bob.mailbox.register(relay.peerId)).rejects.toMatchObject({ name: 'UnsupportedProtocolError' })
  })
})

describe('MailboxClient against a host that breaks the protocol', () => {
  let peers: Libp2p[] = []

  afterEach(async () => {
    const stopping = peers
    peers = []
    await Promise.allSettled(stopping.map(async p => { await p.stop() }))
  })

  /** A host that answers every mailbox stream with `reply(request)`: raw frames of its choosing. */
  async function hostileHost (reply: (request: Request) => Uint8Array[]): Promise<{ host: Libp2p, client: MailboxClient }> {
    const host = await bareNode({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    const node = await bareNode()
    peers.push(host, node)
    await host.handle(MAILBOX_PROTOCOL, async (stream) => {
      // one request, answered as told, then the host's side closes
      const first = await lp.decode(stream)[Symbol.asyncIterator]().next()
      if (first.done !== true) for (const out of reply(Request.decode(first.value))) stream.send(out)
      await stream.close()
    })
    await node.dial(host.getMultiaddrs()[0])
    return { host, client: new MailboxClient({ dialer: node, logger: node.logger }) }
  }

  const framed = (response: Partial<Response>): Uint8Array => lp.encode.single(Response.encode(response)).subarray()

  it('refuses an oversized frame, a missing answer and an answer without what it must carry', async () => {
    const oversized = await hostileHost(() => [Uint8Array.from([0x81, 0x80, 0x40])])
    await expect(oversized.client.register(oversized.host.peerId)).rejects.toMatchObject({ name: 'MailboxProtocolError' })

    const silent = await hostileHost(() => [])
    await expect(silent.client.register(silent.host.peerId)).rejects.toMatchObject({ name: 'MailboxProtocolError' })

    const noId = await hostileHost(() => [framed({ status: Response.Status.OK })])
    await expect(noId.client.deposit(noId.host.peerId, noId.host.peerId, bytes('x'))).rejects.toMatchObject({ name: 'MailboxProtocolError' })
  })

  it('ends a session with an error when a push breaks the bounds: too many envelopes, ids over 32 bytes', async () => {
    const info = { envelopes: 0, bytes: 0n, maxEnvelopes: 1, maxBytes: 1n, expiresAt: 1n }
    const envelope = (id: Uint8Array): any => ({ id, storedAt: 1n, expiresAt: 2n, envelope: bytes('e') })
    for (const push of [
      { status: Response.Status.OK, envelopes: Array.from({ length: 65 }, () => envelope(new Uint8Array(16))) },
      { status: Response.Status.OK, envelopes: [envelope(new Uint8Array(33))] },
      { status: Response.Status.OK, envelopes: [] }
    ]) {
      const { host, client } = await hostileHost(() => [framed({ status: Response.Status.OK, info }), framed(push)])
      const session = await client.open(host.peerId)
      await expect(receive(session, 1)).rejects.toMatchObject({ name: 'MailboxProtocolError' })
    }
  })
})
