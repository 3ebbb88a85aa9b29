import { createServer } from 'node:net'
import drain from 'it-drain'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { useNetwork } from '../fixtures/network.js'
import { httpGet, metricValue } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import { bareNode, connect, reserve } from './hop.js'
import type { ParleyRelay, RelayConfig } from '../../index.js'
import type { Connection, Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const SINK = '/parley-test/sink/1.0.0'

/** Resolves once `check()` holds, checking every 20 ms, for up to 20 s. */
async function eventually (check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  await until(check, { every: 20, what, timeout: 20_000 })
}

async function ipv6Loopback (): Promise<boolean> {
  return new Promise(resolve => {
    const server = createServer()
    server.once('error', () => { resolve(false) })
    server.listen(0, '::1', () => { server.close(() => { resolve(true) }) })
  })
}

describe('relay limits', () => {
  const net = useNetwork()
  let peers: Libp2p[] = []
  let hasIpv6 = false

  beforeAll(async () => { hasIpv6 = await ipv6Loopback() })

  afterEach(async () => {
    const stopping = peers
    peers = []
    await Promise.allSettled(stopping.map(async p => { await p.stop() }))
  })

  async function peer (options: Parameters<typeof bareNode>[0] = {}): Promise<Libp2p> {
    const node = await bareNode(options)
    peers.push(node)
    return node
  }

  async function relayWith (config: RelayConfig): Promise<{ relay: ParleyRelay, addr: Multiaddr, metrics: () => Promise<string> }> {
    const relay = await net.relay({ metrics: '127.0.0.1:0', ...config })
    const addr = relay.multiaddrs[0]
    const metrics = async (): Promise<string> => {
      const { status, body } = await httpGet(`${relay.metricsUrl ?? ''}/metrics`)
      expect(status).toBe(200)
      return body
    }
    return { relay, addr, metrics }
  }

  /** A peer holding a reservation through the real relay transport, and its circuit address. */
  async function reservedPeer (addr: Multiaddr): Promise<{ node: Libp2p, circuit: Multiaddr }> {
    const node = await peer({ circuits: true, listen: [addr.encapsulate('/p2p-circuit').toString()] })
    const circuit = (): Multiaddr | undefined => node.getMultiaddrs().find(a => a.toString().includes('/p2p-circuit'))
    await eventually(() => circuit() != null, 'a circuit address')
    await node.handle(SINK, async (stream) => {
      // read and drop whatever comes: the test is about what the relay lets through
      await drain(stream)
      await stream.close()
    }, { runOnLimitedConnection: true })
    return { node, circuit: circuit() as Multiaddr }
  }

  async function closed (connection: Connection): Promise<void> {
    if (connection.status === 'closed') return
    await new Promise(resolve => { connection.addEventListener('close', resolve, { once: true }) })
  }

  it('refuses the reservation over maxReservations with RESERVATION_REFUSED, counts it, and frees a slot when a holder leaves', async () => {
    const { relay, addr, metrics } = await relayWith({ limits: { maxReservations: 3 } })
    const clients = await Promise.all([0, 1, 2, 3].map(async () => peer()))

    for (const client of clients.slice(0, 3)) {
      const response = await reserve(client, addr)
      expect(response.status).toBe('OK')
      expect(response.reserved).toBe(true)
    }
    expect(relay.reservations).toBe(3)
    expect((await reserve(clients[3], addr)).status).toBe('RESERVATION_REFUSED')

    let text = await metrics()
    expect(metricValue(text, 'parley_relay_refusals_total', { request: 'reserve', reason: 'max_reservations', status: 'RESERVATION_REFUSED' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(1)
    expect(metricValue(text, 'parley_relay_reservations')).toBe(3)
    expect(metricValue(text, 'parley_relay_reservations_granted_total', { kind: 'new' })).toBe(3)
    expect(metricValue(text, 'parley_relay_limit', { limit: 'maxReservations' })).toBe(3)

    // a reservation ends with its holder's last connection, and the slot is free again
    await clients[0].stop()
    await eventually(() => relay.reservations === 2, 'the leaver\'s reservation to end')
    expect((await reserve(clients[3], addr)).status).toBe('OK')
    text = await metrics()
    expect(metricValue(text, 'parley_relay_reservations')).toBe(3)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(1)
  })

  it('refuses a reservation over maxReservationsPerIp, and counts peers from another address apart', async () => {
    const listen = hasIpv6 ? ['/ip4/127.0.0.1/tcp/0', '/ip6/::1/tcp/0'] : ['/ip4/127.0.0.1/tcp/0']
    const { relay, metrics } = await relayWith({ listen, limits: { maxReservationsPerIp: 2 } })
    const v4 = relay.multiaddrs.find(a => a.toString().startsWith('/ip4/')) as Multiaddr
    const clients = await Promise.all([0, 1, 2].map(async () => peer()))

    expect((await reserve(clients[0], v4)).status).toBe('OK')
    expect((await reserve(clients[1], v4)).status).toBe('OK')
    expect((await reserve(clients[2], v4)).status).toBe('RESERVATION_REFUSED')

    if (hasIpv6) {
      // the same machine over ::1 is another address: its own allowance
      const v6 = relay.multiaddrs.find(a => a.toString().startsWith('/ip6/')) as Multiaddr
      expect((await reserve(await peer(), v6)).status).toBe('OK')
    }

    const text = await metrics()
    expect(metricValue(text, 'parley_relay_refusals_total', { reason: 'max_reservations_per_ip', status: 'RESERVATION_REFUSED' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(1)
    expect(metricValue(text, 'parley_relay_reservations')).toBe(hasIpv6 ? 3 : 2)
  })

  it('refuses a peer that asks for more than maxReservationsPerPeer reservations within a TTL', async () => {
    const { metrics, addr } = await relayWith({ limits: { maxReservationsPerPeer: 2 } })
    const greedy = await peer()
    expect((await reserve(greedy, addr)).status).toBe('OK')
    expect((await reserve(greedy, addr)).status).toBe('OK') // a renewal counts too
    expect((await reserve(greedy, addr)).status).toBe('RESERVATION_REFUSED')
    // another peer is not held back by it
    expect((await reserve(await peer(), addr)).status).toBe('OK')

    const text = await metrics()
    expect(metricValue(text, 'parley_relay_refusals_total', { reason: 'max_reservations_per_peer', status: 'RESERVATION_REFUSED' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(1)
    expect(metricValue(text, 'parley_relay_reservations_granted_total', { kind: 'new' })).toBe(2)
    expect(metricValue(text, 'parley_relay_reservations_granted_total', { kind: 'renewal' })).toBe(1)
    expect(metricValue(text, 'parley_relay_reservations')).toBe(2)
  })

  it('refuses a circuit over maxCircuits with RESOURCE_LIMIT_EXCEEDED and counts it', async () => {
    const { relay, addr, metrics } = await relayWith({ limits: { maxCircuits: 1 } })
    const bob = await reservedPeer(addr)
    const alice = await peer({ circuits: true })
    const relayed = await alice.dial(bob.circuit)
    expect(relayed.limits).toBeDefined()
    await eventually(() => relay.circuits === 1, 'the circuit to count')

    const { response } = await connect(await peer(), addr, bob.node.peerId)
    expect(response.status).toBe('RESOURCE_LIMIT_EXCEEDED')

    const text = await metrics()
    expect(metricValue(text, 'parley_relay_refusals_total', { request: 'connect', reason: 'max_circuits', status: 'RESOURCE_LIMIT_EXCEEDED' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(1)
    expect(metricValue(text, 'parley_relay_circuits')).toBe(1)
    expect(metricValue(text, 'parley_relay_circuits_opened_total')).toBe(1)
  })

  it('refuses a circuit to a peer already in maxCircuitsPerPeer circuits, not to another peer', async () => {
    const { addr, metrics } = await relayWith({ limits: { maxCircuitsPerPeer: 1 } })
    const bob = await reservedPeer(addr)
    const carol = await reservedPeer(addr)
    await (await peer({ circuits: true })).dial(bob.circuit)

    const dave = await peer()
    expect((await connect(dave, addr, bob.node.peerId)).response.status).toBe('RESOURCE_LIMIT_EXCEEDED')
    expect((await connect(dave, addr, carol.node.peerId)).response.status).toBe('OK')
    // dave is in one circuit now, his limit as a source too
    expect((await connect(dave, addr, carol.node.peerId)).response.status).toBe('RESOURCE_LIMIT_EXCEEDED')
    // a peer with no reservation is the relay's own refusal, counted as such
    expect((await connect(await peer(), addr, (await peer()).peerId)).response.status).toBe('NO_RESERVATION')

    const text = await metrics()
    expect(metricValue(text, 'parley_relay_refusals_total', { reason: 'max_circuits_per_peer', status: 'RESOURCE_LIMIT_EXCEEDED' })).toBe(2)
    expect(metricValue(text, 'parley_relay_refusals_total', { reason: 'no_reservation', status: 'NO_RESERVATION' })).toBe(1)
    expect(metricValue(text, 'parley_relay_refusals_total')).toBe(3)
    expect(metricValue(text, 'parley_relay_circuits_opened_total')).toBe(2)
  })

  it('closes a circuit that goes over its data limit and counts it, with the bytes relayed', async () => {
    const circuitBytes = 16 * 1024
    const { relay, addr, metrics } = await relayWith({ limits: { circuitBytes } })
    const bob = await reservedPeer(addr)
    const alice = await peer({ circuits: true })
    const connection = await alice.dial(bob.circuit)
    const stream = await connection.newStream(SINK, { runOnLimitedConnection: true })

    // write until the relay cuts the circuit: 64 KiB at most, four times the limit
    const chunk = new Uint8Array(1024).fill(7)
    let sent = 0
    try {
      while (sent < 64 * 1024 && stream.status === 'open') {
        if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(10_000) })
        sent += chunk.byteLength
      }
    } catch {
      // the circuit was cut under the write: what this test wants
    }
    await closed(connection)
    expect(sent).toBeGreaterThan(0)

    await eventually(async () => metricValue(await metrics(), 'parley_relay_circuits_closed_total', { reason: 'data_limit' }) === 1, 'the data-limit close to be counted')
    const text = await metrics()
    expect(metricValue(text, 'parley_relay_circuits_closed_total')).toBe(1)
    expect(metricValue(text, 'parley_relay_circuits')).toBe(0)
    expect(relay.circuits).toBe(0)
    // the relay carried the limit and at most what alice sent beyond it (plus framing)
    const relayed = metricValue(text, 'parley_relay_relayed_bytes_total')
    expect(relayed).toBeGreaterThan(circuitBytes)
    expect(relayed).toBeLessThan(sent + 16 * 1024)
  })

  it('closes a circuit at its duration limit and counts it', async () => {
    const circuitDuration = 1_500
    const { addr, metrics } = await relayWith({ limits: { circuitDuration } })
    const bob = await reservedPeer(addr)
    const alice = await peer({ circuits: true })
    const opened = Date.now()
    await closed(await alice.dial(bob.circuit))
    expect(Date.now() - opened).toBeGreaterThanOrEqual(circuitDuration - 100)

    await eventually(async () => metricValue(await metrics(), 'parley_relay_circuits_closed_total', { reason: 'duration_limit' }) === 1, 'the duration-limit close to be counted')
  })

  it('counts circuits the peers end by how they ended: closed or reset', async () => {
    const { relay, addr, metrics } = await relayWith({})
    const bob = await reservedPeer(addr)
    const alice = await peer({ circuits: true })

    await (await alice.dial(bob.circuit)).close()
    await eventually(() => relay.circuits === 0, 'the closed circuit to end')
    const aborted = await alice.dial(bob.circuit)
    await eventually(() => relay.circuits === 1, 'the second circuit to open')
    aborted.abort(new Error('alice pulls the plug'))
    await eventually(() => relay.circuits === 0, 'the reset circuit to end')

    const text = await metrics()
    expect(metricValue(text, 'parley_relay_circuits_opened_total')).toBe(2)
    expect(metricValue(text, 'parley_relay_circuits_closed_total', { reason: 'closed' })).toBe(1)
    expect(metricValue(text, 'parley_relay_circuits_closed_total', { reason: 'reset' })).toBe(1)
    expect(metricValue(text, 'parley_relay_circuits_closed_total')).toBe(2)
  })

  it('stops promptly: closes circuits and connections, ends reservations, counts circuits ended by the shutdown', async () => {
    const { relay, addr } = await relayWith({ shutdownTimeout: 3_000 })
    const bob = await reservedPeer(addr)
    const alice = await peer({ circuits: true })
    const relayed = await alice.dial(bob.circuit)
    const bobLeft = new Promise(resolve => { bob.node.addEventListener('peer:disconnect', resolve, { once: true }) })

    const started = Date.now()
    await relay.stop()
    const took = Date.now() - started
    await Promise.all([closed(relayed), bobLeft])
    expect(took).toBeLessThan(3_000 + 2_000)
    expect(relay.reservations).toBe(0)
    expect(await relay.metrics.value('parley_relay_circuits_closed_total', { reason: 'shutdown' })).toBe(1)
    expect(await relay.metrics.value('parley_relay_circuits')).toBe(0)
    expect(relay.health()).toMatchObject({ ok: false, status: 'stopping' })
  })

  it('answers /healthz with the relay state', async () => {
    const { relay, addr } = await relayWith({})
    await reserve(await peer(), addr)
    const { status, body } = await httpGet(`${relay.metricsUrl ?? ''}/healthz`)
    expect(status).toBe(200)
    expect(JSON.parse(body)).toMatchObject({ ok: true, status: 'ok', peerId: relay.peerId.toString(), reservations: 1, connections: 1 })
    expect((await httpGet(`${relay.metricsUrl ?? ''}/nothing-here`)).status).toBe(404)
    const head = await fetch(`${relay.metricsUrl ?? ''}/metrics`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-type')).toContain('text/plain')
    expect((await fetch(`${relay.metricsUrl ?? ''}/metrics`, { method: 'POST' })).status).toBe(405)
  })
})
