/**
 * Notices dead direct connections sooner than an unacknowledged message does.
 *
 * A laptop that moves to another network keeps its direct connections open:
 * their sockets are bound to an address it no longer has, and nothing tells
 * either end. Without this service a message written on one waits for the /im
 * ack timeout (10 s) before it goes again another way, and so does every
 * message the peer writes back on its own dead end of the connection.
 *
 * Two signals make the node test its direct connections:
 * - this machine's routable addresses changed (polled from the interfaces,
 *   every `pollInterval`): every direct connection is tested;
 * - a peer opened a relayed connection while a direct one to it is open (what
 *   a moved peer does to reach us again): that peer's direct connections older
 *   than `minAge` are tested.
 * A test is a ping on that very connection (common/heartbeat.ts: its muxer's,
 * or the ping protocol); one that gets no answer
 * within `probeTimeout` is aborted, so the messages on it fail at once and go
 * again over whatever path remains (the relay), and the router dials anew.
 *
 * Bounds: at most one test per connection in flight (a peer opening 100,000
 * connections tests its older ones once each, while in flight); the
 * interfaces are read once per `pollInterval`; relayed (limited) connections
 * are never tested here (the heartbeat does, common/heartbeat.ts).
 */
import { networkInterfaces } from 'node:os'
import { isLinkLocalIp } from '@libp2p/utils'
import { pingConnection, probeOnce } from '../../common/heartbeat.js'
import { CODE_P2P_CIRCUIT, CODE_WEBRTC } from '@multiformats/multiaddr'
import { systemClock } from '../../common/clock.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, Startable, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { NetworkInterfaceInfo } from 'node:os'

export interface StalePathsInit {
  /** How often this machine's addresses are read. @default 1000 */
  pollInterval?: number
  /** How long a tested connection has to answer a ping before it is aborted. @default 3000 */
  probeTimeout?: number
  /** How old a direct connection must be for a peer's new relayed connection to make it tested. @default 2000 */
  minAge?: number
  clock?: Clock
  /** This machine's interfaces (os.networkInterfaces); injected by tests. */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>
  /** Tests one connection: resolves if it answered; injected by tests. */
  probe?: (connection: Connection, signal: AbortSignal) => Promise<void>
}

export interface StalePathsComponents {
  connectionManager: Pick<ConnectionManager, 'getConnections'>
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface StalePaths {
  /** Connections aborted so far because they did not answer a test. */
  readonly aborted: number
}

/**
 * A connection that does not go through a relay: one whose socket a move can
 * leave dead. A WebRTC connection's address names the relay it was signalled
 * over (`…/p2p-circuit/webrtc/…`), but its data goes straight to the peer.
 */
export function isDirect (connection: Connection): boolean {
  if (connection.limits != null) return false
  const codes = connection.remoteAddr.getComponents().map(c => c.code)
  return codes.includes(CODE_WEBRTC) || !codes.includes(CODE_P2P_CIRCUIT)
}

/** This machine's routable addresses (neither loopback nor link-local), sorted, as one string. */
export function addressFingerprint (interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string {
  return Object.values(interfaces).flatMap(addrs => addrs ?? [])
    .filter(a => !a.internal && !isLinkLocalIp(a.address.replace(/%.*$/, '')))
    .map(a => a.address)
    .sort()
    .join(' ')
}

class DefaultStalePaths implements Startable, StalePaths {
  readonly [Symbol.toStringTag] = 'parley/stale-paths'
  aborted = 0
  private readonly log: Logger
  private readonly pollInterval: number
  private readonly probeTimeout: number
  private readonly minAge: number
  private readonly clock: Clock
  private readonly interfaces: () => NodeJS.Dict<NetworkInterfaceInfo[]>
  private readonly probe: (connection: Connection, signal: AbortSignal) => Promise<void>
  private readonly testing = new Set<string>()
  private fingerprint = ''
  private timer?: ClockTimer
  private started = false

  constructor (private readonly components: StalePathsComponents, init: StalePathsInit = {}) {
    this.log = components.logger.forComponent('parley:stale-paths')
    this.pollInterval = init.pollInterval ?? 1_000
    this.probeTimeout = init.probeTimeout ?? 3_000
    this.minAge = init.minAge ?? 2_000
    this.clock = init.clock ?? systemClock
    this.interfaces = init.interfaces ?? networkInterfaces
    this.probe = init.probe ?? pingConnection
    this.onConnectionOpen = this.onConnectionOpen.bind(this)
  }

  start (): void {
    this.started = true
    this.fingerprint = addressFingerprint(this.interfaces())
    this.components.events.addEventListener('connection:open', this.onConnectionOpen)
    this.schedulePoll()
  }

  stop (): void {
    this.started = false
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
    this.components.events.removeEventListener('connection:open', this.onConnectionOpen)
  }

  private schedulePoll (): void {
    if (!this.started) return
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      this.poll()
      this.schedulePoll()
    }, this.pollInterval)
  }

  private poll (): void {
    let now: string
    try {
      now = addressFingerprint(this.interfaces())
    } catch (err) {
      this.log.error('could not read the network interfaces - %e', err)
      return
    }
    if (now === this.fingerprint) return
    this.log('this machine\'s addresses changed (%s -> %s): testing every direct connection', this.fingerprint, now)
    this.fingerprint = now
    for (const connection of this.components.connectionManager.getConnections()) this.test(connection)
  }

  private onConnectionOpen (evt: CustomEvent<Connection>): void {
    const fresh = evt.detail
    // a peer coming back over a relay while a direct connection is open hints that the
    // direct one is dead at its end; a new direct connection (a WebRTC upgrade, a LAN
    // dial) hints nothing, and testing on every one would ping through connection storms
    if (isDirect(fresh)) return
    for (const connection of this.components.connectionManager.getConnections(fresh.remotePeer)) {
      // a direct connection younger than that is still settling (a WebRTC connection is
      // signalled over a relayed one, which may be reported open after it), not stale
      if (connection.id !== fresh.id && fresh.timeline.open - connection.timeline.open >= this.minAge) this.test(connection)
    }
  }

  private test (connection: Connection): void {
    if (!this.started || connection.status !== 'open' || !isDirect(connection)) return
    probeOnce(connection, {
      inFlight: this.testing,
      probe: this.probe,
      clock: this.clock,
      timeout: this.probeTimeout,
      running: () => this.started,
      onDead: (err) => {
        this.log('direct connection %s to %p did not answer within %d ms, aborting it - %e', connection.id, connection.remotePeer, this.probeTimeout, err)
        this.aborted++
      }
    })
  }
}

export function stalePaths (init: StalePathsInit = {}): (components: StalePathsComponents) => StalePaths {
  return (components) => new DefaultStalePaths(components, init)
}
