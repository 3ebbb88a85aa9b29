import { KEEP_ALIVE } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { CODE_P2P, CODE_P2P_CIRCUIT } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { relayPeerOf } from '../../common/relay-link.js'
import { backoff } from '../../common/backoff.js'
import { systemClock } from '../../common/clock.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, PeerStore, Startable, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager, TransportManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * The most relays a node reserves on. Each holds a connection and a slot on
 * the relay, and each is tried again and again while it is down: a handful is
 * plenty, and a local API client cannot make the node dial without end.
 */
export const MAX_RELAYS = 16

/** The tag circuit-relay-v2 keeps a relay's connection (and its redial at the next start) with. */
const RELAY_KEEP_ALIVE_TAG = `${KEEP_ALIVE}-circuit-relay`

/** How long `removeRelay` waits for the relay's circuit address to leave the node's addresses, in ms. */
const REMOVE_TIMEOUT = 5_000

/** The libp2p events after which the reservations held may read differently. */
const CHECK_EVENTS = ['transport:listening', 'transport:close', 'self:peer:update', 'connection:close'] as const

/** A relay address that cannot be used: it must end in the relay's own /p2p/<peer ID> and not go through another relay. */
export class InvalidRelayAddressError extends Error {
  static override name = 'InvalidRelayAddressError'
  override name = 'InvalidRelayAddressError'
}

/** Adding this relay would take the node past MAX_RELAYS. */
export class TooManyRelaysError extends Error {
  static override name = 'TooManyRelaysError'
  override name = 'TooManyRelaysError'
}

export interface ReservationKeeperInit {
  /** The configured relays, each ending in /p2p/<relay id>; at most MAX_RELAYS. */
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
  connectionManager?: Pick<ConnectionManager, 'openConnection'> & Partial<Pick<ConnectionManager, 'closeConnections'>>
  /** Where a removed relay's keep-alive tag is dropped, so that libp2p neither redials it nor reserves on it at the next start. */
  peerStore?: Pick<PeerStore, 'merge'>
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
  /** The relays it keeps a reservation on now, in the order they were configured or added. */
  relays(): Multiaddr[]
  /** Whether `peer` is one of those relays (the heartbeat asks for each connection at each look: cheap, at most MAX_RELAYS compared). */
  keeps(peer: PeerId): boolean
  /**
   * Reserves on one more relay at once (dial, then listen on its circuit
   * address), and keeps the reservation from then on. A relay already kept
   * under another address takes the new one; the same address again changes
   * nothing, but for trying at once one waiting out a back-off. Resolves once
   * the first attempt settled, with the relay's status.
   *
   * @throws InvalidRelayAddressError when the address does not end in /p2p/<relay id>
   * @throws TooManyRelaysError when MAX_RELAYS are kept already
   */
  addRelay(addr: Multiaddr): Promise<RelayReservationStatus & { lastError?: string }>
  /**
   * Stops using a relay (its peer ID, or its address as `status` gives it):
   * no more attempts, its keep-alive tag dropped and its connections closed,
   * which ends the reservation and takes its circuit address out of the
   * node's addresses. False when it was not kept.
   */
  removeRelay(relay: string | PeerId): Promise<boolean>
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
  /** The attempt under way, if any. */
  attempt?: Promise<void>
}

