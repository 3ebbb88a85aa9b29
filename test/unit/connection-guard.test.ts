import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { defaultLogger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
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

  describe('relayed connections (each holds a circuit at its relay)', () => {
    beforeEach(() => { vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] }) })
    afterEach(() => { vi.useRealTimers() })

    const RELAY_ADDR = '/ip4/198.51.100.1/tcp/4001'
    /** A connection as the guard's sweep reads it: relayed when its address goes through a circuit; `ice` for a WebRTC one. */
    const connection = (remotePeer: PeerId, addr: string, init: { direction?: 'inbound' | 'outbound', protocols?: string[], opened?: number, ice?: { connectionState: string } } = {}): any => ({
      id: `${remotePeer}-${addr}`,
      remotePeer,
      remoteAddr: multiaddr(addr),
      direction: init.direction ?? 'outbound',
      status: 'open',
      limits: addr.includes('p2p-circuit') && !addr.includes('webrtc') ? { seconds: 120, bytes: 131072n } : undefined,
      streams: (init.protocols ?? []).map(protocol => ({ protocol })),
      timeline: { open: init.opened ?? Date.now() },
      ...(init.ice == null ? {} : { maConn: { peerConnection: init.ice } }),
      close: vi.fn(async () => {})
    })
    /** A started guard whose sweeps see `connections`. */
    const sweeping = (connections: any[], trust?: (peer: PeerId) => boolean): ConnectionGuard => {
      const guard = new ConnectionGuard({ limits: { relayedIdleTimeout: 10_000 }, trust: trust == null ? undefined : { isTrusted: trust } })
      guard.service()({ connectionManager: { getConnections: () => connections } as any, events: new TypedEventEmitter<Libp2pEvents>(), peerStore: { merge: async () => ({}) } as any, logger: defaultLogger() })
      guard.start()
      return guard
    }

    it('are closed idle for relayedIdleTimeout, whoever the peer and whoever dialled; busy and direct ones are kept', async () => {
      const [relay, friend, stranger, busy, direct] = await Promise.all([peer(), peer(), peer(), peer(), peer()])
      const circuit = (to: PeerId): string => `${RELAY_ADDR}/p2p/${relay}/p2p-circuit/p2p/${to}`
      const connections = [
        // a contact's, dialled by this node: trusted, but the circuit is the relay's
        connection(friend, circuit(friend), { protocols: ['/ipfs/ping/1.0.0'] }),
        connection(stranger, circuit(stranger), { direction: 'inbound' }),
        // an /im stream open on it: not idle
        connection(busy, circuit(busy), { protocols: ['/im/1.0.0'] }),
        // a contact's direct connection: left to its peer
        connection(direct, '/ip4/198.51.100.9/tcp/1')
      ]
      const trimmed: string[] = []
      const guard = sweeping(connections, p => p.equals(friend) || p.equals(direct))
      guard.addEventListener('connection:trimmed', (evt) => { trimmed.push(evt.detail.connection.remotePeer.toString()) })
      await vi.advanceTimersByTimeAsync(7_500)
      expect(trimmed).toEqual([])
      await vi.advanceTimersByTimeAsync(2_500)
      expect(trimmed.sort()).toEqual([friend.toString(), stranger.toString()].sort())
      for (const c of connections) expect(c.close).toHaveBeenCalledTimes(trimmed.includes(c.remotePeer.toString()) ? 1 : 0)
      guard.stop()
    })

    it('count an upgrade\'s time from when its direct connection carries data (ICE connected), not from when it opened', async () => {
      const [relay, bob] = await Promise.all([peer(), peer()])
      const start = Date.now()
      const circuit = `${RELAY_ADDR}/p2p/${relay}/p2p-circuit`
      const relayed = connection(bob, `${circuit}/p2p/${bob}`, { protocols: ['/im/1.0.0'], opened: start })
      const ice = { connectionState: 'disconnected' }
      const guard = sweeping([relayed, connection(bob, `${circuit}/webrtc/p2p/${bob}`, { opened: start + 1_000, ice })])
      await vi.advanceTimersByTimeAsync(20_000)
      expect(relayed.close).not.toHaveBeenCalled()
      ice.connectionState = 'connected'
      // first seen usable at the sweep of 22.5 s: the relayed connection goes at the sweep of 32.5 s, not before
      await vi.advanceTimersByTimeAsync(10_000)
      expect(relayed.close).not.toHaveBeenCalled()
      await vi.advanceTimersByTimeAsync(2_500)
      expect(relayed.close).toHaveBeenCalledTimes(1)
      guard.stop()
    })

    it('are closed, /im stream and all, once a direct one that opened after them has been open relayedIdleTimeout; not for an older direct one', async () => {
      const [relay, upgraded, moved] = await Promise.all([peer(), peer(), peer()])
      const start = Date.now()
      const circuit = (to: PeerId): string => `${RELAY_ADDR}/p2p/${relay}/p2p-circuit/p2p/${to}`
      const upgradedRelayed = connection(upgraded, circuit(upgraded), { protocols: ['/im/1.0.0'], opened: start })
      // the peer that moved dialled through the relay after its direct connection, which may be dead
      const movedRelayed = connection(moved, circuit(moved), { protocols: ['/im/1.0.0'], opened: start })
      const connections = [
        upgradedRelayed,
        connection(upgraded, `${RELAY_ADDR}/p2p/${relay}/p2p-circuit/webrtc/p2p/${upgraded}`, { opened: start + 1_000 }),
        movedRelayed,
        connection(moved, '/ip4/198.51.100.9/tcp/1', { opened: start - 60_000 })
      ]
      const guard = sweeping(connections)
      await vi.advanceTimersByTimeAsync(10_000)
      expect(upgradedRelayed.close).not.toHaveBeenCalled()
      await vi.advanceTimersByTimeAsync(2_500)
      expect(upgradedRelayed.close).toHaveBeenCalledTimes(1)
      await vi.advanceTimersByTimeAsync(60_000)
      expect(movedRelayed.close).not.toHaveBeenCalled()
      for (const c of connections.filter(c => c.limits == null)) expect(c.close).not.toHaveBeenCalled()
      guard.stop()
    })
  })

  it('takes limits from config, naming a wrong one', () => {
    expect(resolveConnectionLimits({ maxInboundPerIp: 3 })).toMatchObject({ maxInboundPerIp: 3, maxInboundPerSubnet: 32, idleTimeout: 60_000 })
    expect(() => resolveConnectionLimits({ maxInboundPerIp: 0 })).toThrow(/connectionLimits\.maxInboundPerIp: must be a positive integer/)
    expect(() => resolveConnectionLimits({ perIp: 3 } as any)).toThrow(/connectionLimits\.perIp: unknown limit/)
  })
})
