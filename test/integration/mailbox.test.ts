// Offline delivery through mailboxes, with real nodes, a real relay and the
// DHT: a message to a recipient who is offline is sealed and left on its
// relay, fetched exactly once when the recipient comes back, and turns
// delivered for the sender through a receipt in the sender's own mailbox.
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { collect, reserved, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { NodeConfig, ParleyNode, ParleyRelay } from '../../index.js'

/** Resolves once every mailbox of the node has an open session. */
async function mailboxOpen (node: ParleyNode): Promise<void> {
  await until(() => node.status().mailboxes.length > 0 && node.status().mailboxes.every(m => m.connected), {
    on: [node, 'mailbox:change'],
    what: () => `the mailboxes of ${node.peerId.toString()} to open (${JSON.stringify(node.status().mailboxes)})`
  })
}

describe('mailboxes', () => {
  const net = useNetwork()
  const tempDir = useTempDirs()

  async function setup (): Promise<{ relay: ParleyRelay, config: (dataDir: string) => NodeConfig }> {
    const relay = await net.relay({ dataDir: await tempDir() })
    const config = (dataDir: string): NodeConfig => ({ dataDir, relays: [relay.multiaddrs[0].toString()], mailboxAfter: 500, retry: { initialDelay: 200, maxDelay: 2_000 } })
    return { relay, config }
  }

  it('20 messages to an offline peer are stored, arrive once and in order when it returns, and turn delivered through the sender\'s mailbox', async () => {
    const { config } = await setup()
    const aliceDir = await tempDir()
    const bobDir = await tempDir()
    let alice = await net.node(config(aliceDir))
    let bob = await net.node(config(bobDir))
    await Promise.all([reserved(alice), reserved(bob), mailboxOpen(alice), mailboxOpen(bob)])
    // Bob's mailbox record is in the DHT (the relay is a DHT server)
    const bobId = bob.peerId
    await until(async () => (await alice.mailboxOf(bobId)) != null, { what: 'Bob\'s mailbox record in the DHT', every: 200 })
    await bob.stop()

    const sent = []
    for (let i = 1; i <= 20; i++) sent.push(await alice.send(bobId, `offline ${i}`))
    expect(sent.map(r => [r.status, r.path])).toEqual(Array(20).fill(['stored', 'mailbox']))
    const ids = sent.map(r => r.id)
    expect(ids.map(id => alice.getMessage(id)?.status)).toEqual(Array(20).fill('stored'))
    await alice.stop()

    bob = await net.node(config(bobDir))
    const got = collect(bob)
    await until(() => got.length >= 20, { on: [bob, 'message'], what: () => `20 messages (${got.length} so far)` })
    expect(got.map(m => m.body)).toEqual(ids.map((_, i) => `offline ${i + 1}`))
    expect(got.every(m => m.path === 'mailbox' && m.from === alice.peerId.toString())).toBe(true)
    // the receipts have left for Alice's mailbox once Bob counts all 20 fetched
    await until(() => bob.status().mailboxes[0].received >= 20, { on: [bob, 'mailbox:change'], what: 'Bob to fetch all 20' })
    // exactly once: nothing more came meanwhile, and the history holds each once
    expect(got).toHaveLength(20)
    expect(bob.history(alice.peerId).map(m => m.body)).toEqual(ids.map((_, i) => `offline ${i + 1}`))
    await bob.stop()

    alice = await net.node(config(aliceDir))
    await until(() => ids.every(id => alice.getMessage(id)?.status === 'delivered'), { on: [alice, 'message:status'], what: () => `all 20 delivered (${ids.map(id => alice.getMessage(id)?.status).join(',')})` })
    expect(ids.map(id => alice.getMessage(id)?.path)).toEqual(Array(20).fill('mailbox'))
  })
})
