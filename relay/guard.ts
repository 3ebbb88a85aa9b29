/**
 * The hook that puts parley's relay limits (./limit-policy.ts) in front of
 * js-libp2p's circuit-relay-v2 server and feeds the relay metrics
 * (./metrics.ts).
 *
 * js-libp2p's server has a total reservation limit and per-connection stream
 * limits, nothing per peer, per IP, per subnet or on open circuits, and
 * refusals that reach it only through the connection gater
 * (`denyInboundRelayReservation`, `denyOutboundRelayedConnection`) are
 * answered PERMISSION_DENIED. So the hook sits in the server's request
 * dispatch: the server reads and decodes each HOP request, then calls its
 * (public) `handleHopProtocol`; the hook wraps that method, asks the policy,
 * answers a refusal itself with the relay-v2 status a client expects
 * (RESERVATION_REFUSED for reservations, RESOURCE_LIMIT_EXCEEDED for
 * circuits, as go-libp2p does), and otherwise hands the request on, watching
 * the status the server answers so that every refusal is counted by reason.
 * It also wraps `stopHop` to learn the other half of each circuit, to count
 * its bytes and see why it ended.
 *
 * When upstream gains these limits (@libp2p/circuit-relay-v2's server
 * limiting reservations per peer, per IP and per subnet or ASN, and circuits
 * in total, per peer and per IP, answering RESERVATION_REFUSED /
 * RESOURCE_LIMIT_EXCEEDED, as go-libp2p's `relay.Resources` does with
 * MaxReservationsPerPeer, MaxReservationsPerIP, MaxReservationsPerASN and
 * MaxCircuits), pass the limits to `circuitRelayServer` in relay/relay.ts and
 * delete:
 * - relay/limit-policy.ts, with the "relay limit policy" tests and the
 *   refusal tests of "the hook" in test/unit/relay-limits.test.ts;
 * - in this file: `policy`, `refuse`, and the policy's checks in `reserve`
 *   and `connect` (the `handleHopProtocol` wrapper then only counts what the
 *   server answered);
 * - relay/pb/ from the relay (`refuse` is the only writer of HOP messages in
 *   it; move it to test/relay/, whose raw HOP client uses it too).
 * The `stopHop` wrapper, `watchStatus` and `watchCircuit` feed the metrics
 * and stay until upstream counts refusals and circuit ends itself. No such
 * upstream option is proposed in js-libp2p's issues as this is written: its
 * server has `reservations.maxReservations` (the total) and per-connection
 * stream limits only.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { addressGroups } from '../common/address-groups.js'
import { UnsupportedRelayServerError } from './errors.js'
import { RelayLimitPolicy } from './limit-policy.js'
import { HopMessage, Status } from './pb/circuit.js'
import type { RelayLimits } from './config.js'
import type { CircuitSlot, HeldReservations } from './limit-policy.js'
import type { CircuitEnd, HopRequestKind, RefusalReason, RelayMetrics } from './metrics.js'
import type { AddressGroups } from '../common/address-groups.js'
import type { Clock } from '../common/clock.js'
import type { CircuitRelayServerComponents, CircuitRelayServerInit, CircuitRelayService } from '@libp2p/circuit-relay-v2'
import type { AbortOptions, Connection, Logger, PeerId, Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import type { ProtobufStream } from '@libp2p/utils'

/** What js-libp2p's server hands `handleHopProtocol`: the request it decoded, and the stream to answer on. */
interface HopOptions {
  connection: Connection
  request: HopMessage
  stream: ProtobufStream<Stream>
}

interface StopOptions {
  connection: Connection
  request: unknown
}

type HandleHop = (opts: HopOptions, options: AbortOptions) => Promise<void>
type StopHop = (opts: StopOptions, options: AbortOptions) => Promise<Stream | undefined>

/**
 * The js-libp2p `CircuitRelayServer` instance: public methods of the class,
 * though not of the `CircuitRelayService` interface it is exported as.
 */
interface HopServer extends CircuitRelayService {
  handleHopProtocol: HandleHop
  stopHop: StopHop
}

