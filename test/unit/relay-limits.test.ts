/**
 * The relay's limit policy (relay/limit-policy.ts) on its own, with a fake
 * clock and a stand-in for the server's reservation store, and the hook
 * (relay/guard.ts) on a stub of js-libp2p's relay server: what it answers,
 * what it hands on, what it counts.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pbStream, streamPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { groupsOfIp } from '../../common/address-groups.js'
import { RELAY_DEFAULTS } from '../../relay/config.js'
import { UnsupportedRelayServerError } from '../../relay/errors.js'
import { circuitEnd, RelayGuard } from '../../relay/guard.js'
import { RelayLimitPolicy } from '../../relay/limit-policy.js'
import { RelayMetrics } from '../../relay/metrics.js'
import { HopMessage, Status } from '../../relay/pb/circuit.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { AddressGroups } from '../../common/address-groups.js'
import type { RelayLimits } from '../../relay/config.js'
import type { CircuitSlot, PolicyLimits, Refused, ReservationSlot } from '../../relay/limit-policy.js'
import type { CircuitRelayService } from '@libp2p/circuit-relay-v2'
import type { AbortOptions, Connection, PeerId, Stream } from '@libp2p/interface'
import type { ProtobufStream } from '@libp2p/utils'

const TTL = 60 * 60_000

function limits (overrides: Partial<PolicyLimits> = {}): PolicyLimits {
  return { ...RELAY_DEFAULTS.limits, reservationTtl: TTL, ...overrides }
}

function groups (ip: string): AddressGroups {
  const g = groupsOfIp(ip)
  if (g == null) throw new Error(`${ip} is not an IP address`)
  return g
}

/** The server's reservation store as the policy sees it: the tests add and remove holders. */
function heldReservations (): { held: Map<string, AddressGroups | undefined>, view: { count(): number, groups(): Iterable<AddressGroups | undefined> } } {
  const held = new Map<string, AddressGroups | undefined>()
  return { held, view: { count: () => held.size, groups: () => held.values() } }
}

function policyWith (overrides: Partial<PolicyLimits> = {}): { policy: RelayLimitPolicy, held: Map<string, AddressGroups | undefined>, clock: FakeClock } {
  const clock = new FakeClock()
  const { held, view } = heldReservations()
  return { policy: new RelayLimitPolicy({ limits: limits(overrides), reservations: view, clock }), held, clock }
}

function slot<T extends ReservationSlot | CircuitSlot> (result: T | Refused): T {
  if (result.refusal != null) throw new Error(`refused: ${result.refusal}`)
  return result as T
}

/** Reserves as the server would: the slot, then (if granted) the reservation held. */
function grant (policy: RelayLimitPolicy, held: Map<string, AddressGroups | undefined>, peer: string, from?: AddressGroups): void {
  const renewal = held.has(peer)
  slot(policy.reserve({ peer, groups: from, renewal })).settle(true)
  held.set(peer, from)
}

