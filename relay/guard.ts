/**
 * parley's limits on the circuit-relay-v2 server.
 *
 * js-libp2p's server has a total reservation limit and per-connection stream
 * limits, nothing per peer, per IP, per subnet or on open circuits, and
 * refusals that reach it only through the connection gater are answered
 * PERMISSION_DENIED.
 * The guard therefore sits in front of the server's request dispatch: the
 * server reads and decodes each HOP request, then calls its (public)
 * `handleHopProtocol`; the guard wraps that method, refuses a request over a
 * limit itself with the relay-v2 status a client expects (RESERVATION_REFUSED
 * for reservations, RESOURCE_LIMIT_EXCEEDED for circuits, as go-libp2p does),
 * and otherwise hands it on, watching the status the server answers so every
 * refusal is counted by reason. It also wraps `stopHop` to learn the other half
 * of each circuit, to count bytes and see why a circuit ended.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { writer } from 'protons-runtime'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { addressGroups } from '../common/address-groups.js'
import { UnsupportedRelayServerError } from './errors.js'
import type { AddressGroups } from '../common/address-groups.js'
import type { RelayLimits } from './config.js'
import type { CircuitEnd, HopRequestKind, RefusalReason, RelayMetrics } from './metrics.js'
import type { CircuitRelayServerComponents, CircuitRelayServerInit, CircuitRelayService } from '@libp2p/circuit-relay-v2'
import type { AbortOptions, Connection, Logger, PeerId, Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import type { ProtobufStream } from '@libp2p/utils'

/** A decoded HOP request as js-libp2p's server hands it on (enum values are their names). */
interface HopRequest {
  type?: string
  peer?: { id: Uint8Array, addrs: Uint8Array[] }
}