/** The reasons of the refusals js-libp2p's server answers itself, by the status it answers. */
const REASON_OF_STATUS: Partial<Record<Status, RefusalReason>> = {
  [Status.RESERVATION_REFUSED]: 'max_reservations',
  [Status.RESOURCE_LIMIT_EXCEEDED]: 'resource_limit',
  [Status.PERMISSION_DENIED]: 'permission_denied',
  [Status.NO_RESERVATION]: 'no_reservation',
  [Status.CONNECTION_FAILED]: 'connection_failed',
  [Status.MALFORMED_MESSAGE]: 'malformed',
  [Status.UNEXPECTED_MESSAGE]: 'unexpected_message'
}

/**
 * A view of `pb` that reports the `status` of each message written through it
 * (after the write succeeded), however the server reaches the writer.
 */
function watchStatus (pb: ProtobufStream<Stream>, onStatus: (status: Status) => void): ProtobufStream<Stream> {
  const seen = (message: unknown): void => {
    const status = (message as { status?: unknown } | undefined)?.status
    if (typeof status === 'string') onStatus(status as Status)
  }
  const watched: ProtobufStream<Stream> = {
    read: async (proto, options) => pb.read(proto, options),
    write: async (message, proto, options) => {
      await pb.write(message, proto, options)
      seen(message)
    },
    writeV: async (messages, proto, options) => {
      await pb.writeV(messages, proto, options)
      messages.forEach(seen)
    },
    pb: (proto) => ({
      read: async (options) => watched.read(proto, options),
      write: async (message, options) => { await watched.write(message, proto, options) },
      writeV: async (messages, options) => { await watched.writeV(messages, proto, options) },
      unwrap: () => watched
    }),
    unwrap: () => pb.unwrap()
  }
  return watched
}

/**
 * Why a circuit ended, from how its first stream closed. js-libp2p reports a
 * reservation that ended (expired, or its peer left) as a DurationLimitError
 * too: the circuit's age tells the two apart.
 */
export function circuitEnd (error: Error | undefined, local: boolean | undefined, age: number, relay: { draining: boolean, circuitDuration: number }): CircuitEnd {
  if (relay.draining) return 'shutdown'
  if (error == null) return 'closed'
  if (error.name === 'TransferLimitError') return 'data_limit'
  if (error.name === 'DurationLimitError') return age >= relay.circuitDuration - 50 ? 'duration_limit' : 'reservation_ended'
  // a peer aborted its relayed connection, or its connection to the relay went
  if (local === false || error.name === 'StreamResetError') return 'reset'
  return 'error'
}

export interface RelayGuardInit {
  limits: Required<RelayLimits>
  metrics: RelayMetrics
  /** The policy's clock, for tests. */
  clock?: Clock
}

interface CircuitContext {
  /** The STOP stream to the destination, once the server has opened it. */
  destination?: Stream
}

export class RelayGuard {
  private readonly limits: Required<RelayLimits>
  private readonly metrics: RelayMetrics
  private readonly policy: RelayLimitPolicy
  private server?: HopServer
  private log?: Logger
  /**
   * Links the STOP stream the server opens to the CONNECT request it opens
   * it for. The server calls `stopHop` from inside `handleHopProtocol` with
   * arguments it builds itself (the destination's connection, a STOP
   * request); all it passes on of the CONNECT is its options object, and a
   * map keyed on that would break silently the day upstream copies it
   * (`{ ...options, signal }`). The async context links the two calls
   * however upstream passes its arguments.
   */
  private readonly circuitContext = new AsyncLocalStorage<CircuitContext>()
  /** The address groups of each held reservation (the store's reservation objects live as long as the reservation). */
  private readonly groupsOf = new WeakMap<object, AddressGroups | undefined>()

  constructor (init: RelayGuardInit) {
    this.limits = init.limits
    this.metrics = init.metrics
    this.policy = new RelayLimitPolicy({ limits: init.limits, clock: init.clock, reservations: this.heldReservations() })
  }