describe('relay limit policy: reservations', () => {
  it('refuses a new reservation over maxReservations, counting the ones being answered, and renews one held', () => {
    const { policy, held } = policyWith({ maxReservations: 2 })
    grant(policy, held, 'a')
    const answering = slot(policy.reserve({ peer: 'b', renewal: false }))

    expect(policy.reserve({ peer: 'c', renewal: false })).toEqual({ refusal: 'max_reservations' })
    // a renewal keeps the slot it holds
    slot(policy.reserve({ peer: 'a', renewal: true })).settle(true)

    // the server refused b: its slot is free again
    answering.settle(false)
    slot(policy.reserve({ peer: 'c', renewal: false })).settle(true)
  })

  it('refuses a peer granted maxReservationsPerPeer within a TTL until its oldest grant ages out', () => {
    const { policy, held, clock } = policyWith({ maxReservationsPerPeer: 2 })
    grant(policy, held, 'a')
    clock.advance(10 * 60_000)
    grant(policy, held, 'a')
    expect(policy.reserve({ peer: 'a', renewal: true })).toEqual({ refusal: 'max_reservations_per_peer' })

    // a request the server did not grant does not count
    held.delete('a')
    clock.advance(TTL - 10 * 60_000 - 1)
    expect(policy.reserve({ peer: 'a', renewal: false })).toEqual({ refusal: 'max_reservations_per_peer' })
    clock.advance(1)
    slot(policy.reserve({ peer: 'a', renewal: false })).settle(false)
    slot(policy.reserve({ peer: 'a', renewal: false })).settle(true)
    expect(policy.reserve({ peer: 'a', renewal: true })).toEqual({ refusal: 'max_reservations_per_peer' })
  })

  it('refuses over maxReservationsPerIp and maxReservationsPerSubnet, held and being answered alike', () => {
    const { policy, held } = policyWith({ maxReservationsPerIp: 2, maxReservationsPerSubnet: 3 })
    grant(policy, held, 'a', groups('198.51.100.7'))
    const answering = slot(policy.reserve({ peer: 'b', groups: groups('198.51.100.7'), renewal: false }))

    expect(policy.reserve({ peer: 'c', groups: groups('198.51.100.7'), renewal: false })).toEqual({ refusal: 'max_reservations_per_ip' })
    // another host of the /24 still fits, then the /24 is full
    grant(policy, held, 'c', groups('198.51.100.8'))
    expect(policy.reserve({ peer: 'd', groups: groups('198.51.100.9'), renewal: false })).toEqual({ refusal: 'max_reservations_per_subnet' })
    // elsewhere, and not over IP, are counted apart
    grant(policy, held, 'e', groups('203.0.113.1'))
    grant(policy, held, 'f', undefined)

    answering.settle(false)
    grant(policy, held, 'd', groups('198.51.100.9'))
  })

  it('counts an IPv6 /64 as one IP', () => {
    const { policy, held } = policyWith({ maxReservationsPerIp: 1 })
    grant(policy, held, 'a', groups('2001:db8:1:2::1'))
    expect(policy.reserve({ peer: 'b', groups: groups('2001:db8:1:2::ffff'), renewal: false })).toEqual({ refusal: 'max_reservations_per_ip' })
    grant(policy, held, 'b', groups('2001:db8:1:3::1'))
  })

  it('refuses every reservation, renewals too, once draining', () => {
    const { policy, held } = policyWith()
    grant(policy, held, 'a')
    policy.drain()
    expect(policy.isDraining).toBe(true)
    expect(policy.reserve({ peer: 'a', renewal: true })).toEqual({ refusal: 'shutting_down' })
    expect(policy.reserve({ peer: 'b', renewal: false })).toEqual({ refusal: 'shutting_down' })
  })
})

describe('relay limit policy: circuits', () => {
  it('refuses over maxCircuits and counts a circuit until it is released, once', () => {
    const { policy } = policyWith({ maxCircuits: 2 })
    const first = slot(policy.openCircuit({ source: 'a', destination: 'b' }))
    slot(policy.openCircuit({ source: 'c', destination: 'd' }))
    expect(policy.circuits).toBe(2)
    expect(policy.openCircuit({ source: 'e', destination: 'f' })).toEqual({ refusal: 'max_circuits' })

    first.release()
    first.release()
    expect(policy.circuits).toBe(1)
    slot(policy.openCircuit({ source: 'e', destination: 'f' }))
    expect(policy.openCircuit({ source: 'g', destination: 'h' })).toEqual({ refusal: 'max_circuits' })
  })

  it('refuses a peer in maxCircuitsPerPeer circuits as the dialling or the dialled side', () => {
    const { policy } = policyWith({ maxCircuitsPerPeer: 2 })
    slot(policy.openCircuit({ source: 'a', destination: 'b' }))
    const second = slot(policy.openCircuit({ source: 'c', destination: 'b' }))

    expect(policy.openCircuit({ source: 'd', destination: 'b' })).toEqual({ refusal: 'max_circuits_per_peer' })
    expect(policy.openCircuit({ source: 'b', destination: 'd' })).toEqual({ refusal: 'max_circuits_per_peer' })
    slot(policy.openCircuit({ source: 'a', destination: 'c' })).release()

    second.release()
    slot(policy.openCircuit({ source: 'd', destination: 'b' }))
  })

  it('counts a circuit to the dialling peer itself, or to no named peer, once for that peer', () => {
    const { policy } = policyWith({ maxCircuitsPerPeer: 2 })
    slot(policy.openCircuit({ source: 'a', destination: 'a' }))
    slot(policy.openCircuit({ source: 'a' }))
    expect(policy.openCircuit({ source: 'a', destination: 'b' })).toEqual({ refusal: 'max_circuits_per_peer' })
  })

  it('refuses over maxCircuitsPerIp and maxCircuitsPerSubnet of the dialling side', () => {
    const { policy } = policyWith({ maxCircuitsPerIp: 1, maxCircuitsPerSubnet: 2 })
    const first = slot(policy.openCircuit({ source: 'a', destination: 'x', groups: groups('198.51.100.7') }))
    expect(policy.openCircuit({ source: 'b', destination: 'y', groups: groups('198.51.100.7') })).toEqual({ refusal: 'max_circuits_per_ip' })
    slot(policy.openCircuit({ source: 'b', destination: 'y', groups: groups('198.51.100.8') }))
    expect(policy.openCircuit({ source: 'c', destination: 'z', groups: groups('198.51.100.9') })).toEqual({ refusal: 'max_circuits_per_subnet' })
    // not over IP: not limited by address
    slot(policy.openCircuit({ source: 'c', destination: 'z' }))

    first.release()
    slot(policy.openCircuit({ source: 'd', destination: 'w', groups: groups('198.51.100.7') }))
  })

  it('refuses every circuit once draining', () => {
    const { policy } = policyWith()
    policy.drain()
    expect(policy.openCircuit({ source: 'a', destination: 'b' })).toEqual({ refusal: 'shutting_down' })
  })
})

