import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { defaultLogger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import { describe, expect, it, vi } from 'vitest'
import { addressGroups } from '../../common/address-groups.js'
import { ConnectionGuard, resolveConnectionLimits } from '../../node/network/connection-guard.js'
import type { Libp2pEvents, MultiaddrConnection, PeerId } from '@libp2p/interface'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** A raw inbound connection from `addr`, as the gater sees it; `close()` ends it. */
function maConn (addr: string): MultiaddrConnection & { close(): void } {
  const target = new EventTarget()
  const conn = {
    remoteAddr: multiaddr(addr),
    status: 'open',
    addEventListener: target.addEventListener.bind(target),
    removeEventListener: target.removeEventListener.bind(target),
    close () {
      conn.status = 'closed'
      target.dispatchEvent(new Event('close'))
    }
  }
  return conn as unknown as MultiaddrConnection & { close(): void }
}

describe('address groups', () => {
  it('count IPv4 by address and /24, IPv6 by /64 and /48, IPv4-mapped IPv6 as IPv4', () => {
    expect(addressGroups(multiaddr('/ip4/198.51.100.7/tcp/1'))).toEqual({ ip: '198.51.100.7', subnet: '198.51.100.0/24' })
    expect(addressGroups(multiaddr('/ip6/2001:db8:1:2:aaaa::1/tcp/1'))).toEqual({ ip: '2001:0db8:0001:0002:0000:0000:0000:0000/64', subnet: '2001:0db8:0001:0000:0000:0000:0000:0000/48' })
    expect(addressGroups(multiaddr('/ip6/2001:db8:1:2:bbbb::9/tcp/1'))?.ip).toBe('2001:0db8:0001:0002:0000:0000:0000:0000/64')
    expect(addressGroups(multiaddr('/ip6/::ffff:198.51.100.7/tcp/1'))).toEqual({ ip: '198.51.100.7', subnet: '198.51.100.0/24' })
  })

  it('leave out relayed connections (their address is the relay\'s) and addresses with no IP', async () => {
    expect(addressGroups(multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${await peer()}/p2p-circuit/p2p/${await peer()}`))).toBeUndefined()
    expect(addressGroups(multiaddr(`/webrtc/p2p/${await peer()}`))).toBeUndefined()
  })
})

describe('the connection guard', () => {
  const limits = { maxInboundPerIp: 2, maxInboundPerSubnet: 3, maxInboundUntrusted: 5, maxInboundPerPeer: 2 }

  it('refuses untrusted peers over the per-IP limit, lets trusted ones in, and counts a closed connection no more', async () => {
    const friend = await peer()
    const guard = new ConnectionGuard({ limits, trust: { isTrusted: p => p.equals(friend) } })
    const deny = async (p: PeerId, c: MultiaddrConnection): Promise<boolean> => guard.gater.denyInboundEncryptedConnection!(p, c) as boolean

    const first = maConn('/ip4/198.51.100.7/tcp/1')
    expect(await deny(await peer(), first)).toBe(false)
    expect(await deny(await peer(), maConn('/ip4/198.51.100.7/tcp/2'))).toBe(false)
    expect(await deny(await peer(), maConn('/ip4/198.51.100.7/tcp/3'))).toBe(true)
    expect(await deny(friend, maConn('/ip4/198.51.100.7/tcp/4'))).toBe(false)
    // another address on the same /24: the subnet has room for one more
    expect(await deny(await peer(), maConn('/ip4/198.51.100.8/tcp/1'))).toBe(false)
    expect(await deny(await peer(), maConn('/ip4/198.51.100.9/tcp/1'))).toBe(true)
    expect(guard.refused).toMatchObject({ 'per-ip': 1, 'per-subnet': 1 })

    first.close()
    expect(await deny(await peer(), maConn('/ip4/198.51.100.7/tcp/5'))).toBe(false)
  })

  it('does not count relayed connections against their relay\'s IP, but in the untrusted total', async () => {
    const relay = await peer()
    const guard = new ConnectionGuard({ limits })
    const circuit = async (): Promise<boolean> => guard.gater.denyInboundEncryptedConnection!(await peer(), maConn(`/ip4/127.0.0.1/tcp/1/p2p/${relay}/p2p-circuit`)) as boolean
    for (let i = 0; i < limits.maxInboundUntrusted; i++) expect(await circuit()).toBe(false)
    expect(await circuit()).toBe(true)
    expect(guard.refused['untrusted-total']).toBe(1)
  })

  it('caps the inbound connections of one peer, trusted or not', async () => {
    const friend = await peer()
    const guard = new ConnectionGuard({ limits, trust: { isTrusted: p => p.equals(friend) } })
    const deny = async (): Promise<boolean> => guard.gater.denyInboundEncryptedConnection!(friend, maConn(`/webrtc/p2p/${friend}`)) as boolean
    expect([await deny(), await deny(), await deny()]).toEqual([false, false, true])
  })

  it('filters peer store addresses that lead to another peer', async () => {
    const bob = await peer()
    const mallory = await peer()
    const guard = new ConnectionGuard()
    expect(guard.gater.filterMultiaddrForPeer!(bob, multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${mallory}`))).toBe(false)
    expect(guard.gater.filterMultiaddrForPeer!(bob, multiaddr('/ip4/127.0.0.1/tcp/1'))).toBe(true)
  })

  it('trusts the relays the node reserves on, as they are added and removed', async () => {
    const relay = await peer()
    const added = await peer()
    const friend = await peer()
    const merge = vi.fn(async () => ({}) as any)
    const guard = new ConnectionGuard({ limits, relays: [relay.toString()], trust: { isTrusted: p => p.equals(friend) } })
    guard.service()({ connectionManager: {} as any, events: new TypedEventEmitter<Libp2pEvents>(), peerStore: { merge } as any, logger: defaultLogger() })
    const deny = async (p: PeerId, port: number): Promise<boolean> => guard.gater.denyInboundEncryptedConnection!(p, maConn(`/ip4/198.51.100.7/tcp/${port}`)) as boolean
    // the IP's room for strangers is taken
    expect([await deny(await peer(), 1), await deny(await peer(), 2), await deny(await peer(), 3)]).toEqual([false, false, true])
    expect(await deny(relay, 4)).toBe(false)
    expect(await deny(added, 5)).toBe(true)

    guard.trustRelay(added)
    expect(guard.trustedRelays()).toEqual([relay.toString(), added.toString()])
    expect(guard.isTrusted(added)).toBe(true)
    expect(await deny(added, 6)).toBe(false)

    guard.distrustRelay(added)
    expect(guard.isTrusted(added)).toBe(false)
    expect(await deny(added, 7)).toBe(true)
    // its tag goes now, not when it expires
    expect(merge).toHaveBeenCalledWith(added, { tags: { 'parley-trusted': undefined } })

    // a relay that is also a contact stays trusted, and tagged
    guard.trustRelay(friend)
    guard.distrustRelay(friend.toString())
    expect(guard.isTrusted(friend)).toBe(true)
    expect(merge).toHaveBeenCalledTimes(1)
    // removing one that is not a relay changes nothing
    guard.distrustRelay(await peer())
    expect(guard.trustedRelays()).toEqual([relay.toString()])
  })

  it('closes relayed connections idle for relayedIdleTimeout, whoever the peer and whoever dialled; keeps busy and direct ones', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] })
    try {
      const [relay, friend, stranger, busy, direct] = await Promise.all([peer(), peer(), peer(), peer(), peer()])
      const circuit = (to: PeerId): string => `/ip4/198.51.100.1/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${to}`
      const connection = (remotePeer: PeerId, addr: string, direction: 'inbound' | 'outbound', protocols: string[] = []): any => ({
        id: `${remotePeer}-${direction}`,
        remotePeer,
        remoteAddr: multiaddr(addr),
        direction,
        status: 'open',
        limits: addr.includes('p2p-circuit') ? { seconds: 120, bytes: 131072n } : undefined,
        streams: protocols.map(protocol => ({ protocol })),
        timeline: { open: Date.now() },
        close: vi.fn(async () => {})
      })
      const connections = [
        // a contact's, dialled by this node: trusted, but the circuit is the relay's
        connection(friend, circuit(friend), 'outbound', ['/ipfs/ping/1.0.0']),
        connection(stranger, circuit(stranger), 'inbound'),
        // an /im stream open on it: not idle
        connection(busy, circuit(busy), 'outbound', ['/im/1.0.0']),
        // a contact's direct connection: left to its peer
        connection(direct, '/ip4/198.51.100.9/tcp/1', 'outbound')
      ]
      const guard = new ConnectionGuard({ limits: { relayedIdleTimeout: 10_000 }, trust: { isTrusted: p => p.equals(friend) || p.equals(direct) } })
      guard.service()({ connectionManager: { getConnections: () => connections } as any, events: new TypedEventEmitter<Libp2pEvents>(), peerStore: { merge: async () => ({}) } as any, logger: defaultLogger() })
      const trimmed: string[] = []
      guard.addEventListener('connection:trimmed', (evt) => { trimmed.push(evt.detail.connection.remotePeer.toString()) })
      guard.start()
      await vi.advanceTimersByTimeAsync(7_500)
      expect(trimmed).toEqual([])
      await vi.advanceTimersByTimeAsync(2_500)
      expect(trimmed.sort()).toEqual([friend.toString(), stranger.toString()].sort())
      for (const c of connections) expect(c.close).toHaveBeenCalledTimes(trimmed.includes(c.remotePeer.toString()) ? 1 : 0)
      guard.stop()
    } finally {
      vi.useRealTimers()
    }
  })

  it('counts an upgrade\'s time from when its direct connection carries data (ICE connected), not from when it opened', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] })
    try {
      const [relay, bob] = await Promise.all([peer(), peer()])
      const start = Date.now()
      const circuit = `/ip4/198.51.100.1/tcp/4001/p2p/${relay}/p2p-circuit`
      const relayed: any = { id: 'relayed', remotePeer: bob, remoteAddr: multiaddr(`${circuit}/p2p/${bob}`), direction: 'outbound', status: 'open', limits: { seconds: 120 }, streams: [{ protocol: '/im/1.0.0' }], timeline: { open: start }, close: vi.fn(async () => {}) }
      const ice = { connectionState: 'disconnected' }
      const webrtc: any = { id: 'webrtc', remotePeer: bob, remoteAddr: multiaddr(`${circuit}/webrtc/p2p/${bob}`), direction: 'outbound', status: 'open', streams: [], timeline: { open: start + 1_000 }, maConn: { peerConnection: ice }, close: vi.fn(async () => {}) }
      const guard = new ConnectionGuard({ limits: { relayedIdleTimeout: 10_000 } })
      guard.service()({ connectionManager: { getConnections: () => [relayed, webrtc] } as any, events: new TypedEventEmitter<Libp2pEvents>(), peerStore: { merge: async () => ({}) } as any, logger: defaultLogger() })
      guard.start()
      await vi.advanceTimersByTimeAsync(20_000)
      expect(relayed.close).not.toHaveBeenCalled()
      ice.connectionState = 'connected'
      // first seen usable at the sweep of 22.5 s: the relayed connection goes at the sweep of 32.5 s, not before
      await vi.advanceTimersByTimeAsync(10_000)
      expect(relayed.close).not.toHaveBeenCalled()
      await vi.advanceTimersByTimeAsync(2_500)
      expect(relayed.close).toHaveBeenCalledTimes(1)
      guard.stop()
    } finally {
      vi.useRealTimers()
    }
  })

  it('closes a relayed connection, /im stream and all, once a direct one that opened after it has been open relayedIdleTimeout; not for an older direct one', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] })
    try {
      const [relay, upgraded, moved] = await Promise.all([peer(), peer(), peer()])
      const connection = (remotePeer: PeerId, addr: string, opened: number): any => ({
        id: `${remotePeer}-${addr}`,
        remotePeer,
        remoteAddr: multiaddr(addr),
        direction: 'outbound',
        status: 'open',
        limits: addr.includes('p2p-circuit') ? { seconds: 120, bytes: 131072n } : undefined,
        streams: addr.includes('p2p-circuit') ? [{ protocol: '/im/1.0.0' }] : [],
        timeline: { open: opened },
        close: vi.fn(async () => {})
      })
      const start = Date.now()
      const circuit = (to: PeerId): string => `/ip4/198.51.100.1/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${to}`
      const upgradedRelayed = connection(upgraded, circuit(upgraded), start)
      // the peer that moved dialled through the relay after its direct connection, which may be dead
      const movedRelayed = connection(moved, circuit(moved), start)
      const connections = [
        upgradedRelayed,
        connection(upgraded, `/ip4/198.51.100.1/tcp/4001/p2p/${relay}/p2p-circuit/webrtc/p2p/${upgraded}`, start + 1_000),
        movedRelayed,
        connection(moved, '/ip4/198.51.100.9/tcp/1', start - 60_000)
      ]
      const guard = new ConnectionGuard({ limits: { relayedIdleTimeout: 10_000 } })
      guard.service()({ connectionManager: { getConnections: () => connections } as any, events: new TypedEventEmitter<Libp2pEvents>(), peerStore: { merge: async () => ({}) } as any, logger: defaultLogger() })
      guard.start()
      await vi.advanceTimersByTimeAsync(10_000)
      expect(upgradedRelayed.close).not.toHaveBeenCalled()
      await vi.advanceTimersByTimeAsync(2_500)
      expect(upgradedRelayed.close).toHaveBeenCalledTimes(1)
      await vi.advanceTimersByTimeAsync(60_000)
      expect(movedRelayed.close).not.toHaveBeenCalled()
      for (const c of connections.filter(c => c.limits == null)) expect(c.close).not.toHaveBeenCalled()
      guard.stop()
    } finally {
      vi.useRealTimers()
    }
  })

  it('takes limits from config, naming a wrong one', () => {
    expect(resolveConnectionLimits({ maxInboundPerIp: 3 })).toMatchObject({ maxInboundPerIp: 3, maxInboundPerSubnet: 32, idleTimeout: 60_000 })
    expect(() => resolveConnectionLimits({ maxInboundPerIp: 0 })).toThrow(/connectionLimits\.maxInboundPerIp: must be a positive integer/)
    expect(() => resolveConnectionLimits({ perIp: 3 } as any)).toThrow(/connectionLimits\.perIp: unknown limit/)
  })
})
