// Offline delivery through mailboxes, with real nodes, a real relay and the
// DHT: a message to a recipient who is offline is sealed and left on its
// relay, fetched exactly once when the recipient comes back, and turns
// delivered for the sender through a receipt in the sender's own mailbox.
import { noise } from '@libp2p/noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { describe, expect, it } from 'vitest'
import { readInvite } from '../../node/invite.js'
import { ChatMessage } from '../../protocols/im/index.js'
import { MailboxClient } from '../../protocols/mailbox/client.js'
import { sealEnvelope } from '../../protocols/mailbox/envelope.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { collect, nextMessages, reserved, useNetwork } from '../fixtures/network.js'
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

  it('an envelope altered by one byte, replayed, or left in another peer\'s mailbox is refused by its recipient and never shown', async () => {
    const { relay, config } = await setup()
    const bob = await net.node(config(await tempDir()))
    const carol = await net.node(config(await tempDir()))
    await Promise.all([mailboxOpen(bob), mailboxOpen(carol)])
    const bobGot = collect(bob)
    const carolGot = collect(carol)
    const bobKey = (await readInvite(bob.invite())).mailbox?.keys[0].publicKey
    expect(bobKey).toBeDefined()

    // Mallory: any libp2p peer, sealing with its own key as the spec says
    const malloryKey = await generateKeyPair('Ed25519')
    const mallory = await createLibp2p({ privateKey: malloryKey, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    try {
      await mallory.dial(multiaddr(relay.multiaddrs[0].toString()))
      const client = new MailboxClient({ dialer: mallory, logger: defaultLogger() })
      const seal = async (seq: number, body: string): Promise<Uint8Array> => sealEnvelope({
        senderKey: malloryKey,
        recipient: bob.peerId,
        recipientKey: bobKey as Uint8Array,
        content: { message: ChatMessage.encode({ id: new Uint8Array(16).fill(seq), seq: BigInt(seq), sentAt: BigInt(Date.now()), body }) },
        createdAt: Date.now()
      })
      const genuine = await seal(1, 'genuine')
      const altered = await seal(2, 'altered')
      altered[altered.length - 1] ^= 0x01
      const readdressed = await seal(3, 'for bob, left with carol')

      await client.deposit(relay.peerId, bob.peerId, genuine)
      await client.deposit(relay.peerId, bob.peerId, genuine)
      await client.deposit(relay.peerId, bob.peerId, altered)
      await client.deposit(relay.peerId, carol.peerId, readdressed)

      // every envelope fetched, and the mailboxes emptied
      await until(() => bob.status().mailboxes[0].received >= 3, { on: [bob, 'mailbox:change'], what: () => `Bob to fetch 3 (${bob.status().mailboxes[0].received})` })
      await until(() => carol.status().mailboxes[0].received >= 1, { on: [carol, 'mailbox:change'], what: 'Carol to fetch 1' })
      expect(bobGot.map(m => [m.body, m.from, m.path])).toEqual([['genuine', mallory.peerId.toString(), 'mailbox']])
      expect(carolGot).toEqual([])
      expect(bob.history(mallory.peerId).map(m => m.body)).toEqual(['genuine'])
    } finally {
      await mallory.stop()
    }
  })

  it('a message to an offline peer whose mailbox host is down stays queued, and goes out directly when the peer returns', async () => {
    const { relay } = await setup()
    const down = await net.relay({ dataDir: await tempDir() })
    const downAddr = down.multiaddrs[0].toString()
    const base = { relays: [relay.multiaddrs[0].toString()], mailboxAfter: 200, retry: { initialDelay: 200, maxDelay: 1_000 } }
    const alice = await net.node({ ...base, dataDir: await tempDir() })
    const bobDir = await tempDir()
    let bob = await net.node({ ...base, dataDir: bobDir, mailboxes: [downAddr] })
    await Promise.all([reserved(alice), reserved(bob), mailboxOpen(bob)])
    await until(async () => (await alice.mailboxOf(bob.peerId))?.hosts[0] === down.peerId.toString(), { what: 'Bob\'s mailbox record in the DHT', every: 200 })
    const bobId = bob.peerId
    await bob.stop()
    await down.stop()

    const id = alice.queue(bobId, 'waits for bob')
    // it was tried, and no host took it
    await until(() => (alice.outbox().find(m => m.id === id)?.attempts ?? 0) >= 2, { on: [alice, 'message:status'], what: 'two failed attempts' })
    expect(alice.getMessage(id)?.status).toBe('queued')

    bob = await net.node({ ...base, dataDir: bobDir, mailboxes: [downAddr] })
    const got = nextMessages(bob, 1)
    expect((await got)[0]).toMatchObject({ body: 'waits for bob' })
    expect((await got)[0].path).not.toBe('mailbox')
    await until(() => alice.getMessage(id)?.status === 'delivered', { on: [alice, 'message:status'], what: 'delivered' })
  })

  it('follows the relays added and removed while the node runs, unless the config names its hosts', async () => {
    const { relay, config } = await setup()
    const alice = await net.node(config(await tempDir()))
    const bob = await net.node({ dataDir: await tempDir(), bootstrap: [relay.multiaddrs[0].toString()] })
    expect(bob.status().mailboxes).toEqual([])
    await bob.addRelay(relay.multiaddrs[0])
    await mailboxOpen(bob)
    expect(bob.status().mailboxes.map(m => m.host)).toEqual([relay.peerId.toString()])
    // the record others find names the new host
    await until(async () => (await alice.mailboxOf(bob.peerId))?.hosts[0] === relay.peerId.toString(), { what: 'Bob\'s new record in the DHT', every: 200 })

    await bob.removeRelay(relay.peerId.toString())
    await until(() => bob.status().mailboxes.length === 0, { on: [[bob, 'relays:change'], [bob, 'mailbox:change']], what: 'Bob\'s mailbox gone with the relay' })

    const fixed = await net.node({ dataDir: await tempDir(), bootstrap: [relay.multiaddrs[0].toString()], mailboxes: [] })
    await fixed.addRelay(relay.multiaddrs[0])
    expect(fixed.status().mailboxes).toEqual([])
  })
})