describe('why a circuit ended', () => {
  const relay = { draining: false, circuitDuration: 120_000 }
  const named = (name: string): Error => Object.assign(new Error(name), { name })

  it.each([
    ['closed', undefined, undefined, 1_000, relay],
    ['data_limit', named('TransferLimitError'), true, 1_000, relay],
    ['duration_limit', named('DurationLimitError'), true, 119_950, relay],
    ['reservation_ended', named('DurationLimitError'), true, 60_000, relay],
    ['reset', named('StreamResetError'), true, 1_000, relay],
    ['reset', new Error('gone'), false, 1_000, relay],
    ['error', new Error('broken'), true, 1_000, relay],
    ['shutdown', new Error('stopping'), true, 1_000, { ...relay, draining: true }]
  ] as const)('%s', (end, error, local, age, state) => {
    expect(circuitEnd(error, local, age, state)).toBe(end)
  })
})

// ---------------------------------------------------------------------------
// The hook, on a stub of js-libp2p's relay server

interface StubReservation { addr: ReturnType<typeof multiaddr>, signal: { reset(ms: number): void } }

/** The parts of js-libp2p's CircuitRelayServer the guard hooks. */
interface StubServer {
  reservations: Map<string, StubReservation> & { get(peer: PeerId): StubReservation | undefined, has(peer: PeerId): boolean }
  handleHopProtocol(opts: { connection: Connection, request: HopMessage, stream: ProtobufStream<Stream> }, options: AbortOptions): Promise<void>
  stopHop(opts: { connection: Connection, request: unknown }, options: AbortOptions): Promise<Stream | undefined>
}

/** A reservation store keyed by peer id, as js-libp2p's PeerMap is. */
function peerMap (): StubServer['reservations'] {
  const map = new Map<string, StubReservation>()
  return Object.assign(map, {
    get: (peer: PeerId | string) => Map.prototype.get.call(map, peer.toString()),
    has: (peer: PeerId | string) => Map.prototype.has.call(map, peer.toString())
  }) as StubServer['reservations']
}

async function makePeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function connectionFrom (remotePeer: PeerId, address = '/ip4/198.51.100.7/tcp/4001'): Connection {
  return { remotePeer, remoteAddr: multiaddr(address) } as unknown as Connection
}

async function guardOn (server: StubServer, overrides: Partial<RelayLimits> = {}): Promise<{ guard: RelayGuard, metrics: RelayMetrics }> {
  const relayLimits = { ...RELAY_DEFAULTS.limits, ...overrides }
  const metrics = new RelayMetrics(relayLimits)
  const guard = new RelayGuard({ limits: relayLimits, metrics, clock: new FakeClock() })
  guard.attach(server as unknown as CircuitRelayService, defaultLogger().forComponent('test:relay:guard'))
  return { guard, metrics }
}

/** Sends one HOP request through the (hooked) server, as its stream handler does, and reads the answer. */
async function hop (server: StubServer, connection: Connection, request: HopMessage): Promise<{ answer: HopMessage, client: Stream, relaySide: Stream }> {
  const [client, relaySide] = await streamPair()
  const handled = server.handleHopProtocol({ connection, request, stream: pbStream(relaySide) }, {})
  const answer = await pbStream(client).pb(HopMessage).read()
  await handled
  return { answer, client, relaySide }
}