/** The relay's peer ID in a relay address, checked. */
function relayIdOf (addr: Multiaddr): string {
  const id = relayPeerOf(addr)
  if (id == null) throw new InvalidRelayAddressError(`the relay address ${addr.toString().slice(0, 300)} must end in the relay's /p2p/<peer id>, and not go through another relay`)
  try {
    return peerIdFromString(id).toString()
  } catch {
    throw new InvalidRelayAddressError(`the relay address ${addr.toString().slice(0, 300)} ends in ${id.slice(0, 100)}, which is not a peer ID`)
  }
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
  private readonly kept: RelayState[]
  private readonly checkInterval: number
  private readonly initialDelay: number
  private readonly maxDelay: number
  private readonly clock: Clock
  private readonly random: () => number
  private timer?: ClockTimer
  private started = false
  /** The status last announced by a `change` event. */
  private announced = ''
  /** `removeRelay` calls waiting for a circuit address to go: `stop` ends their wait. */
  private readonly removing = new Set<() => void>()

  constructor (private readonly components: ReservationKeeperComponents, init: ReservationKeeperInit) {
    super()
    this.log = components.logger.forComponent('parley:reservations')
    this.checkInterval = init.checkInterval ?? 5_000
    this.initialDelay = init.initialDelay ?? 1_000
    this.maxDelay = init.maxDelay ?? 10_000
    this.clock = init.clock ?? systemClock
    this.random = init.random ?? Math.random
    if (init.relays.length > MAX_RELAYS) throw new TooManyRelaysError(`${init.relays.length} relays are configured, over the limit of ${MAX_RELAYS}`)
    this.kept = init.relays.map(addr => ({
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
    // relays may be added later (addRelay): the events are watched even without one;
    // a reservation shows as the circuit listener's address, which changes with
    // transport:listening / transport:close (self:peer:update follows, debounced,
    // and only when the peer record's addresses changed)
    for (const name of CHECK_EVENTS) this.components.events.addEventListener(name, this.check)
    this.components.events.addEventListener('connection:open', this.onConnectionOpen)
    this.schedulePeriodicCheck()
  }

  /** The periodic check, while there is a relay to check. */
  private schedulePeriodicCheck (): void {
    if (!this.started || this.timer != null || this.kept.length === 0) return
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      this.schedulePeriodicCheck()
      this.check()
    }, this.checkInterval)
  }

  stop (): void {
    this.started = false
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
    for (const relay of this.kept) {
      this.clock.clearTimeout(relay.retry)
      relay.retry = undefined
    }
    for (const name of CHECK_EVENTS) this.components.events.removeEventListener(name, this.check)
    this.components.events.removeEventListener('connection:open', this.onConnectionOpen)
    for (const done of this.removing) done()
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
    const relay = this.kept.find(r => r.id === remotePeer?.toString())
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
    return this.kept.map(r => ({ relay: r.addr.toString(), reserved: reserved.has(r.id), failures: r.failures }))
  }

  lastError (relay: string): string | undefined {
    const state = this.kept.find(r => r.addr.toString() === relay)
    return state == null || this.reservedRelays().has(state.id) ? undefined : state.lastError
  }

  relays (): Multiaddr[] {
    return this.kept.map(r => r.addr)
  }

  keeps (peer: PeerId): boolean {
    const id = peer.toString()
    return this.kept.some(r => r.id === id)
  }

  async addRelay (addr: Multiaddr): Promise<RelayReservationStatus & { lastError?: string }> {
    const id = relayIdOf(addr)
    let relay = this.kept.find(r => r.id === id)
    if (relay == null) {
      if (this.kept.length >= MAX_RELAYS) throw new TooManyRelaysError(`this node keeps ${this.kept.length} relays already, the most it uses; remove one first`)
      relay = { addr, id, failures: 0, nextAttempt: 0, reserving: false }
      this.kept.push(relay)
      this.log('relay %s added', id)
    } else if (!relay.addr.equals(addr)) {
      // the relay moved: try its new address now, not at the end of a back-off the old one earned
      this.log('relay %s now at %a', id, addr)
      relay.addr = addr
      relay.failures = 0
      relay.nextAttempt = 0
      relay.lastError = undefined
      this.clock.clearTimeout(relay.retry)
      relay.retry = undefined
    } else if (!relay.reserving && relay.nextAttempt !== 0) {
      // added again while in its back-off: the user asks for it now (one attempt at a time still)
      relay.nextAttempt = 0
      this.clock.clearTimeout(relay.retry)
      relay.retry = undefined
    }
    this.schedulePeriodicCheck()
    this.check()
    await relay.attempt
    return { ...this.statusOf(relay), lastError: this.lastError(relay.addr.toString()) }
  }

  async removeRelay (relay: string | PeerId): Promise<boolean> {
    const key = relay.toString()
    const index = this.kept.findIndex(r => r.id === key || r.addr.toString() === key)
    if (index < 0) return false
    const [state] = this.kept.splice(index, 1)
    this.clock.clearTimeout(state.retry)
    state.retry = undefined
    if (this.kept.length === 0) {
      this.clock.clearTimeout(this.timer)
      this.timer = undefined
    }
    this.log('relay %s removed', state.id)
    // an attempt under way would make a reservation after the hang-up: let it end first
    await state.attempt
    const peer = peerIdFromString(state.id)
    // untagged before the hang-up: libp2p redials a disconnected peer that still has a keep-alive tag
    await this.components.peerStore?.merge(peer, { tags: { [RELAY_KEEP_ALIVE_TAG]: undefined } })
      .catch(err => { this.log.error('could not untag relay %s - %e', state.id, err) })
    // the relay transport ends a reservation, and drops its circuit address, when its connection closes
    await this.components.connectionManager?.closeConnections?.(peer)
      .catch(err => { this.log.error('could not close the connections to relay %s - %e', state.id, err) })
    await this.circuitGone(state.id)
    this.announce()
    return true
  }

  /** Resolves once no listener advertises a circuit through this relay any more (or after REMOVE_TIMEOUT). */
  private async circuitGone (id: string): Promise<void> {
    if (!this.reservedRelays().has(id)) return
    const { promise, resolve } = Promise.withResolvers<void>()
    this.removing.add(resolve)
    const onChange = (): void => { if (!this.reservedRelays().has(id)) resolve() }
    for (const name of CHECK_EVENTS) this.components.events.addEventListener(name, onChange)
    const timer = this.clock.setTimeout(() => {
      this.log.error('the circuit address through removed relay %s is still listed after %d ms', id, REMOVE_TIMEOUT)
      resolve()
    }, REMOVE_TIMEOUT)
    try {
      await promise
    } finally {
      this.removing.delete(resolve)
      this.clock.clearTimeout(timer)
      for (const name of CHECK_EVENTS) this.components.events.removeEventListener(name, onChange)
    }
  }

  private statusOf (relay: RelayState): RelayReservationStatus {
    return { relay: relay.addr.toString(), reserved: this.reservedRelays().has(relay.id), failures: relay.failures }
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
    for (const relay of this.kept) {
      if (reserved.has(relay.id)) {
        relay.failures = 0
        relay.nextAttempt = 0
        relay.lastError = undefined
        continue
      }
      if (relay.reserving || now < relay.nextAttempt) continue
      relay.reserving = true
      relay.attempt = this.reserve(relay).finally(() => {
        relay.reserving = false
        relay.attempt = undefined
      })
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
    // removed while this attempt ran: nothing more to try
    if (!this.kept.includes(relay)) return
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
