import { CODE_P2P, CODE_P2P_CIRCUIT } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { backoff } from '../../common/backoff.js'
import { systemClock } from '../../common/clock.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, Startable, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager, TransportManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface ReservationKeeperInit {
  /** The configured relays, each ending in /p2p/<relay id>. */
  relays: Multiaddr[]

  /**
   * How often reservations are checked even without an event, in ms.
   *
   * @default 5000
   */
  checkInterval?: number

  /**
   * First delay before re-reserving on a relay after a failed attempt, in ms; doubles up to `maxDelay`.
   *
   * @default 1000
   */
  initialDelay?: number

  /**
   * The longest wait between attempts while a relay stays unreachable, in ms.
   * It bounds how long a relay that came back goes unused when nothing else
   * (libp2p's reconnect queue gives up after about 30 s) connects to it first;
   * an attempt on a relay that is down costs one refused TCP connection.
   *
   * @default 10000
   */
  maxDelay?: number

  /** @default systemClock */
  clock?: Clock

  /**
   * Where the back-off's jitter comes from, in [0, 1).
   *
   * @default Math.random
   */
  random?: () => number
}

export interface ReservationKeeperComponents {
  /** Its listening addresses show which relays hold a reservation; listening on a circuit address makes one. */
  transportManager: Pick<TransportManager, 'getAddrs' | 'listen'>
  /**
   * Dials the relay before a reservation is asked for: libp2p keeps every
   * circuit listener it creates, even one whose relay could not be reached,
   * so a relay that stays down would otherwise leave one more behind at each
   * attempt. Without it, the keeper listens straight away.
   */
  connectionManager?: Pick<ConnectionManager, 'openConnection'>
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface RelayReservationStatus {
  relay: string
  reserved: boolean
  /** Attempts since the reservation was last held. */
  failures: number
}

export interface ReservationKeeperEvents {
  /** A relay's reservation was made or lost, or an attempt failed in a new way. */
  change: CustomEvent<RelayReservationStatus[]>
}

export interface ReservationKeeper extends TypedEventTarget<ReservationKeeperEvents> {
  /** Each configured relay and whether this node holds a reservation on it now. */
  status(): RelayReservationStatus[]
  /** Why the last attempt on this relay (its address as `status` gives it) got no reservation; none once it holds one. */
  lastError(relay: string): string | undefined
}

interface RelayState {
  addr: Multiaddr
  id: string
  failures: number
  nextAttempt: number
  reserving: boolean
  lastError?: string
  /** The check due when the back-off is over. */
  retry?: ClockTimer
}

/**
 * Keeps a reservation on every configured relay. js-libp2p makes a configured
 * relay's reservation once and drops it when the relay connection goes (relay
 * restart, network loss) without making it again (js-libp2p #3601, #2676).
 * This service notices a missing reservation (address change, closed relay
 * connection, or a periodic check) and listens on the relay's circuit address
 * again, with back-off, which makes the transport reserve anew; a direct
 * connection to the relay cuts the back-off short.
 */
class DefaultReservationKeeper extends TypedEventEmitter<ReservationKeeperEvents> implements Startable, ReservationKeeper {
  readonly [Symbol.toStringTag] = 'parley/reservation-keeper'
  private readonly log: Logger
  private readonly relays: RelayState[]
  private readonly checkInterval: number
  private readonly initialDelay: number
  private readonly maxDelay: number
  private readonly clock: Clock
  private readonly random: () => number
  private timer?: ClockTimer
  private started = false
  /** The status last announced by a `change` event. */
  private announced = ''

  constructor (private readonly components: ReservationKeeperComponents, init: ReservationKeeperInit) {
    super()
    this.log = components.logger.forComponent('parley:reservations')
    this.checkInterval = init.checkInterval ?? 5_000
    this.initialDelay = init.initialDelay ?? 1_000
    this.maxDelay = init.maxDelay ?? 10_000
    this.clock = init.clock ?? systemClock
    this.random = init.random ?? Math.random
    this.relays = init.relays.map(addr => ({
      addr,
      id: addr.getComponents().findLast(c => c.code === CODE_P2P)?.value ?? '',
      failures: 0,
      nextAttempt: 0,
      reserving: false
    }))
    this.check = this.check.bind(this)
    this.onConnectionOpen = this.onConnectionOpen.bind(this)
  }

  start (): void {
    this.started = true
  }

  afterStart (): void {
    if (this.relays.length === 0) return
    this.components.events.addEventListener('self:peer:update', this.check)
    this.components.events.addEventListener('connection:close', this.check)
    this.components.events.addEventListener('connection:open', this.onConnectionOpen)
    this.schedulePeriodicCheck()
  }

  private schedulePeriodicCheck (): void {
    this.timer = this.clock.setTimeout(() => {
      this.schedulePeriodicCheck()
      this.check()
    }, this.checkInterval)
  }

