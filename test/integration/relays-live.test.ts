/**
 * Relays added and removed while a node runs (ParleyNode.addRelay and
 * removeRelay), with real relays on loopback: the reservation, the node's
 * addresses, its status and reachability, the connection guard's trust and
 * the peer record it publishes follow at once, and removing one relay leaves
 * the reservation on another alone.
 */
import { describe, expect, it } from 'vitest'
import { reserved, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'

function circuits (node: ParleyNode): string[] {
  return node.multiaddrs.map(a => a.toString()).filter(a => a.includes('/p2p-circuit'))
}

/** Resolves once the node published its peer record after `since` (the publisher emits no event: polled). */
async function publishedAfter (node: ParleyNode, since: number): Promise<void> {
  const publisher = node.libp2p.services.peerRecords as { lastPublished?: number }
  await until(() => (publisher.lastPublished ?? 0) > since, { every: 50, what: `${node.peerId.toString()} to publish its peer record again` })
}

describe('relays added and removed while the node runs', () => {
  const net = useNetwork()

  it('reserves on an added relay at once, publishes the circuit address, and drops it all when the relay is removed', async () => {
    const relay = await net.relay()
    const relayId = relay.peerId.toString()
    const bob = await net.node({ listen: ['/ip4/127.0.0.1/tcp/0'], relays: [], bootstrap: relay.multiaddrs })
    const alice = await net.node({ listen: [], relays: [], bootstrap: relay.multiaddrs })
    expect(bob.reachability()).toMatchObject({ reachable: false, via: 'lan only' })
    const changes: string[][] = []
    bob.addEventListener('relays:change', (evt) => { changes.push(evt.detail) })
    const guard = bob.libp2p.services.connectionGuard

    const before = Date.now()
    const status = await bob.addRelay(relay.multiaddrs[0])
    expect(status).toEqual({ relay: relay.multiaddrs[0].toString(), reserved: true, failures: 0 })
    expect(changes).toEqual([[relay.multiaddrs[0].toString()]])
    expect(bob.relays().map(String)).toEqual([relay.multiaddrs[0].toString()])
    expect(bob.status().relays).toEqual([{ relay: relay.multiaddrs[0].toString(), reserved: true, failures: 0 }])
    expect(bob.reachability()).toMatchObject({ reachable: true, via: 'relay', relay: relay.multiaddrs[0].toString() })
    expect(circuits(bob)).toEqual([`${relay.multiaddrs[0].toString()}/p2p-circuit/p2p/${bob.peerId.toString()}`])
    expect(guard.isTrusted(relay.peerId)).toBe(true)
    expect(bob.peers().find(p => p.peerId === relayId)?.relay).toBe(true)

    // the new address reaches the DHT: a node that never met bob finds the circuit
    await publishedAfter(bob, before)
    const found = (await alice.libp2p.services.peerRecords.lookup(bob.peerId)).map(String)
    expect(found.some(a => a.startsWith(`${relay.multiaddrs[0].toString()}/p2p-circuit`))).toBe(true)

    const beforeRemoval = Date.now()
    expect(await bob.removeRelay(relayId)).toBe(true)
    expect(changes.at(-1)).toEqual([])
    expect(bob.relays()).toEqual([])
    expect(bob.status().relays).toEqual([])
    expect(circuits(bob)).toEqual([])
    expect(bob.reachability()).toMatchObject({ reachable: false, via: 'lan only' })
    expect(guard.isTrusted(relay.peerId)).toBe(false)
    expect(await bob.removeRelay(relayId)).toBe(false)

    // and the record without it replaces the one with it
    await publishedAfter(bob, beforeRemoval)
    const now = (await alice.libp2p.services.peerRecords.lookup(bob.peerId)).map(String)
    expect(now.filter(a => a.includes('/p2p-circuit'))).toEqual([])
  })

  it('removing one relay leaves the reservation on another, which is still kept', async () => {
    const first = await net.relay()
    const second = await net.relay()
    const bob = await net.node({ listen: ['/ip4/127.0.0.1/tcp/0'], relays: [...first.multiaddrs, ...second.multiaddrs] })
    await reserved(bob, 2)

    expect(await bob.removeRelay(first.multiaddrs[0].toString())).toBe(true)
    expect(bob.status().relays).toEqual([{ relay: second.multiaddrs[0].toString(), reserved: true, failures: 0 }])
    expect(circuits(bob)).toEqual([`${second.multiaddrs[0].toString()}/p2p-circuit/p2p/${bob.peerId.toString()}`])

    // the second relay's reservation is still kept: lost with its connection, it is made again
    const seen: number[] = []
    bob.libp2p.addEventListener('transport:listening', () => { seen.push(circuits(bob).length) })
    await bob.libp2p.hangUp(second.peerId)
    await until(() => seen.includes(0) && circuits(bob).length === 1, { on: [bob.libp2p, 'transport:listening'], what: 'the reservation on the second relay to be lost and made again' })
    expect(circuits(bob)).toEqual([`${second.multiaddrs[0].toString()}/p2p-circuit/p2p/${bob.peerId.toString()}`])
  })

  it('refuses its own address as a relay, and an address without the relay\'s peer ID', async () => {
    const bob = await net.node({ listen: ['/ip4/127.0.0.1/tcp/0'], relays: [] })
    await expect(bob.addRelay(bob.multiaddrs[0])).rejects.toMatchObject({ name: 'InvalidRelayAddressError' })
    await expect(bob.addRelay(bob.multiaddrs[0].decapsulateCode(421))).rejects.toMatchObject({ name: 'InvalidRelayAddressError' })
    expect(bob.relays()).toEqual([])
    expect(bob.libp2p.services.connectionGuard.trustedRelays()).toEqual([])
  })
})
