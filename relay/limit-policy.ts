/**
 * parley's limits on relay reservations and circuits, as decisions only: it
 * is told of each request (who asks, from which address groups) and answers
 * with a refusal reason or a slot, and counts what it let through. It knows
 * nothing of libp2p, streams or metrics; relay/guard.ts asks it on each HOP
 * request and answers the client.
 *
 * What it decides, in this order:
 *
 * - reservations (RESERVATION_REFUSED): none while draining; at most
 *   `maxReservationsPerPeer` granted to one peer ID within a `reservationTtl`;
 *   then, for a new reservation only (a renewal keeps its slot),
 *   `maxReservations` held in total, `maxReservationsPerIp` and
 *   `maxReservationsPerSubnet` held by peers from one IP / subnet. Requests
 *   being answered count as held, so that concurrent ones cannot all pass.
 * - circuits (RESOURCE_LIMIT_EXCEEDED): none while draining; at most
 *   `maxCircuits` open, `maxCircuitsPerPeer` per peer on either side,
 *   `maxCircuitsPerIp` and `maxCircuitsPerSubnet` per address of the dialling
 *   side (the dialled side only ever holds a reservation, bounded per peer).
 *
 * When js-libp2p's relay server enforces these itself, this file goes: see
 * the note at the top of relay/guard.ts.
 */
import { systemClock } from '../common/clock.js'
import type { RelayLimits } from './config.js'
import type { RefusalReason } from './metrics.js'
import type { AddressGroups } from '../common/address-groups.js'
import type { Clock } from '../common/clock.js'

export type PolicyLimits = Pick<Required<RelayLimits>,
  'maxReservations' | 'maxReservationsPerPeer' | 'maxReservationsPerIp' | 'maxReservationsPerSubnet' | 'reservationTtl' |
  'maxCircuits' | 'maxCircuitsPerPeer' | 'maxCircuitsPerIp' | 'maxCircuitsPerSubnet'>

/** The reservations the relay server holds now: it keeps them, and ends them when they expire. */
export interface HeldReservations {
  count(): number
  /** The address groups each holder reserved from (undefined where that was not an IP address). */
  groups(): Iterable<AddressGroups | undefined>
}

export interface RelayLimitPolicyInit {
  limits: PolicyLimits
  reservations: HeldReservations
  clock?: Clock
}

export interface ReservationRequest {
  /** The asking peer's ID. */
  peer: string
  /** Where it asks from; undefined when that is not an IP address (not limited by address then). */
  groups?: AddressGroups
  /** It holds a reservation already, and this renews it. */
  renewal: boolean
}

export interface CircuitRequest {
  /** The dialling peer's ID. */
  source: string
  /** The dialled peer's ID; undefined when the request does not name one. */
  destination?: string
  /** Where the dialling peer connects from; undefined when that is not an IP address. */
  groups?: AddressGroups
}

export interface Refused {
  refusal: RefusalReason
}

/** A reservation request let through: it holds its slot until the server has answered. */
export interface ReservationSlot {
  refusal?: undefined
  /** Frees the slot held while the server answered; a granted reservation counts toward the per-peer limit. */
  settle(granted: boolean): void
}

/** A circuit let through: it counts toward every circuit limit until released. */
export interface CircuitSlot {
  refusal?: undefined
  /** The circuit ended (or was never set up); calling it again does nothing. */
  release(): void
}

/** How often, at most, the grant times of peers that stopped asking are forgotten. */
const SWEEP_INTERVAL = 60_000

export class RelayLimitPolicy {
  private readonly limits: PolicyLimits
  private readonly reservations: HeldReservations
  private readonly clock: Clock
  private draining = false
  /** Reservation requests being answered for peers that hold none yet: peer → address groups. */
  private readonly pendingReservations = new Map<string, AddressGroups | undefined>()
  /** Times of the reservations granted to each peer within the last TTL. */
  private readonly grants = new Map<string, number[]>()
  private lastSweep: number
  private openCircuits = 0
  /** Open circuits per `peer:<id>` (either side), `ip:<key>` and `subnet:<key>` (the dialling side's address). */
  private readonly circuitsBy = new Map<string, number>()

  constructor (init: RelayLimitPolicyInit) {
    this.limits = init.limits
    this.reservations = init.reservations
    this.clock = init.clock ?? systemClock
    this.lastSweep = this.clock.now()
  }

  /** Circuits open now (and being set up). */
  get circuits (): number {
    return this.openCircuits
  }

  get isDraining (): boolean {
    return this.draining
  }