  stop (): void {
    this.started = false
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
    for (const relay of this.relays) {
      this.clock.clearTimeout(relay.retry)
      relay.retry = undefined
    }
    this.components.events.removeEventListener('self:peer:update', this.check)
    this.components.events.removeEventListener('connection:close', this.check)
    this.components.events.removeEventListener('connection:open', this.onConnectionOpen)
  }

  /**
   * A direct connection to a relay we hold no reservation on means the relay
   * is reachable again (libp2p's reconnect queue dials a restarted relay, or
   * it dials us): reserve now rather than at the end of a back-off that grew
   * while it was down, which by then can be up to `maxDelay`.
   */
  private onConnectionOpen (evt: CustomEvent<Connection>): void {
    const { remotePeer, remoteAddr } = evt.detail
    const relayed = remoteAddr?.getComponents().some(c => c.code === CODE_P2P_CIRCUIT) ?? true
    const relay = this.relays.find(r => r.id === remotePeer?.toString())
    if (relay != null && !relayed && !relay.reserving && relay.nextAttempt !== 0) {
      this.log('connected to %s during its back-off, reserving now', relay.id)
      relay.nextAttempt = 0
      this.clock.clearTimeout(relay.retry)
      relay.retry = undefined
    }
    this.check()
  }

  /** Relay ids this node advertises a circuit address through. */
  private reservedRelays (): Set<string> {
    const reserved = new Set<string>()
    // listener addresses, not announced ones: with `announce` set those hide the circuits
    for (const addr of this.components.transportManager.getAddrs()) {
      const components = addr.getComponents()
      const circuit = components.findIndex(c => c.code === CODE_P2P_CIRCUIT)
      if (circuit > 0 && components[circuit - 1].code === CODE_P2P && components[circuit - 1].value != null) {
        reserved.add(components[circuit - 1].value as string)
      }
    }
    return reserved
  }

  status (): RelayReservationStatus[] {
    const reserved = this.reservedRelays()
    return this.relays.map(r => ({ relay: r.addr.toString(), reserved: reserved.has(r.id), failures: r.failures }))
  }

  lastError (relay: string): string | undefined {
    const state = this.relays.find(r => r.addr.toString() === relay)
    return state == null || this.reservedRelays().has(state.id) ? undefined : state.lastError
  }

  /** Emits `change` when a reservation came or went or the reason for a missing one changed (not at each attempt). */
  private announce (): void {
    const status = this.status()
    const key = JSON.stringify(status.map(({ failures, ...rest }) => ({ ...rest, failed: failures > 0, lastError: this.lastError(rest.relay) })))
    if (key === this.announced) return
    this.announced = key
    this.safeDispatchEvent('change', { detail: status })
  }

  private check (): void {
    if (!this.started) return
    const reserved = this.reservedRelays()
    const now = this.clock.now()
    for (const relay of this.relays) {
      if (reserved.has(relay.id)) {
        relay.failures = 0
        relay.nextAttempt = 0
        relay.lastError = undefined
        continue
      }
      if (relay.reserving || now < relay.nextAttempt) continue
      relay.reserving = true
      this.reserve(relay).finally(() => { relay.reserving = false })
    }
    this.announce()
  }

  private async reserve (relay: RelayState): Promise<void> {
    this.log('no reservation on %s, reserving again (attempt %d)', relay.id, relay.failures + 1)
    try {
      // a relay that cannot be reached gets no listener (see `connectionManager`), and its own error
      await this.components.connectionManager?.openConnection(relay.addr)
      // NO_FATAL fault tolerance: listen resolves even when the relay is still down
      await this.components.transportManager.listen([relay.addr.encapsulate('/p2p-circuit')])
      // the transport does not say why: the dial failed or the relay refused
      relay.lastError = 'the relay could not be reached or refused a reservation'
    } catch (err: any) {
      this.log('reserving on %s failed - %e', relay.id, err)
      relay.lastError = String(err?.message ?? err)
    }
    if (this.reservedRelays().has(relay.id)) {
      this.log('reservation on %s restored', relay.id)
      relay.failures = 0
      relay.nextAttempt = 0
      relay.lastError = undefined
      this.announce()
      return
    }
    relay.failures++
    this.announce()
    const delay = backoff(relay.failures, { first: this.initialDelay, max: this.maxDelay, jitter: 'equal' }, this.random)
    relay.nextAttempt = this.clock.now() + delay
    if (!this.started) return
    // try again when the back-off is over, not at the next event or periodic check
    this.clock.clearTimeout(relay.retry)
    relay.retry = this.clock.setTimeout(() => {
      relay.retry = undefined
      this.check()
    }, delay)
  }
}

export function reservationKeeper (init: ReservationKeeperInit): (components: ReservationKeeperComponents) => ReservationKeeper {
  return (components) => new DefaultReservationKeeper(components, init)
}
