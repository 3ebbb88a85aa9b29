import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { INVITE_PREFIX } from '../../node/invite.js'
import { collect, nextMessages, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'
import type { StatusChange } from '../../node/types.js'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Mallory's TCP address, with or without Mallory's peer ID at the end. */
function tcpAddress (node: ParleyNode, withPeerId = true): Multiaddr {
  const addr = node.multiaddrs.find(a => a.toString().includes('/tcp/') && !a.toString().includes('/p2p-circuit'))
  if (addr == null) throw new Error('no TCP address')
  return withPeerId ? addr : addr.decapsulate('/p2p')
}

/** Resolves with the first outcome of an attempt to deliver message `id`: delivered, or queued again with a reason. */
async function firstOutcome (node: ParleyNode, id: string): Promise<StatusChange> {
  return new Promise(resolve => {
    const onStatus = (evt: CustomEvent<StatusChange>): void => {
      const change = evt.detail
      if (change.id !== id) return
      if (change.status === 'delivered' || change.status === 'failed' || (change.status === 'queued' && change.reason != null)) {
        node.removeEventListener('message:status', onStatus)
        resolve(change)
      }
    }
    node.addEventListener('message:status', onStatus)
  })
}

describe('an address that names another peer', () => {
  const net = useNetwork()
  const fast = { retry: { initialDelay: 100, maxDelay: 1_000 } }

  it('in an invite does not send a contact\'s messages to that peer', async () => {
    const [alice, bob, mallory] = await Promise.all([net.node({ relays: [], ...fast }), net.node({ relays: [] }), net.node({ relays: [] })])
    const malloryGot = collect(mallory)
    const bobGets = nextMessages(bob, 1)

    // Bob's peer ID with Mallory's address, as Mallory would hand it out
    const hostile = INVITE_PREFIX + Buffer.from(JSON.stringify({ p: bob.peerId.toString(), a: [tcpAddress(mallory).toString()] })).toString('base64url')
    const contact = await alice.addContact('bob', hostile)
    expect(contact.addrs).toEqual([])

    const id = alice.queue('bob', 'for bob only')
    const outcome = await firstOutcome(alice, id)
    expect(outcome.status).toBe('queued')
    expect(alice.getMessage(id)?.status).not.toBe('delivered')
    expect(malloryGot).toEqual([])
    expect(mallory.history(alice.peerId)).toEqual([])

    // with Bob's own invite, the message reaches Bob
    await alice.addContact('bob', bob.invite())
    await expect(alice.waitFor(id, { timeout: 30_000 })).resolves.toMatchObject({ status: 'delivered' })
    expect((await bobGets)[0]).toMatchObject({ body: 'for bob only', from: alice.peerId.toString() })
    expect(malloryGot).toEqual([])
  })

  /** Alice, who knows the DHT through a relay, Bob and Mallory, all on loopback TCP. */
  async function dhtNodes (): Promise<{ alice: ParleyNode, bob: ParleyNode, mallory: ParleyNode }> {
    const relay = await net.relay()
    const [alice, bob, mallory] = await Promise.all([
      net.node({ relays: [], bootstrap: relay.multiaddrs, ...fast }),
      net.node({ relays: [] }),
      net.node({ relays: [] })
    ])
    const routingTable = (alice.libp2p.services.dht as SingleKadDHT).routingTable
    await until(() => routingTable.size > 0, { on: [routingTable as unknown as EventTarget, 'peer:add'], what: 'a peer in the routing table' })
    return { alice, bob, mallory }
  }

  const addressesIn = async (node: ParleyNode, peer: ParleyNode): Promise<string[]> =>
    node.libp2p.peerStore.get(peer.peerId).then(p => p.addresses.map(a => a.multiaddr.toString()), () => [])

  it('is not kept in the peer store, as libp2p keeps a DHT lookup\'s answer', async () => {
    const { alice, bob, mallory } = await dhtNodes()
    const malloryGot = collect(mallory)

    // what libp2p's peer routing does with a lookup's answer: Bob "at" Mallory's address
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: [tcpAddress(mallory)] })
    expect((await addressesIn(alice, bob)).filter(a => a.includes(mallory.peerId.toString()))).toEqual([])
    alice.libp2p.peerRouting.findPeer = async () => { throw new Error('not found') }
    alice.libp2p.services.peerRecords.lookup = async () => []

    const id = alice.queue(bob.peerId, 'for bob only')
    expect((await firstOutcome(alice, id)).status).toBe('queued')
    expect(malloryGot).toEqual([])
    expect(mallory.history(alice.peerId)).toEqual([])
  })

  it('in a DHT lookup\'s answer is not dialled for the peer; the peer\'s real address is', async () => {
    const { alice, bob, mallory } = await dhtNodes()
    const malloryGot = collect(mallory)

    // a hostile DHT server answers the lookup for Bob with Mallory's address, and
    // a record "of Bob" gives Mallory's bare address (only Mallory answers there)
    let answer: PeerInfo = { id: bob.peerId, multiaddrs: [tcpAddress(mallory)] }
    alice.libp2p.peerRouting.findPeer = async () => answer
    alice.libp2p.services.peerRecords.lookup = async () => [tcpAddress(mallory, false)]

    const id = alice.queue(bob.peerId, 'for bob only')
    const outcome = await firstOutcome(alice, id)
    expect(outcome.status).toBe('queued')
    expect(malloryGot).toEqual([])
    expect(mallory.history(alice.peerId)).toEqual([])
    expect(alice.libp2p.getConnections(bob.peerId)).toEqual([])
    // nothing of that answer was kept for Bob
    expect(await addressesIn(alice, bob)).toEqual([])

    // once the lookup finds Bob's real address, the message reaches Bob
    const bobGets = nextMessages(bob, 1)
    answer = { id: bob.peerId, multiaddrs: bob.multiaddrs.map(a => multiaddr(a.toString())) }
    await expect(alice.waitFor(id, { timeout: 30_000 })).resolves.toMatchObject({ status: 'delivered' })
    expect((await bobGets)[0]).toMatchObject({ body: 'for bob only', from: alice.peerId.toString() })
    expect(malloryGot).toEqual([])
  })
})