  /** From now on refuse every reservation and circuit: the relay is stopping. */
  drain (): void {
    this.draining = true
  }

  /** Refuses the request, or lets it through and holds a slot for it while the server answers. */
  reserve (request: ReservationRequest): ReservationSlot | Refused {
    const now = this.clock.now()
    if (now - this.lastSweep >= Math.min(SWEEP_INTERVAL, this.limits.reservationTtl)) this.sweep(now)
    const refusal = this.reservationRefusal(request, now)
    if (refusal != null) return { refusal }

    const { peer, groups, renewal } = request
    if (!renewal) this.pendingReservations.set(peer, groups)
    let settled = false
    return {
      settle: (granted) => {
        if (settled) return
        settled = true
        if (!renewal) this.pendingReservations.delete(peer)
        if (granted) this.grants.set(peer, [...this.grantsOf(peer, now), now])
      }
    }
  }

  /** Refuses the circuit, or counts it from now on (while the server sets it up) until released. */
  openCircuit (request: CircuitRequest): CircuitSlot | Refused {
    const refusal = this.circuitRefusal(request)
    if (refusal != null) return { refusal }

    const { source, destination, groups } = request
    const keys = destination == null || destination === source ? [`peer:${source}`] : [`peer:${source}`, `peer:${destination}`]
    if (groups != null) keys.push(`ip:${groups.ip}`, `subnet:${groups.subnet}`)
    this.countCircuit(keys, 1)
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        this.countCircuit(keys, -1)
      }
    }
  }

  private reservationRefusal ({ peer, groups, renewal }: ReservationRequest, now: number): RefusalReason | undefined {
    if (this.draining) return 'shutting_down'
    if (this.grantsOf(peer, now).length >= this.limits.maxReservationsPerPeer) return 'max_reservations_per_peer'
    // a renewal keeps the slot it holds; only a new reservation needs a free one
    if (renewal) return undefined
    const held = this.reservations.count() + this.pendingReservations.size
    if (held >= this.limits.maxReservations) return 'max_reservations'
    if (groups == null) return undefined
    const from = this.reservationsFrom(groups)
    if (from.ip >= this.limits.maxReservationsPerIp) return 'max_reservations_per_ip'
    if (from.subnet >= this.limits.maxReservationsPerSubnet) return 'max_reservations_per_subnet'
    return undefined
  }

  private circuitRefusal ({ source, destination, groups }: CircuitRequest): RefusalReason | undefined {
    if (this.draining) return 'shutting_down'
    if (this.openCircuits >= this.limits.maxCircuits) return 'max_circuits'
    if (this.circuitsOf(`peer:${source}`) >= this.limits.maxCircuitsPerPeer ||
      (destination != null && this.circuitsOf(`peer:${destination}`) >= this.limits.maxCircuitsPerPeer)) return 'max_circuits_per_peer'
    if (groups != null && this.circuitsOf(`ip:${groups.ip}`) >= this.limits.maxCircuitsPerIp) return 'max_circuits_per_ip'
    if (groups != null && this.circuitsOf(`subnet:${groups.subnet}`) >= this.limits.maxCircuitsPerSubnet) return 'max_circuits_per_subnet'
    return undefined
  }

  /** Reservations held and being granted from the same IP and the same subnet as `groups`. */
  private reservationsFrom (groups: AddressGroups): { ip: number, subnet: number } {
    const count = { ip: 0, subnet: 0 }
    const add = (other: AddressGroups | undefined): void => {
      if (other?.subnet !== groups.subnet) return
      count.subnet++
      if (other.ip === groups.ip) count.ip++
    }
    for (const held of this.reservations.groups()) add(held)
    for (const pending of this.pendingReservations.values()) add(pending)
    return count
  }

  /** The peer's grant times within the last TTL (and forgets the older ones). */
  private grantsOf (peer: string, now: number): number[] {
    const times = (this.grants.get(peer) ?? []).filter(t => now - t < this.limits.reservationTtl)
    if (times.length > 0) this.grants.set(peer, times)
    else this.grants.delete(peer)
    return times
  }

  private sweep (now: number): void {
    this.lastSweep = now
    for (const peer of [...this.grants.keys()]) this.grantsOf(peer, now)
  }

  private circuitsOf (key: string): number {
    return this.circuitsBy.get(key) ?? 0
  }

  private countCircuit (keys: string[], delta: 1 | -1): void {
    this.openCircuits += delta
    for (const key of keys) {
      const n = this.circuitsOf(key) + delta
      if (n > 0) this.circuitsBy.set(key, n)
      else this.circuitsBy.delete(key)
    }
  }
}