interface HopOptions {
  connection: Connection
  request: HopRequest
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

/** relay-v2 status codes parley answers with itself (circuit-relay-v2 `Status`). */
const STATUS_CODE = { RESERVATION_REFUSED: 200, RESOURCE_LIMIT_EXCEEDED: 201 } as const
type OwnStatus = keyof typeof STATUS_CODE

/** HopMessage `{ type: STATUS, status }`, the only message parley writes (field 1 = type, STATUS = 2; field 5 = status). */
function encodeHopStatus (status: OwnStatus): Uint8Array {
  const w = writer()
  w.uint32(0x08)
  w.int32(2)
  w.uint32(0x28)
  w.int32(STATUS_CODE[status])
  return w.finish()
}

const REASON_OF_STATUS: Record<string, RefusalReason> = {
  RESERVATION_REFUSED: 'max_reservations',
  RESOURCE_LIMIT_EXCEEDED: 'resource_limit',
  PERMISSION_DENIED: 'permission_denied',
  NO_RESERVATION: 'no_reservation',
  CONNECTION_FAILED: 'connection_failed',
  MALFORMED_MESSAGE: 'malformed',
  UNEXPECTED_MESSAGE: 'unexpected_message'
}

/**
 * A view of `pb` that reports the `status` of each message written through it
 * (after the write succeeded), however the server reaches the writer.
 */
function watchStatus (pb: ProtobufStream<Stream>, onStatus: (status: string) => void): ProtobufStream<Stream> {
  const seen = (message: unknown): void => {
    const status = (message as { status?: unknown } | undefined)?.status
    if (typeof status === 'string') onStatus(status)
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

export interface RelayGuardInit {
  limits: Required<RelayLimits>
  metrics: RelayMetrics
}

interface CircuitContext {
  /** The STOP stream to the destination, once the server has opened it. */
  destination?: Stream
}

export class RelayGuard {
  private readonly limits: Required<RelayLimits>
  private readonly metrics: RelayMetrics
  private server?: HopServer
  private log?: Logger
  private draining = false
  /** Reservation requests being answered for peers that hold none yet: peer → address groups. */
  private readonly pendingReservations = new Map<string, AddressGroups | undefined>()
  /** Times of the reservations granted to each peer within the last TTL. */
  private readonly grants = new Map<string, number[]>()
  private openCircuits = 0
  /** Open circuits per `peer:<id>` (either side), `ip:<key>` and `subnet:<key>` (the dialling side's address). */
  private readonly circuitsBy = new Map<string, number>()
  private readonly circuitContext = new AsyncLocalStorage<CircuitContext>()
  private sweepTimer?: ReturnType<typeof setInterval>

  constructor (init: RelayGuardInit) {
    this.limits = init.limits
    this.metrics = init.metrics
  }

  /** Circuits open now (and being set up). */
  get circuits (): number {
    return this.openCircuits
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

    // forget grant times older than a TTL, for peers that stopped asking
    this.sweepTimer = setInterval(() => { this.sweep(Date.now()) }, Math.min(60_000, this.limits.reservationTtl))
    this.sweepTimer.unref()
  }

  /** From now on refuse new reservations and circuits: the relay is stopping. */
  drain (): void {
    this.draining = true
  }

  get isDraining (): boolean {
    return this.draining
  }

  stop (): void {
    this.draining = true
    clearInterval(this.sweepTimer)
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

  private async onHop (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<void> {
    switch (opts.request.type) {
      case 'RESERVE': await this.reserve(handleHop, opts, options); break
      case 'CONNECT': await this.connect(handleHop, opts, options); break
      // the server answers UNEXPECTED_MESSAGE
      default: await handleHop(opts, options)
    }
  }

  private async refuse (opts: HopOptions, request: HopRequestKind, reason: RefusalReason, status: OwnStatus, options: AbortOptions): Promise<void> {
    this.log?.('refusing %s from %p: %s', request, opts.connection.remotePeer, reason)
    this.metrics.refused(request, reason, status)
    await opts.stream.write(status, { encode: encodeHopStatus }, options)
    // the client closes its side once it has read the status; not awaited, so
    // that a client which never does cannot hold the handler
    opts.stream.unwrap().close(options).catch(() => {})
  }

  /** Runs the server's handler and returns the status it answered (undefined if it wrote none). */
  private async handOn (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<string | undefined> {
    let status: string | undefined
    await handleHop({ ...opts, stream: watchStatus(opts.stream, s => { status ??= s }) }, options)
    return status
  }

  private grantsOf (peer: string, now: number): number[] {
    const times = (this.grants.get(peer) ?? []).filter(t => now - t < this.limits.reservationTtl)
    if (times.length > 0) this.grants.set(peer, times)
    else this.grants.delete(peer)
    return times
  }

  private sweep (now: number): void {
    for (const peer of this.grants.keys()) this.grantsOf(peer, now)
  }

  /** Reservations held and being granted from the same IP and the same subnet as `groups`. */
  private reservationsFrom (groups: AddressGroups): { ip: number, subnet: number } {
    const count = { ip: 0, subnet: 0 }
    const add = (other: AddressGroups | undefined): void => {
      if (other?.subnet !== groups.subnet) return
      count.subnet++
      if (other.ip === groups.ip) count.ip++
    }
    for (const [, reservation] of this.server?.reservations ?? []) add(addressGroups(reservation.addr))
    for (const pending of this.pendingReservations.values()) add(pending)
    return count
  }

  private checkReservation (peer: PeerId, groups: AddressGroups | undefined, now: number): RefusalReason | undefined {
    if (this.draining) return 'shutting_down'
    if (this.grantsOf(peer.toString(), now).length >= this.limits.maxReservationsPerPeer) return 'max_reservations_per_peer'
    // a renewal keeps the slot it holds; only a new reservation needs a free one
    if (this.server?.reservations.has(peer) === true) return undefined
    const held = (this.server?.reservations.size ?? 0) + this.pendingReservations.size
    if (held >= this.limits.maxReservations) return 'max_reservations'
    if (groups == null) return undefined
    const from = this.reservationsFrom(groups)
    if (from.ip >= this.limits.maxReservationsPerIp) return 'max_reservations_per_ip'
    if (from.subnet >= this.limits.maxReservationsPerSubnet) return 'max_reservations_per_subnet'
    return undefined
  }

  private async reserve (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<void> {
    const peer = opts.connection.remotePeer
    const key = peer.toString()
    const groups = addressGroups(opts.connection.remoteAddr)
    const now = Date.now()
    const refusal = this.checkReservation(peer, groups, now)
    if (refusal != null) {
      await this.refuse(opts, 'reserve', refusal, 'RESERVATION_REFUSED', options)
      return
    }

    const isNew = this.server?.reservations.has(peer) !== true
    // hold the slot while the server answers, so concurrent requests cannot
    // all pass the check above
    if (isNew) this.pendingReservations.set(key, groups)
    let status: string | undefined
    try {
      status = await this.handOn(handleHop, opts, options)
    } catch (err) {
      this.metrics.refused('reserve', 'error', 'MALFORMED_MESSAGE')
      throw err
    } finally {
      if (isNew) this.pendingReservations.delete(key)
    }

    if (status === 'OK' && this.server?.reservations.has(peer) === true) {
      this.grants.set(key, [...this.grantsOf(key, now), now])
      this.metrics.reservationsGranted.inc({ kind: isNew ? 'new' : 'renewal' })
    } else {
      this.metrics.refused('reserve', REASON_OF_STATUS[status ?? ''] ?? 'error', status ?? 'NONE')
    }
  }

  private circuitsOf (key: string): number {
    return this.circuitsBy.get(key) ?? 0
  }

  private addCircuit (keys: string[], delta: 1 | -1): void {
    this.openCircuits += delta
    for (const key of keys) {
      const n = this.circuitsOf(key) + delta
      if (n > 0) this.circuitsBy.set(key, n)
      else this.circuitsBy.delete(key)
    }
  }

  private async connect (handleHop: HandleHop, opts: HopOptions, options: AbortOptions): Promise<void> {
    const source = opts.connection.remotePeer.toString()
    const id = opts.request.peer?.id
    // a malformed request: the server answers MALFORMED_MESSAGE and it is counted below
    const destination = id instanceof Uint8Array && id.byteLength > 0 ? uint8ArrayToString(id, 'base58btc') : undefined
    // the dialling side's address: the dialled side only ever holds a
    // reservation, and is bounded per peer
    const groups = addressGroups(opts.connection.remoteAddr)

    let refusal: RefusalReason | undefined
    if (this.draining) refusal = 'shutting_down'
    else if (this.openCircuits >= this.limits.maxCircuits) refusal = 'max_circuits'
    else if (this.circuitsOf(`peer:${source}`) >= this.limits.maxCircuitsPerPeer ||
      (destination != null && this.circuitsOf(`peer:${destination}`) >= this.limits.maxCircuitsPerPeer)) refusal = 'max_circuits_per_peer'
    else if (groups != null && this.circuitsOf(`ip:${groups.ip}`) >= this.limits.maxCircuitsPerIp) refusal = 'max_circuits_per_ip'
    else if (groups != null && this.circuitsOf(`subnet:${groups.subnet}`) >= this.limits.maxCircuitsPerSubnet) refusal = 'max_circuits_per_subnet'
    if (refusal != null) {
      await this.refuse(opts, 'connect', refusal, 'RESOURCE_LIMIT_EXCEEDED', options)
      return
    }

    // the circuit counts from now on, while the server sets it up
    const keys = destination == null || destination === source ? [`peer:${source}`] : [`peer:${source}`, `peer:${destination}`]
    if (groups != null) keys.push(`ip:${groups.ip}`, `subnet:${groups.subnet}`)
    this.addCircuit(keys, 1)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.addCircuit(keys, -1)
    }

    const context: CircuitContext = {}
    let status: string | undefined
    try {
      status = await this.circuitContext.run(context, async () => this.handOn(handleHop, opts, options))
    } catch (err) {
      release()
      this.metrics.refused('connect', 'error', 'MALFORMED_MESSAGE')
      throw err
    }
    if (status !== 'OK') {
      release()
      this.metrics.refused('connect', REASON_OF_STATUS[status ?? ''] ?? 'error', status ?? 'NONE')
      return
    }

    this.metrics.circuitsOpened.inc()
    // the server has joined the two streams by now; unwrapping again returns the same raw stream
    this.watchCircuit([opts.stream.unwrap(), context.destination], release)
  }

  /** Counts a circuit's bytes and, once both its streams have closed, why it ended. */
  private watchCircuit (candidates: Array<Stream | undefined>, release: () => void): void {
    const streams = candidates.filter((s): s is Stream => s != null)
    const opened = Date.now()
    let open = streams.length
    let end: CircuitEnd | undefined

    const onMessage = (evt: StreamMessageEvent): void => {
      this.metrics.relayedBytes.inc(evt.data.byteLength)
    }
    const closed = (error?: Error, local?: boolean): void => {
      end ??= this.classify(error, local, Date.now() - opened)
      if (--open > 0) return
      for (const s of streams) s.removeEventListener('message', onMessage)
      release()
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

  private classify (error: Error | undefined, local: boolean | undefined, age: number): CircuitEnd {
    if (this.draining) return 'shutdown'
    if (error == null) return 'closed'
    if (error.name === 'TransferLimitError') return 'data_limit'
    // js-libp2p reports a reservation that ended (expired, or its peer left)
    // as a DurationLimitError too: tell them apart by the circuit's age
    if (error.name === 'DurationLimitError') return age >= this.limits.circuitDuration - 50 ? 'duration_limit' : 'reservation_ended'
    // a peer aborted its relayed connection, or its connection to the relay went
    if (local === false || error.name === 'StreamResetError') return 'reset'
    return 'error'
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
