/**
 * The relay's limits per source (IP, subnet), with the limits it ships with:
 * the attacks of issue 11 item 5, from several source addresses on loopback
 * (Linux takes any of 127.0.0.0/8 as a source address).
 */
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { RELAY_DEFAULTS } from '../../index.js'
import { addressGroups, groupsOfIp } from '../../common/address-groups.js'
import { ConnectionGate } from '../../relay/connections.js'
import { RelayMetrics } from '../../relay/metrics.js'
import { useNetwork } from '../fixtures/network.js'
import { httpGet, metricValue } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import { bareNode, connect, reserve } from './hop.js'
import type { ParleyRelay, RelayConfig } from '../../index.js'
import type { BareNodeOptions } from './hop.js'
import type { Libp2p, MultiaddrConnection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const DEFAULTS = RELAY_DEFAULTS.limits

/** 'connected' or 'refused': what became of `node`'s dial to `addr`. */
async function dialOutcome (node: Libp2p, addr: Multiaddr): Promise<'connected' | 'refused'> {
  return node.dial(addr).then(() => 'connected', () => 'refused')
}

/** Resolves once `check()` holds, checking every 20 ms, for up to 20 s. */
async function eventually (check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  await until(check, { every: 20, what, timeout: 20_000 })
}

describe('relay limits per source, as shipped', () => {
  const net = useNetwork()
  let peers: Libp2p[] = []

  afterEach(async () => {
    const stopping = peers
    peers = []
    await Promise.allSettled(stopping.map(async p => { await p.stop() }))
  })

  async function peer (options: BareNodeOptions = {}): Promise<Libp2p> {
    const node = await bareNode(options)
    peers.push(node)
    return node
  }

  async function peersFrom (count: number, options: BareNodeOptions): Promise<Libp2p[]> {
    return Promise.all(Array.from({ length: count }, async () => peer(options)))
  }

  /** A relay with every limit at its default (the test fixture lifts the per-IP ones otherwise). */
  async function shippedRelay (limits: RelayConfig['limits'] = {}): Promise<{ relay: ParleyRelay, addr: Multiaddr, metrics: () => Promise<string> }> {
    const relay = await net.relay({ metrics: '127.0.0.1:0', limits: { ...DEFAULTS, ...limits } })
    const metrics = async (): Promise<string> => {
      const { status, body } = await httpGet(`${relay.metricsUrl ?? ''}/metrics`)
      expect(status).toBe(200)
      return body
    }
    return { relay, addr: relay.multiaddrs[0], metrics }
  }

  it('caps the reservations of one IP and of one /24, and still has a slot for a newcomer from elsewhere', async () => {
    const { relay, addr, metrics } = await shippedRelay()
    const statuses = async (nodes: Libp2p[]): Promise<string[]> => Promise.all(nodes.map(async n => (await reserve(n, addr)).status))

    // one attacker IP: its allowance, and not one more
    expect(await statuses(await peersFrom(DEFAULTS.maxReservationsPerIp, { from: '127.0.1.1' }))).toEqual(Array(DEFAULTS.maxReservationsPerIp).fill('OK'))
    expect((await reserve(await peer({ from: '127.0.1.1' }), addr)).status).toBe('RESERVATION_REFUSED')

    // more IPs of the same /24 fill the subnet's allowance, then it is refused too
    const ips = DEFAULTS.maxReservationsPerSubnet / DEFAULTS.maxReservationsPerIp
    for (let i = 2; i <= ips; i++) {
      expect(await statuses(await peersFrom(DEFAULTS.maxReservationsPerIp, { from: `127.0.1.${i}` }))).toEqual(Array(DEFAULTS.maxReservationsPerIp).fill('OK'))
    }
    expect((await reserve(await peer({ from: `127.0.1.${ips + 1}` }), addr)).status).toBe('RESERVATION_REFUSED')

    // a user from another network still gets one
    expect((await reserve(await peer({ from: '127.0.2.1' }), addr)).status).toBe('OK')

    expect(relay.reservations).toBe(DEFAULTS.maxReservationsPerSubnet + 1)
    const text = await metrics()
    expect(metricValue(text, 'parley_relay_refusals_total', { request: 'reserve', reason: 'max_reservations_per_ip', status: 'RESERVATION_REFUSED' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total', { request: 'reserve', reason: 'max_reservations_per_subnet', status: 'RESERVATION_REFUSED' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(2)
    expect(metricValue(text, 'parley_relay_limit', { limit: 'maxReservationsPerSubnet' })).toBe(DEFAULTS.maxReservationsPerSubnet)
  })

  it('refuses a connection over the open connections of one IP before its handshake, and takes one again when a connection closes', async () => {
    const { relay, addr, metrics } = await shippedRelay()
    const fromIp = (): number => relay.libp2p.getConnections().filter(c => c.remoteAddr.toString().startsWith('/ip4/127.0.3.1/')).length

    const holders = await peersFrom(DEFAULTS.maxConnectionsPerIp, { from: '127.0.3.1' })
    await Promise.all(holders.map(async h => h.dial(addr)))
    await eventually(() => fromIp() === DEFAULTS.maxConnectionsPerIp, 'the relay to see every holder')

    const extra = await peer({ from: '127.0.3.1' })
    expect(await dialOutcome(extra, addr)).toBe('refused')
    // a neighbour on the same /24 is not held back by it
    await (await peer({ from: '127.0.3.2' })).dial(addr)

    let text = await metrics()
    expect(metricValue(text, 'parley_relay_connections_refused_total', { reason: 'max_connections_per_ip' })).toBe(1)
    expect(metricValue(text, 'parley_relay_connections_refused_total')).toBe(1)
    expect(fromIp()).toBe(DEFAULTS.maxConnectionsPerIp)

    // one holder leaves: its place is free
    await holders[0].stop()
    await eventually(() => fromIp() === DEFAULTS.maxConnectionsPerIp - 1, 'the relay to see the holder leave')
    await extra.dial(addr)
    await eventually(() => fromIp() === DEFAULTS.maxConnectionsPerIp, 'the relay to see the newcomer')
    text = await metrics()
    expect(metricValue(text, 'parley_relay_connections_refused_total')).toBe(1)
  })

  it('refuses a connection over the open connections of one /24', async () => {
    const { addr, metrics } = await shippedRelay({ maxConnectionsPerIp: 2, maxConnectionsPerSubnet: 3 })
    await Promise.all((await peersFrom(2, { from: '127.0.4.1' })).map(async p => p.dial(addr)))
    await (await peer({ from: '127.0.4.2' })).dial(addr)
    expect(await dialOutcome(await peer({ from: '127.0.4.3' }), addr)).toBe('refused')
    await (await peer({ from: '127.0.5.1' })).dial(addr)

    const text = await metrics()
    expect(metricValue(text, 'parley_relay_connections_refused_total', { reason: 'max_connections_per_subnet' })).toBe(1)
    expect(metricValue(text, 'parley_relay_connections_refused_total')).toBe(1)
  })

  it('counts the connections js-libp2p refuses over maxConnections among the refusals', async () => {
    const { addr, metrics } = await shippedRelay({ maxConnections: 1 })
    await (await peer({ from: '127.0.9.1' })).dial(addr)
    expect(await dialOutcome(await peer({ from: '127.0.10.1' }), addr)).toBe('refused')
    const text = await metrics()
    expect(metricValue(text, 'parley_relay_connections_refused_total', { reason: 'max_connections' })).toBe(1)
    expect(metricValue(text, 'parley_relay_connections_refused_total')).toBe(1)
  })

  it('caps the circuits of a peer, as the dialling and as the dialled side, and of one IP', async () => {
    const { relay, addr, metrics } = await shippedRelay()
    const perPeer = DEFAULTS.maxCircuitsPerPeer
    // two peers from one IP can hold the IP's allowance between them
    expect(DEFAULTS.maxCircuitsPerIp).toBe(2 * perPeer)

    // destinations holding reservations; they take many relayed connections at
    // once and, as the sources here never finish a handshake, keep them pending
    const destination = async (): Promise<Libp2p> => {
      const node = await peer({
        circuits: true,
        from: '127.0.6.1',
        listen: [addr.encapsulate('/p2p-circuit').toString()],
        connectionManager: { inboundConnectionThreshold: 1_000, maxIncomingPendingConnections: 1_000, inboundUpgradeTimeout: 120_000 }
      })
      await eventually(() => node.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit')), 'a reservation')
      return node
    }
    const [d1, d2, d3] = await Promise.all([destination(), destination(), destination()])
    const [s1, s2, s3] = await peersFrom(3, { from: '127.0.7.1' })
    // one after the other: js-libp2p aborts a connection on which more than 10
    // streams arrive before it is fully set up
    const statuses = async (source: Libp2p, to: Libp2p, count: number): Promise<string[]> => {
      const out: string[] = []
      for (let i = 0; i < count; i++) out.push((await connect(source, addr, to.peerId)).response.status)
      return out
    }

    expect(await statuses(s1, d1, perPeer)).toEqual(Array(perPeer).fill('OK'))
    // s1 is in its allowance of circuits as the dialling side, d1 as the dialled side
    expect((await connect(s1, addr, d2.peerId)).response.status).toBe('RESOURCE_LIMIT_EXCEEDED')
    expect((await connect(s2, addr, d1.peerId)).response.status).toBe('RESOURCE_LIMIT_EXCEEDED')

    // another peer from the same IP takes the rest of the IP's allowance; a third gets none
    expect(await statuses(s2, d2, perPeer)).toEqual(Array(perPeer).fill('OK'))
    expect((await connect(s3, addr, d3.peerId)).response.status).toBe('RESOURCE_LIMIT_EXCEEDED')
    // a peer from elsewhere does
    expect((await connect(await peer({ from: '127.0.8.1' }), addr, d3.peerId)).response.status).toBe('OK')

    expect(relay.circuits).toBe(2 * perPeer + 1)
    const text = await metrics()
    expect(metricValue(text, 'parley_relay_refusals_total', { request: 'connect', reason: 'max_circuits_per_peer', status: 'RESOURCE_LIMIT_EXCEEDED' })).toBe(2)
    expect(metricValue(text, 'parley_relay_refusals_total', { request: 'connect', reason: 'max_circuits_per_ip', status: 'RESOURCE_LIMIT_EXCEEDED' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(3)
  })
})

describe('address groups', () => {
  it('counts an IPv4 address by itself and its /24 as the subnet', () => {
    expect(groupsOfIp('198.51.100.7')).toEqual({ ip: '198.51.100.7', subnet: '198.51.100.0/24' })
    expect(addressGroups(multiaddr('/ip4/127.0.0.1/tcp/4001'))).toEqual({ ip: '127.0.0.1', subnet: '127.0.0.0/24' })
  })

  it('counts an IPv6 address by its /64 and its /48 as the subnet, however it is written', () => {
    const a = addressGroups(multiaddr('/ip6/2001:db8:1:2::a/tcp/1'))
    expect(a).toEqual({ ip: '2001:0db8:0001:0002:0000:0000:0000:0000/64', subnet: '2001:0db8:0001:0000:0000:0000:0000:0000/48' })
    expect(addressGroups(multiaddr('/ip6/2001:0db8:0001:0002:ffff:ffff:ffff:ffff/tcp/2'))).toEqual(a)
    expect(groupsOfIp('2001:DB8:1:2:0:0:0:1')).toEqual(a)
    // another /64 of the same /48
    expect(groupsOfIp('2001:db8:1:3::1')).toEqual({ ip: '2001:0db8:0001:0003:0000:0000:0000:0000/64', subnet: '2001:0db8:0001:0000:0000:0000:0000:0000/48' })
    expect(groupsOfIp('::1')).toEqual({ ip: '0000:0000:0000:0000:0000:0000:0000:0000/64', subnet: '0000:0000:0000:0000:0000:0000:0000:0000/48' })
    expect(groupsOfIp('fe80::1%eth0')).toEqual({ ip: 'fe80:0000:0000:0000:0000:0000:0000:0000/64', subnet: 'fe80:0000:0000:0000:0000:0000:0000:0000/48' })
  })

  it('counts an IPv4-mapped IPv6 address as the IPv4 address, and nothing for addresses that are not IP', () => {
    expect(groupsOfIp('::ffff:198.51.100.7')).toEqual({ ip: '198.51.100.7', subnet: '198.51.100.0/24' })
    expect(addressGroups(multiaddr('/ip6/::ffff:c633:6407/tcp/1'))).toEqual({ ip: '198.51.100.7', subnet: '198.51.100.0/24' })
    expect(addressGroups(multiaddr('/dns4/relay.example.com/tcp/4001'))).toBeUndefined()
    expect(groupsOfIp('not an address')).toBeUndefined()
  })
})

describe('the connection gate', () => {
  /** A stand-in for an inbound connection from `addr`, closed by `close()`. */
  function inbound (addr: string): MultiaddrConnection & { close(): void } {
    const conn = Object.assign(new EventTarget(), {
      remoteAddr: multiaddr(addr),
      status: 'open',
      close () {
        conn.status = 'closed'
        conn.dispatchEvent(new Event('close'))
      }
    })
    return conn as unknown as MultiaddrConnection & { close(): void }
  }

  function gate (limits: Partial<typeof DEFAULTS>): { gate: ConnectionGate, metrics: RelayMetrics, clock: { now: number } } {
    const all = { ...DEFAULTS, ...limits }
    const metrics = new RelayMetrics(all)
    const clock = { now: 1_000_000 }
    return { gate: new ConnectionGate({ limits: all, metrics, now: () => clock.now }), metrics, clock }
  }

  it('counts the connection rate of an IPv6 /64 as one source', async () => {
    const { gate: g, metrics, clock } = gate({ inboundConnectionsPerSecond: 2 })
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:2::a/tcp/1'))).toBe(false)
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:2:dead:beef:0:b/tcp/1'))).toBe(false)
    // a third address of the same /64 within the second: refused
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:2:ffff::c/tcp/1'))).toBe(true)
    // another /64 is another source
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:3::a/tcp/1'))).toBe(false)
    // and the /64 may connect again a second later
    clock.now += 1_000
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:2::d/tcp/1'))).toBe(false)
    expect(await metrics.value('parley_relay_connections_refused_total', { reason: 'connection_rate' })).toBe(1)
    expect(await metrics.value('parley_relay_connections_refused_total')).toBe(1)
  })

  it('counts open connections per IP and per subnet until they close', async () => {
    const { gate: g, metrics, clock } = gate({ maxConnectionsPerIp: 2, maxConnectionsPerSubnet: 3 })
    const first = inbound('/ip6/2001:db8:1:2::a/tcp/1')
    expect(g.denyInboundConnection(first)).toBe(false)
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:2::b/tcp/1'))).toBe(false)
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:2::c/tcp/1'))).toBe(true)
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:3::a/tcp/1'))).toBe(false)
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:4::a/tcp/1'))).toBe(true)
    expect(g.denyInboundConnection(inbound('/ip4/198.51.100.7/tcp/1'))).toBe(false)
    first.close()
    expect(g.openFromIp('2001:0db8:0001:0002:0000:0000:0000:0000/64')).toBe(1)
    clock.now += 1_000
    expect(g.denyInboundConnection(inbound('/ip6/2001:db8:1:2::c/tcp/1'))).toBe(false)
    expect(await metrics.value('parley_relay_connections_refused_total', { reason: 'max_connections_per_ip' })).toBe(1)
    expect(await metrics.value('parley_relay_connections_refused_total', { reason: 'max_connections_per_subnet' })).toBe(1)
  })
})
