/**
 * parley's limits on inbound connections, per source: open connections per IP
 * and per subnet, and new connections per IP per second (IPv6 by /64, as the
 * reservation limits count it; see ./addresses.ts).
 *
 * They are enforced through the connection gater's `denyInboundConnection`,
 * which js-libp2p's upgrader calls for every inbound connection right after
 * its connection manager accepted it (under `maxConnections` and
 * `maxPendingConnections`) and before any handshake: a refused connection is
 * closed at once and costs no cryptography. js-libp2p's own per-host rate
 * limiter counts full addresses, so the relay turns it off and counts here.
 *
 * A connection counts from that moment until its socket closes, handshake
 * included: an attacker cannot hold more sockets by never finishing one.
 */
import { addressGroups } from '../common/address-groups.js'
import type { RelayLimits } from './config.js'
import type { ConnectionRefusal, RelayMetrics } from './metrics.js'
import type { ConnectionGater, MultiaddrConnection } from '@libp2p/interface'

/** The window `inboundConnectionsPerSecond` counts over. */
const RATE_WINDOW = 1_000
/** How often, at most, forgotten sources and closed connections are swept out. */
const SWEEP_INTERVAL = 10_000

type Limits = Pick<Required<RelayLimits>, 'maxConnectionsPerIp' | 'maxConnectionsPerSubnet' | 'inboundConnectionsPerSecond' | 'maxConnections'>

export interface ConnectionGateInit {
  limits: Limits
  metrics: RelayMetrics
  /** The clock, for tests. */
  now?: () => number
}

/** The part of js-libp2p's connection manager the gate counts refusals of. */
interface AcceptingConnectionManager {
  acceptIncomingConnection(maConn: MultiaddrConnection): boolean
  getConnections(): unknown[]
}

function increment (map: Map<string, number>, key: string, delta: 1 | -1): void {
  const n = (map.get(key) ?? 0) + delta
  if (n > 0) map.set(key, n)
  else map.delete(key)
}

export class ConnectionGate {
  private readonly limits: Limits
  private readonly metrics: RelayMetrics
  private readonly now: () => number
  /** Open inbound connections per IP key and per subnet key. */
  private readonly byIp = new Map<string, number>()
  private readonly bySubnet = new Map<string, number>()
  /** Times of the connections each IP key opened within the last RATE_WINDOW (at most the limit of them). */
  private readonly recent = new Map<string, number[]>()
  /** Every connection counted, with its keys, so that one whose close was never seen is still let go. */
  private readonly tracked = new Map<MultiaddrConnection, { ip: string, subnet: string }>()
  private lastSweep: number

  constructor (init: ConnectionGateInit) {
    this.limits = init.limits
    this.metrics = init.metrics
    this.now = init.now ?? Date.now
    this.lastSweep = this.now()
  }

  /** Inbound connections open now from the IP (or IPv6 /64) key given. */
  openFromIp (ip: string): number {
    return this.byIp.get(ip) ?? 0
  }

  /** Inbound connections open now from the subnet key given. */
  openFromSubnet (subnet: string): number {
    return this.bySubnet.get(subnet) ?? 0
  }

  /** The gater to give libp2p (`connectionGater`). */
  gater (): ConnectionGater {
    return {
      denyInboundConnection: (maConn) => this.denyInboundConnection(maConn)
    }
  }

  /** True (deny) if `maConn` is over a per-source limit; otherwise counts it until it closes. */
  denyInboundConnection (maConn: MultiaddrConnection): boolean {
    const groups = addressGroups(maConn.remoteAddr)
    // not an IP connection: nothing to count it under
    if (groups == null) return false
    const now = this.now()
    if (now - this.lastSweep >= SWEEP_INTERVAL) this.sweep(now)

    const times = this.recentOf(groups.ip, now)
    let refusal: ConnectionRefusal | undefined
    if (this.openFromIp(groups.ip) >= this.limits.maxConnectionsPerIp) refusal = 'max_connections_per_ip'
    else if (this.openFromSubnet(groups.subnet) >= this.limits.maxConnectionsPerSubnet) refusal = 'max_connections_per_subnet'
    else if (times.length >= this.limits.inboundConnectionsPerSecond) refusal = 'connection_rate'
    if (refusal != null) {
      this.metrics.connectionRefused(refusal)
      return true
    }

    times.push(now)
    this.recent.set(groups.ip, times)
    this.track(maConn, groups)
    return false
  }

  /**
   * Counts the refusals js-libp2p's connection manager makes itself, over
   * `maxConnections` and `maxPendingConnections`, before the gater is asked.
   * Without the (internal) hook it only goes uncounted.
   */
  watch (connectionManager: unknown): void {
    const manager = connectionManager as Partial<AcceptingConnectionManager> | undefined
    if (typeof manager?.acceptIncomingConnection !== 'function' || typeof manager.getConnections !== 'function') return
    const accept = manager.acceptIncomingConnection.bind(manager)
    const connections = manager.getConnections.bind(manager)
    manager.acceptIncomingConnection = (maConn) => {
      const accepted = accept(maConn)
      if (!accepted) {
        // its deny list is empty and its rate limiter off: the total or the pending cap
        this.metrics.connectionRefused(connections().length >= this.limits.maxConnections ? 'max_connections' : 'max_pending_connections')
      }
      return accepted
    }
  }

  private recentOf (ip: string, now: number): number[] {
    const times = (this.recent.get(ip) ?? []).filter(t => now - t < RATE_WINDOW)
    if (times.length === 0) this.recent.delete(ip)
    return times
  }

  private track (maConn: MultiaddrConnection, groups: { ip: string, subnet: string }): void {
    this.tracked.set(maConn, groups)
    increment(this.byIp, groups.ip, 1)
    increment(this.bySubnet, groups.subnet, 1)
    maConn.addEventListener('close', () => { this.release(maConn) }, { once: true })
  }

  private release (maConn: MultiaddrConnection): void {
    const groups = this.tracked.get(maConn)
    if (groups == null) return
    this.tracked.delete(maConn)
    increment(this.byIp, groups.ip, -1)
    increment(this.bySubnet, groups.subnet, -1)
  }

  private sweep (now: number): void {
    this.lastSweep = now
    for (const ip of [...this.recent.keys()]) {
      const times = this.recentOf(ip, now)
      if (times.length > 0) this.recent.set(ip, times)
    }
    for (const maConn of [...this.tracked.keys()]) {
      if (maConn.status !== 'open' && maConn.status !== 'closing') this.release(maConn)
    }
  }
}
