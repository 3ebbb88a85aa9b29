import { describe, expect, it } from 'vitest'
import { nextMessages, reserved, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { Connection } from '@libp2p/interface'

describe('two nodes reachable only through a relay', () => {
  const net = useNetwork()

  it('deliver the first message relayed, upgrade to WebRTC, then deliver direct', async () => {
    const relay = await net.relay()
    // no TCP or WebSockets listener: a relay circuit and WebRTC are the only ways in
    const config = { listen: ['/webrtc'], relays: relay.multiaddrs }
    const alice = await net.node(config)
    const bob = await net.node(config)
    await Promise.all([reserved(alice), reserved(bob)])
    expect(bob.multiaddrs.every(a => a.toString().includes('/p2p-circuit'))).toBe(true)

    // alice knows bob's relayed addresses only (as an invite would give them)
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })

    const bobGets = nextMessages(bob, 1)
    const first = await alice.send(bob.peerId, 'first, over the relay')
    expect(first.path).toBe('relayed')
    expect((await bobGets)[0]).toMatchObject({ body: 'first, over the relay', path: 'relayed', from: alice.peerId.toString() })

    await until(() => alice.pathTo(bob.peerId) === 'direct', { on: [alice, 'path:change'], what: 'the path from alice to bob to become direct' })
    const webrtc = alice.libp2p.getConnections(bob.peerId).find(c => c.remoteAddr.toString().includes('/webrtc'))
    expect(webrtc?.status).toBe('open')
    // ICE used loopback on both ends (the fixture binds it there) and nothing else
    const pair = (webrtc as any).maConn.peerConnection.selectedCandidatePair()
    expect([pair.local.address, pair.remote.address]).toEqual(['127.0.0.1', '127.0.0.1'])

    const later = nextMessages(bob, 1)
    const second = await alice.send(bob.peerId, 'second, peer to peer')
    expect(second.path).toBe('direct')
    expect((await later)[0]).toMatchObject({ body: 'second, peer to peer', path: 'direct', seq: 2 })
  })

  it('let the relay\'s circuit go once the WebRTC connection has been up relayedIdleTimeout, its /im stream still open', async () => {
    const relay = await net.relay()
    const config = { listen: ['/webrtc'], relays: relay.multiaddrs, connectionLimits: { relayedIdleTimeout: 500 } }
    const alice = await net.node(config)
    const bob = await net.node(config)
    await Promise.all([reserved(alice), reserved(bob)])
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    // closed by either end for the upgrade (not for being idle, as it would be once its /im stream closed)
    const upgraded: Connection[] = []
    for (const node of [alice, bob]) node.libp2p.services.connectionGuard.addEventListener('connection:trimmed', (evt) => { if (evt.detail.reason === 'upgraded') upgraded.push(evt.detail.connection) })

    const first = await alice.send(bob.peerId, 'first, over the relay')
    expect(first.path).toBe('relayed')
    const relayed = alice.libp2p.getConnections(bob.peerId).find(c => c.limits != null)
    // the first message's /im stream stays open for 30 s: only the upgrade lets the connection go this soon
    expect(relayed?.streams.some(s => s.protocol?.startsWith('/im/') === true)).toBe(true)
    await until(() => alice.pathTo(bob.peerId) === 'direct', { on: [alice, 'path:change'], what: 'the path from alice to bob to become direct' })
    await until(() => relayed?.status === 'closed', { on: [alice.libp2p, 'connection:close'], what: 'the relayed connection to close after the upgrade' })
    expect(upgraded.length).toBeGreaterThan(0)
    expect(upgraded.every(c => c.limits != null)).toBe(true)
    await until(() => relay.circuits === 0, { every: 50, what: () => `the relay to hold no circuit (${relay.circuits})` })

    const later = nextMessages(bob, 1)
    const second = await alice.send(bob.peerId, 'second, peer to peer')
    expect(second.path).toBe('direct')
    expect((await later)[0]).toMatchObject({ body: 'second, peer to peer', path: 'direct', seq: 2 })
  })
})
