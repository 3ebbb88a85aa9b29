import { defaultLogger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { describe, expect, it } from 'vitest'
import { addressFingerprint, stalePaths } from '../../node/network/stale-paths.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { Connection, Libp2pEvents, Startable } from '@libp2p/interface'
import type { NetworkInterfaceInfo } from 'node:os'

const lo: NetworkInterfaceInfo = { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }
const at = (address: string): NetworkInterfaceInfo => ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${address}/24` })
const linkLocal: NetworkInterfaceInfo = { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 }

const RELAY = '12D3KooWQtZ2kU33tyb5i3seB3cbHXTZ6DTvAS85mYLcF8mrRxMF'
let ids = 0

interface FakeConnection extends Connection { aborted?: Error }

const ADDRS = {
  direct: '/ip4/198.51.100.7/tcp/4001',
  // signalled over the relay, but the data goes straight to the peer
  webrtc: `/ip4/203.0.113.7/tcp/4001/p2p/${RELAY}/p2p-circuit/webrtc`,
  relayed: `/ip4/203.0.113.7/tcp/4001/p2p/${RELAY}/p2p-circuit`
}

function connection (peer: string, kind: keyof typeof ADDRS, openedAt: number): FakeConnection {
  const conn: any = {
    id: `c${++ids}`,
    remotePeer: { toString: () => peer, equals: (p: any) => p.toString() === peer },
    remoteAddr: multiaddr(ADDRS[kind]),
    limits: kind === 'relayed' ? { seconds: 120 } : undefined,
    status: 'open',
    timeline: { open: openedAt },
    abort (err: Error) { conn.aborted = err; conn.status = 'closed' }
  }
  return conn
}

/** A stale-paths service over fake connections, interfaces, clock and probe. */
function setup () {
  const clock = new FakeClock()
  const events = new TypedEventEmitter<Libp2pEvents>()
  const connections: FakeConnection[] = []
  let interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = { lo: [lo], eth0: [at('192.168.1.20')] }
  /** Connections that answer a probe; the others never do (their probe waits for the timeout). */
  const alive = new Set<string>()
  const probed: string[] = []
  const service = stalePaths({
    clock,
    pollInterval: 1_000,
    probeTimeout: 3_000,
    interfaces: () => interfaces,
    probe: async (c, signal) => {
      probed.push(c.id)
      if (alive.has(c.id)) return
      await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason) }) })
    }
  })({
    connectionManager: { getConnections: (peer?: any) => connections.filter(c => peer == null || c.remotePeer.toString() === peer.toString()) },
    events,
    logger: defaultLogger()
  }) as ReturnType<ReturnType<typeof stalePaths>> & Startable
  service.start()
  const open = (c: FakeConnection): void => {
    connections.push(c)
    events.safeDispatchEvent('connection:open', { detail: c })
  }
  const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }
  return { clock, service, connections, alive, probed, open, settle, move: (ifaces: NodeJS.Dict<NetworkInterfaceInfo[]>) => { interfaces = ifaces } }
}

describe('stale paths', () => {
  it('fingerprints routable addresses only: loopback and link-local changes are no move', () => {
    expect(addressFingerprint({ lo: [lo], eth0: [at('192.168.1.20'), linkLocal] })).toBe('192.168.1.20')
    expect(addressFingerprint({ eth0: [at('10.0.0.2'), at('192.168.1.20')] })).toBe(addressFingerprint({ eth0: [at('192.168.1.20'), at('10.0.0.2')] }))
  })

  it('after this machine\'s address changes, aborts the direct connections that do not answer within the timeout, and only those', async () => {
    const t = setup()
    const dead = connection('peerA', 'direct', 0)
    const deadWebrtc = connection('peerD', 'webrtc', 0)
    const healthy = connection('peerB', 'direct', 0)
    const relayed = connection('peerC', 'relayed', 0)
    t.connections.push(dead, deadWebrtc, healthy, relayed)
    t.alive.add(healthy.id)

    t.clock.advance(5_000)
    expect(t.probed).toEqual([]) // nothing changed, nothing tested

    t.move({ lo: [lo], eth0: [at('10.1.2.3')] })
    t.clock.advance(1_000)
    expect(t.probed.sort()).toEqual([dead.id, deadWebrtc.id, healthy.id].sort()) // relayed connections are not this service's to test
    await t.settle()
    expect(healthy.aborted).toBeUndefined()
    expect(dead.aborted).toBeUndefined() // not before its timeout

    t.clock.advance(3_000)
    await t.settle()
    expect(dead.aborted?.name).toBe('TimeoutError')
    expect(deadWebrtc.aborted?.name).toBe('TimeoutError')
    expect(healthy.aborted).toBeUndefined()
    expect(relayed.aborted).toBeUndefined()
    expect(t.service.aborted).toBe(2)
  })

  it('when a peer comes back over a relay, tests that peer\'s older direct connections', async () => {
    const t = setup()
    const old = connection('peerA', 'direct', 0)
    const other = connection('peerB', 'direct', 0)
    const young = connection('peerA', 'webrtc', 9_000)
    t.connections.push(old, other, young)
    t.open(connection('peerA', 'relayed', 10_000))
    // the WebRTC connection opened a second before is still settling, not stale
    expect(t.probed).toEqual([old.id])
    t.clock.advance(3_000)
    await t.settle()
    expect(old.aborted?.name).toBe('TimeoutError')
    expect(other.aborted).toBeUndefined()
  })

  it('does not test when the peer opens another direct connection (a WebRTC upgrade, a LAN dial)', () => {
    const t = setup()
    t.connections.push(connection('peerA', 'direct', 0))
    t.open(connection('peerA', 'webrtc', 10))
    t.open(connection('peerA', 'direct', 20))
    expect(t.probed).toEqual([])
  })

  it('tests a connection once at a time, however many connections its peer opens meanwhile', async () => {
    const t = setup()
    const old = connection('peerA', 'direct', 0)
    t.connections.push(old)
    for (let i = 0; i < 1_000; i++) t.open(connection('peerA', 'relayed', 10_000 + i))
    expect(t.probed.filter(id => id === old.id)).toHaveLength(1)
    t.clock.advance(3_000)
    await t.settle()
    expect(old.aborted).toBeDefined()
  })

  it('stops polling and aborting once stopped', async () => {
    const t = setup()
    const dead = connection('peerA', 'direct', 0)
    t.connections.push(dead)
    t.move({ lo: [lo], eth0: [at('10.1.2.3')] })
    t.clock.advance(1_000)
    ;(t.service as any).stop()
    t.clock.advance(10_000)
    await t.settle()
    expect(dead.aborted).toBeUndefined()
    expect(t.clock.pending).toBe(0)
  })
})