  /** Circuits open now (and being set up). */
  get circuits (): number {
    return this.policy.circuits
  }

  get isDraining (): boolean {
    return this.policy.isDraining
  }

  /** Hooks the guard into a freshly made js-libp2p relay server (before it starts). */
  attach (service: CircuitRelayService, log: Logger): void {
    const server = service as HopServer
    if (typeof server.handleHopProtocol !== 'function' || typeof server.stopHop !== 'function' || server.reservations == null) {
      // a newer @libp2p/circuit-relay-v2 moved what the guard hooks: refuse to
      // run a public relay without its limits rather than run it unguarded
      throw new UnsupportedRelayServerError('this @libp2p/circuit-relay-v2 has no handleHopProtocol/stopHop; parley cannot enforce its relay limits on it')
    }
    this.server = server
    this.log = log

    const handleHop = server.handleHopProtocol.bind(server)
    server.handleHopProtocol = async (opts, options) => { await this.onHop(handleHop, opts, options) }

    const stopHop = server.stopHop.bind(server)
    server.stopHop = async (opts, options) => {
      const stream = await stopHop(opts, options)
      const context = this.circuitContext.getStore()
      if (context != null) context.destination = stream
      return stream
    }
  }

  /** From now on refuse new reservations and circuits: the relay is stopping. */
  drain (): void {
    this.policy.drain()
  }

  stop (): void {
    this.policy.drain()
  }

  /**
   * Ends the reservation of a peer that has no connection left: it is of no
   * use (the relay cannot reach the peer to open a circuit) and would hold a
   * slot until it expires. The client makes a new one when it reconnects.
   */
  endReservation (peer: PeerId): void {
    const reservation = this.server?.reservations.get(peer)
    if (reservation == null) return
    // Expire it through its own signal instead of deleting the map entry: the
    // store deletes the entry when the signal aborts, so an old timer can
    // never delete a newer reservation of the same peer later on.
    reservation.signal.reset(0)
    this.log?.trace('peer %p disconnected, ending its reservation', peer)
  }

  /** The server's reservation store, as the policy counts it. */
  private heldReservations (): HeldReservations {
    return {
      count: () => this.server?.reservations.size ?? 0,
      groups: () => this.reservationGroups()
    }
  }

  private * reservationGroups (): Generator<AddressGroups | undefined> {
    for (const [, reservation] of this.server?.reservations ?? []) {
      // every new reservation counts the held ones by address: reading each
      // one's address once, not once per newcomer, keeps filling a relay with
      // N reservations from costing N² address parses
      if (!this.groupsOf.has(reservation)) this.groupsOf.set(reservation, addressGroups(reservation.addr))
      yield this.groupsOf.get(reservation)
    }
  }

