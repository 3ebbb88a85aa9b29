import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { collect, LOOPBACK_TCP, nextMessages, reserved, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'
import type { StatusChange } from '../../node/types.js'

/** Quick retries so that tests do not wait minutes for back-off. */
const FAST_RETRY = { initialDelay: 100, maxDelay: 1_000 }

/** Resolves once every one of `ids` is delivered. */
async function delivered (node: ParleyNode, ids: string[]): Promise<void> {
  const left = (): number => ids.filter(id => node.getMessage(id)?.status !== 'delivered').length
  await until(() => left() === 0, { on: [node, 'message:status'], what: () => `${left()} of ${ids.length} messages to be delivered` })
}

describe('reliable delivery', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()

  it('delivers 20 messages sent while the recipient was stopped, once each and in order, when it comes back', async () => {
    const relay = await net.relay()
    const bobDir = await tempDir()
    const config = { relays: relay.multiaddrs, retry: FAST_RETRY }
    const alice = await net.node({ ...config, dataDir: await tempDir() })
    let bob = await net.node({ ...config, dataDir: bobDir })
    const bobId = bob.peerId.toString()
    await reserved(bob)
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.stop()

    const ids = Array.from({ length: 20 }, (_, i) => alice.queue(bobId, `offline ${i + 1}`))
    expect(alice.outbox()).toHaveLength(20)

    // same data dir: same peer ID, and nothing but the restart on bob's side
    bob = await net.node({ ...config, dataDir: bobDir })
    expect(bob.peerId.toString()).toBe(bobId)
    const got = collect(bob)
    await delivered(alice, ids)

    await until(() => got.length >= 20, { on: [bob, 'message'], what: () => `bob to receive 20 messages (he has ${got.length})` })
    expect(got.map(m => m.body)).toEqual(ids.map((_, i) => `offline ${i + 1}`))
    expect(got.map(m => m.seq)).toEqual(ids.map((_, i) => i + 1))
    expect(new Set(got.map(m => m.id)).size).toBe(20)
    expect(alice.outbox()).toEqual([])
    expect(bob.history(alice.peerId).map(m => m.body)).toEqual(got.map(m => m.body))
  })

  it('rejects an aborted send with a typed error but keeps the message queued and delivers it later', async () => {
    const bobDir = await tempDir()
    let bob = await net.node({ listen: ['/ip4/127.0.0.1/tcp/0'], dataDir: bobDir })
    const bobAddrs = bob.multiaddrs
    const port = bobAddrs[0].getComponents().find(c => c.name === 'tcp')?.value
    const alice = await net.node({ retry: FAST_RETRY })
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bobAddrs })
    await bob.stop()

    const controller = new AbortController()
    const sending = alice.send(bob.peerId, 'wait for me', { signal: controller.signal })
    controller.abort()
    const err = await sending.catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'DeliveryTimeoutError', message: expect.stringContaining('stays queued') })
    const [queued] = alice.outbox()
    expect(queued).toMatchObject({ body: 'wait for me', status: expect.stringMatching(/queued|sending/) })

    // bob comes back on the same address
    bob = await net.node({ listen: [`/ip4/127.0.0.1/tcp/${port}`], dataDir: bobDir })
    const got = nextMessages(bob, 1)
    await delivered(alice, [queued.id])
    expect((await got)[0]).toMatchObject({ id: queued.id, body: 'wait for me' })
    expect(alice.getMessage(queued.id)).toMatchObject({ status: 'delivered', path: 'direct' })
  })

  it('rejects a send not acknowledged within its timeout with a typed error naming the timeout, and keeps the message queued', async () => {
    const bob = await net.node({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    const alice = await net.node({ retry: FAST_RETRY })
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.stop()

    const err = await alice.send(bob.peerId, 'nobody answers', { timeout: 300 }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'DeliveryTimeoutError', message: expect.stringContaining('after 300 ms') })
    expect(alice.outbox()).toEqual([expect.objectContaining({ body: 'nobody answers' })])
    // waitFor, for a message queued earlier, times out the same way
    const again = await alice.waitFor(alice.outbox()[0].id, { timeout: 200 }).catch((e: Error) => e)
    expect(again).toMatchObject({ name: 'DeliveryTimeoutError', message: expect.stringContaining('after 200 ms') })
  })

  it('answers the retry of a message whose ack was lost with DUPLICATE, and shows it once', async () => {
    const alice = await net.node({ retry: FAST_RETRY })
    const bob = await net.node({ listen: [LOOPBACK_TCP] })
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    const got = collect(bob)

    // bob "crashes" between storing the message and writing its ack: every
    // connection is cut the moment the message is stored
    let cut = false
    bob.addEventListener('message', () => {
      if (cut) return
      cut = true
      for (const connection of bob.libp2p.getConnections()) connection.abort(new Error('crash before the ack'))
    })
    const statuses: StatusChange[] = []
    alice.addEventListener('message:status', evt => { statuses.push(evt.detail) })

    const receipt = await alice.send(bob.peerId, 'exactly once please')
    expect(receipt.status).toBe('delivered')
    // the first attempt did not get its ack: it was retried
    expect(statuses.filter(s => s.status === 'sending').length).toBeGreaterThanOrEqual(2)
    expect(got.map(m => m.body)).toEqual(['exactly once please'])
    expect(bob.history(alice.peerId)).toHaveLength(1)
  })

  it('delivers every message once and in order when the relay circuit\'s data limit cuts a burst', async () => {
    // a circuit may carry 4 KiB each way: a burst of 60 messages of ~300 bytes needs several circuits
    const relay = await net.relay({ limits: { circuitBytes: 4096 } })
    const config = { listen: [], relays: relay.multiaddrs, retry: FAST_RETRY }
    const alice = await net.node(config)
    const bob = await net.node(config)
    await Promise.all([reserved(alice), reserved(bob)])
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    // friends: a stranger's burst of 60 would wait as a message request past its quota
    await bob.addContact('alice', alice.peerId.toString())
    const got = collect(bob)
    const circuits = new Set<string>()
    alice.libp2p.addEventListener('connection:open', evt => {
      if (evt.detail.remotePeer.equals(bob.peerId)) circuits.add(evt.detail.id)
    })

    const bodies = Array.from({ length: 60 }, (_, i) => `burst ${String(i + 1).padStart(2, '0')} ${'x'.repeat(280)}`)
    const receipts = await Promise.all(bodies.map(async body => alice.send(bob.peerId, body, { timeout: 90_000 })))
    expect(receipts.every(r => r.path === 'relayed')).toBe(true)
    await until(() => got.length >= 60, { on: [bob, 'message'], what: () => `bob to receive 60 messages (he has ${got.length})` })
    expect(got.map(m => m.body)).toEqual(bodies)
    expect(circuits.size).toBeGreaterThan(1)
  })
})