describe('relay guard: the hook on the relay server', () => {
  it('answers a reservation over a limit itself, RESERVATION_REFUSED, without asking the server, and counts it', async () => {
    let asked = 0
    const server: StubServer = {
      reservations: peerMap(),
      handleHopProtocol: async () => { asked++ },
      stopHop: async () => undefined
    }
    const { metrics } = await guardOn(server, { maxReservations: 1 })
    server.reservations.set((await makePeer()).toString(), { addr: multiaddr('/ip4/203.0.113.1/tcp/1'), signal: { reset: () => {} } })

    const { answer } = await hop(server, connectionFrom(await makePeer()), { type: HopMessage.Type.RESERVE })

    expect(answer).toEqual({ type: HopMessage.Type.STATUS, status: Status.RESERVATION_REFUSED })
    // field 1 (type) STATUS = 2, field 5 (status) 200
    expect(HopMessage.encode(answer)).toEqual(Uint8Array.from([0x08, 0x02, 0x28, 0xc8, 0x01]))
    expect(asked).toBe(0)
    expect(await metrics.value('parley_relay_refusals_total', { request: 'reserve', reason: 'max_reservations', status: 'RESERVATION_REFUSED' })).toBe(1)
  })

  it('hands a reservation within the limits on, and counts what the server answered', async () => {
    const denied = await makePeer()
    const server: StubServer = {
      reservations: peerMap(),
      handleHopProtocol: async ({ connection, stream }) => {
        const status = connection.remotePeer.equals(denied) ? Status.PERMISSION_DENIED : Status.OK
        if (status === Status.OK) server.reservations.set(connection.remotePeer.toString(), { addr: connection.remoteAddr, signal: { reset: () => {} } })
        await stream.pb(HopMessage).write({ type: HopMessage.Type.STATUS, status })
      },
      stopHop: async () => undefined
    }
    const { metrics } = await guardOn(server)
    const peer = await makePeer()

    expect((await hop(server, connectionFrom(peer), { type: HopMessage.Type.RESERVE })).answer.status).toBe(Status.OK)
    expect((await hop(server, connectionFrom(peer), { type: HopMessage.Type.RESERVE })).answer.status).toBe(Status.OK)
    expect((await hop(server, connectionFrom(denied), { type: HopMessage.Type.RESERVE })).answer.status).toBe(Status.PERMISSION_DENIED)

    expect(await metrics.value('parley_relay_reservations_granted_total', { kind: 'new' })).toBe(1)
    expect(await metrics.value('parley_relay_reservations_granted_total', { kind: 'renewal' })).toBe(1)
    expect(await metrics.value('parley_relay_refusals_total', { request: 'reserve', reason: 'permission_denied', status: 'PERMISSION_DENIED' })).toBe(1)
  })

  it('answers a circuit over a limit RESOURCE_LIMIT_EXCEEDED, and counts an open circuit with the bytes of both its halves until both close', async () => {
    const destination = await makePeer()
    let destinationSide: Stream | undefined
    let otherEnd: Stream | undefined
    const server: StubServer = {
      reservations: peerMap(),
      // as js-libp2p's does: the STOP stream is opened from inside the CONNECT handler
      handleHopProtocol: async (opts, options) => {
        destinationSide = await server.stopHop({ connection: connectionFrom(destination), request: {} }, options)
        await opts.stream.pb(HopMessage).write({ type: HopMessage.Type.STATUS, status: Status.OK })
      },
      stopHop: async () => {
        const [relayEnd, peerEnd] = await streamPair()
        otherEnd = peerEnd
        return relayEnd
      }
    }
    const { guard, metrics } = await guardOn(server, { maxCircuitsPerPeer: 1 })
    const source = await makePeer()
    const connect: HopMessage = { type: HopMessage.Type.CONNECT, peer: { id: destination.toMultihash().bytes, addrs: [] } }

    const { answer, client, relaySide } = await hop(server, connectionFrom(source), connect)
    expect(answer.status).toBe(Status.OK)
    expect(guard.circuits).toBe(1)
    // the destination is in one circuit already
    const refused = await hop(server, connectionFrom(await makePeer(), '/ip4/203.0.113.9/tcp/1'), connect)
    expect(refused.answer).toEqual({ type: HopMessage.Type.STATUS, status: Status.RESOURCE_LIMIT_EXCEEDED })
    expect(await metrics.value('parley_relay_refusals_total', { request: 'connect', reason: 'max_circuits_per_peer' })).toBe(1)

    // bytes arriving at the relay on either half are counted
    const arrived = Promise.all([relaySide, destinationSide!].map(async s => new Promise(resolve => { s.addEventListener('message', resolve, { once: true }) })))
    client.send(new Uint8Array(100))
    otherEnd!.send(new Uint8Array(50))
    await arrived
    expect(await metrics.value('parley_relay_relayed_bytes_total')).toBe(150)

    const closed = Promise.all([relaySide, destinationSide!].map(async s => new Promise(resolve => { s.addEventListener('close', resolve, { once: true }) })))
    await Promise.all([client.close(), otherEnd!.close(), relaySide.close(), destinationSide!.close()])
    await closed
    expect(guard.circuits).toBe(0)
    expect(await metrics.value('parley_relay_circuits_opened_total')).toBe(1)
    expect(await metrics.value('parley_relay_circuits_closed_total', { reason: 'closed' })).toBe(1)
  })

  it('refuses to guard a relay server it cannot hook', async () => {
    const metrics = new RelayMetrics(RELAY_DEFAULTS.limits)
    const guard = new RelayGuard({ limits: RELAY_DEFAULTS.limits, metrics })
    expect(() => { guard.attach({} as unknown as CircuitRelayService, defaultLogger().forComponent('test')) }).toThrow(UnsupportedRelayServerError)
  })
})