  private async onHop (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<void> {
    switch (opts.request.type) {
      case HopMessage.Type.RESERVE: await this.reserve(handleHop, opts, options); break
      case HopMessage.Type.CONNECT: await this.connect(handleHop, opts, options); break
      // the server answers UNEXPECTED_MESSAGE
      default: await handleHop(opts, options)
    }
  }

  private async refuse (opts: HopOptions, request: HopRequestKind, reason: RefusalReason, status: Status, options: AbortOptions): Promise<void> {
    this.log?.('refusing %s from %p: %s', request, opts.connection.remotePeer, reason)
    this.metrics.refused(request, reason, status)
    await opts.stream.write({ type: HopMessage.Type.STATUS, status }, HopMessage, options)
    // the client closes its side once it has read the status; not awaited, so
    // that a client which never does cannot hold the handler
    opts.stream.unwrap().close(options).catch(() => {})
  }

  /** Runs the server's handler and returns the status it answered (undefined if it wrote none). */
  private async handOn (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<Status | undefined> {
    let status: Status | undefined
    await handleHop({ ...opts, stream: watchStatus(opts.stream, s => { status ??= s }) }, options)
    return status
  }

  /** Counts a request the server answered with something else than OK. */
  private countRefusal (request: HopRequestKind, status: Status | undefined): void {
    this.metrics.refused(request, REASON_OF_STATUS[status ?? Status.UNUSED] ?? 'error', status ?? 'NONE')
  }

  private async reserve (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<void> {
    const peer = opts.connection.remotePeer
    const renewal = this.server?.reservations.has(peer) === true
    const slot = this.policy.reserve({ peer: peer.toString(), groups: addressGroups(opts.connection.remoteAddr), renewal })
    if (slot.refusal != null) {
      await this.refuse(opts, 'reserve', slot.refusal, Status.RESERVATION_REFUSED, options)
      return
    }

    let status: Status | undefined
    try {
      status = await this.handOn(handleHop, opts, options)
    } catch (err) {
      slot.settle(false)
      this.metrics.refused('reserve', 'error', Status.MALFORMED_MESSAGE)
      throw err
    }

    const granted = status === Status.OK && this.server?.reservations.has(peer) === true
    slot.settle(granted)
    if (granted) {
      this.metrics.reservationsGranted.inc({ kind: renewal ? 'renewal' : 'new' })
    } else {
      this.countRefusal('reserve', status)
    }
  }

  private async connect (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<void> {
    const id = opts.request.peer?.id
    const slot = this.policy.openCircuit({
      source: opts.connection.remotePeer.toString(),
      // a malformed request: the server answers MALFORMED_MESSAGE and it is counted below
      destination: id instanceof Uint8Array && id.byteLength > 0 ? uint8ArrayToString(id, 'base58btc') : undefined,
      groups: addressGroups(opts.connection.remoteAddr)
    })
    if (slot.refusal != null) {
      await this.refuse(opts, 'connect', slot.refusal, Status.RESOURCE_LIMIT_EXCEEDED, options)
      return
    }

    const context: CircuitContext = {}
    let status: Status | undefined
    try {
      status = await this.circuitContext.run(context, async () => this.handOn(handleHop, opts, options))
    } catch (err) {
      slot.release()
      this.metrics.refused('connect', 'error', Status.MALFORMED_MESSAGE)
      throw err
    }
    if (status !== Status.OK) {
      slot.release()
      this.countRefusal('connect', status)
      return
    }

    this.metrics.circuitsOpened.inc()
    // the server has joined the two streams by now; unwrapping again returns the same raw stream
    this.watchCircuit([opts.stream.unwrap(), context.destination], slot)
  }

  /** Counts a circuit's bytes and, once both its streams have closed, why it ended. */
  private watchCircuit (candidates: Array<Stream | undefined>, slot: CircuitSlot): void {
    const streams = candidates.filter((s): s is Stream => s != null)
    const opened = Date.now()
    let open = streams.length
    let end: CircuitEnd | undefined

    const onMessage = (evt: StreamMessageEvent): void => {
      this.metrics.relayedBytes.inc(evt.data.byteLength)
    }
    const closed = (error?: Error, local?: boolean): void => {
      end ??= circuitEnd(error, local, Date.now() - opened, { draining: this.policy.isDraining, circuitDuration: this.limits.circuitDuration })
      if (--open > 0) return
      for (const s of streams) s.removeEventListener('message', onMessage)
      slot.release()
      this.metrics.circuitsClosed.inc({ reason: end })
    }

    if (streams.length === 0) {
      closed()
      return
    }
    for (const stream of streams) {
      if (stream.status !== 'open' && stream.status !== 'closing') {
        closed()
        continue
      }
      stream.addEventListener('message', onMessage)
      stream.addEventListener('close', (evt: StreamCloseEvent) => { closed(evt.error, evt.local) }, { once: true })
    }
  }
}

/**
 * js-libp2p's circuit relay server with parley's guard in front of it: use in
 * place of `circuitRelayServer(init)` in the libp2p services.
 */
export function guardedRelayServer (guard: RelayGuard, init: CircuitRelayServerInit): (components: CircuitRelayServerComponents) => CircuitRelayService {
  const factory = circuitRelayServer(init)
  return (components) => {
    const server = factory(components)
    guard.attach(server, components.logger.forComponent('parley:relay:guard'))
    return server
  }
}
