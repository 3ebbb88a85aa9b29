import { describe, expect, it } from 'vitest'
import { reserved, useNetwork } from '../fixtures/network.js'
import type { ParleyNode, ReceivedMessage } from '../../index.js'
import type { PeerId } from '@libp2p/interface'

/** Deterministic pseudo-random pairs, so a failure can be replayed. */
function randomPairs (count: number, pairs: number, seed = 42): Array<[number, number]> {
  let state = seed
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31
    return state % count
  }
  const out: Array<[number, number]> = []
  while (out.length < pairs) {
    const a = next()
    const b = next()
    if (a !== b) out.push([a, b])
  }
  return out
}

describe('a 30-node network in one process', () => {
  const net = useNetwork()

  it('delivers between 50 random pairs that know nothing but the recipient peer ID', async () => {
    const first = await net.relay()
    const relays = [first, ...await Promise.all([1, 2].map(async () => net.relay({ bootstrap: first.multiaddrs })))]
    const relayAddrs = relays.flatMap(r => r.multiaddrs)

    // only a relay circuit and WebRTC lead to these nodes; they know only the relays
    const nodes: ParleyNode[] = []
    for (let i = 0; i < 27; i++) {
      // what is tested is finding a peer by its ID alone: the mailbox, which
      // takes a message once a peer is not reached within mailboxAfter (5 s),
      // is kept out of the way of a slow walk on a loaded machine
      nodes.push(await net.node({ listen: ['/webrtc'], relays: relayAddrs, mailboxAfter: 120_000 }))
    }
    await Promise.all(nodes.map(async n => { await reserved(n, 3) }))

    const inboxes = new Map<string, ReceivedMessage[]>()
    for (const node of nodes) {
      const inbox: ReceivedMessage[] = []
      inboxes.set(node.peerId.toString(), inbox)
      node.addEventListener('message', evt => { inbox.push(evt.detail) })
    }

    const pairs = randomPairs(nodes.length, 50)
    const receipts = await Promise.all(pairs.map(async ([a, b], i) => {
      const sender = nodes[a]
      const recipient = nodes[b]
      // the sender has never seen the recipient: it has its peer ID and nothing else
      return sender.send(recipient.peerId.toString(), `pair ${i}`, { timeout: 90_000 })
    }))
    expect(receipts.every(r => r.status === 'delivered')).toBe(true)
    pairs.forEach(([a, b], i) => {
      const got = inboxes.get(nodes[b].peerId.toString())?.filter(m => m.body === `pair ${i}`) ?? []
      expect(got).toHaveLength(1)
      expect(got[0].from).toBe(nodes[a].peerId.toString())
    })
  })

  it('finds a peer by its ID after its DHT routing table was left empty', async () => {
    const relay = await net.relay()
    const alice = await net.node({ relays: relay.multiaddrs, mailboxAfter: 120_000 })
    const bob = await net.node({ relays: relay.multiaddrs, mailboxAfter: 120_000 })
    await Promise.all([reserved(alice, 1), reserved(bob, 1)])
    // as a node started under heavy load is left: connected to its relay, a
    // DHT server, with nobody in its routing table (kad-dht gives adding one 10 s)
    const table = (alice.libp2p.services.dht as unknown as { routingTable: { size: number, kb: { toIterable: () => Iterable<{ peerId: PeerId }> }, remove: (peer: PeerId) => Promise<void> } }).routingTable
    for (const entry of [...table.kb.toIterable()]) await table.remove(entry.peerId)
    expect(table.size).toBe(0)
    expect(alice.libp2p.getConnections(relay.peerId)).not.toHaveLength(0)

    const got = new Promise<ReceivedMessage>(resolve => { bob.addEventListener('message', evt => { resolve(evt.detail) }, { once: true }) })
    const receipt = await alice.send(bob.peerId.toString(), 'found again', { timeout: 90_000 })
    expect(receipt.status).toBe('delivered')
    expect((await got).body).toBe('found again')
    expect(table.size).toBeGreaterThan(0)
  })
})
