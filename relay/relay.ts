import { basicServices, bootstrapDiscovery, parleyDHT, parleyMuxer } from '../common/libp2p.js'
import { heartbeat, MIN_HEARTBEAT_TIMEOUT } from '../common/heartbeat.js'
import { autoNAT } from '@libp2p/autonat'
import { noise } from '@libp2p/noise'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'
import { openDatastore } from '../common/datastore.js'
import { loadIdentity } from '../common/identity.js'
import { resolveRelayConfig } from './config.js'
import { ConnectionGate } from './connections.js'
import { guardedRelayServer, RelayGuard } from './guard.js'
import { startMetricsEndpoint } from './http.js'
import { RelayMetrics } from './metrics.js'
import { systemClock } from '../common/clock.js'
import { mailboxService } from './mailbox/service.js'
import { MailboxStore } from './mailbox/store.js'
import type { MailboxService } from './mailbox/service.js'
import type { RelayConfig, ResolvedRelayConfig } from './config.js'
import type { Health, MetricsEndpoint } from './http.js'
import type { CircuitRelayService } from '@libp2p/circuit-relay-v2'
import type { Heartbeat } from '../common/heartbeat.js'
import type { Identify } from '@libp2p/identify'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p, Logger, PeerId } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * The relay's heartbeat (config `heartbeatInterval`, 90 s by default): a
 * client connection that received nothing for that long is pinged. A parley
 * client pings its relay connection once it has been silent for 60 s (its
 * `relayHeartbeatInterval`), so the relay, hearing those pings, never pings
 * a live parley client: each client costs it one PING answered a minute, no
 * more (BENCHMARKS.md, "Relay at scale"). A client silent for the interval
 * is one whose host or network went, or one that pings rarely: it is pinged,
 * and dropped if it does not answer. Connections are looked at every third
 * of the interval, and a ping gets a third of it to be answered (a relay
 * under load answers and reads late; 5 s at least), so a silent client's
 * connection and reservation go within 1.5 × the interval (135 s).
 */
function relayHeartbeat (interval: number): ReturnType<typeof heartbeat> {
  const third = Math.round(interval / 3)
  return heartbeat({ interval, checkEvery: third, timeout: Math.max(third, MIN_HEARTBEAT_TIMEOUT) })
}

export interface RelayServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: unknown
  ping: Ping
  autoNAT: unknown
  heartbeat: Heartbeat
  dht: KadDHT
  relay: CircuitRelayService
  /** The mailbox host, unless the config turned it off. */
  mailbox?: MailboxService
}

export type RelayLibp2p = Libp2p<RelayServices>

interface RelayParts {
  libp2p: RelayLibp2p
  config: ResolvedRelayConfig
  guard: RelayGuard
  metrics: RelayMetrics
  closeDatastore(): Promise<void>
}

/**
 * A public parley relay: circuit-relay-v2 server for nodes behind NAT (with
 * parley's limits in front of it), DHT server (so it doubles as a bootstrap
 * node and stores peer records), AutoNAT server, identify and ping.
 */
export class ParleyRelay {
  readonly libp2p: RelayLibp2p
  readonly peerId: PeerId
  readonly config: ResolvedRelayConfig
  /** parley's relay counters, and libp2p's own when the metrics endpoint is on. */
  readonly metrics: RelayMetrics
  private readonly guard: RelayGuard
  private readonly closeDatastore: () => Promise<void>
  private readonly log: Logger
  private readonly started = Date.now()
  private endpoint?: MetricsEndpoint
  private stopping?: Promise<void>

  constructor (parts: RelayParts) {
    this.libp2p = parts.libp2p
    this.peerId = parts.libp2p.peerId
    this.config = parts.config
    this.guard = parts.guard
    this.metrics = parts.metrics
    this.closeDatastore = parts.closeDatastore
    this.log = parts.libp2p.logger.forComponent('parley:relay')
  }

  /** Full addresses (with /p2p/<id>) that nodes put in their `relays` config. */
  get multiaddrs (): Multiaddr[] {
    return this.libp2p.getMultiaddrs()
  }

  /** Peers holding a reservation on this relay now. */
  get reservations (): number {
    return this.libp2p.services.relay.reservations.size
  }

  /** Circuits (relayed connections) open now. */
  get circuits (): number {
    return this.guard.circuits
  }

  /** The mailbox host (/parley/mailbox/1.0.0), unless `mailbox.enabled` is false. */
  get mailbox (): MailboxService | undefined {
    return this.libp2p.services.mailbox
  }

  /** `http://host:port` of `/metrics` and `/healthz`, when the endpoint is on. */
  get metricsUrl (): string | undefined {
    return this.endpoint?.url
  }

  /** What `/healthz` answers. */
  health (): Health {
    const status = this.stopping != null || this.guard.isDraining
      ? 'stopping'
      : this.libp2p.status === 'started' && this.libp2p.getMultiaddrs().length > 0 ? 'ok' : 'starting'
    return {
      ok: status === 'ok',
      status,
      peerId: this.peerId.toString(),
      reservations: this.reservations,
      circuits: this.circuits,
      connections: this.libp2p.getConnections().length,
      uptimeSeconds: Math.round((Date.now() - this.started) / 1000)
    }
  }

  /** @internal starts the metrics endpoint; createRelay calls it. */
  async serveMetrics (): Promise<void> {
    if (this.config.metrics == null) return
    this.endpoint = await startMetricsEndpoint(this.config.metrics, this.metrics.registry, () => this.health())
    this.log('metrics at %s/metrics', this.endpoint.url)
  }

  /**
   * Stops gracefully: refuses new reservations and circuits, closes every
   * connection (so clients see the relay go at once and reserve elsewhere,
   * instead of finding out by timeouts), then stops libp2p. Connections that
   * do not close within `shutdownTimeout` are cut.
   */
  async stop (): Promise<void> {
    this.stopping ??= this.shutdown()
    await this.stopping
  }

  private async shutdown (): Promise<void> {
    this.guard.drain()
    const connections = this.libp2p.getConnections()
    this.log('stopping: closing %d connections, %d reservations', connections.length, this.reservations)
    await Promise.all(connections.map(async connection => {
      try {
        await connection.close({ signal: AbortSignal.timeout(this.config.shutdownTimeout) })
      } catch (err: any) {
        connection.abort(err)
      }
    }))
    try {
      await this.libp2p.stop()
    } finally {
      this.guard.stop()
      await this.endpoint?.close()
      await this.closeDatastore()
    }
    this.log('stopped')
  }
}

export async function createRelay (config: RelayConfig = {}): Promise<ParleyRelay> {
  const resolved = resolveRelayConfig(config)
  const { limits } = resolved
  const metrics = new RelayMetrics(limits)
  const guard = new RelayGuard({ limits, metrics })
  const gate = new ConnectionGate({ limits, metrics })
  const privateKey = await loadIdentity(resolved.dataDir)
  const { datastore, close: closeDatastore } = await openDatastore(resolved.dataDir)
  // the mailboxes: in the data dir beside the datastore (in memory without one)
  let mailboxStore: MailboxStore | undefined
  try {
    mailboxStore = resolved.mailbox.enabled ? await MailboxStore.open({ dataDir: resolved.dataDir, clock: systemClock }) : undefined
  } catch (err) {
    guard.stop()
    await closeDatastore()
    throw err
  }
  const close = async (): Promise<void> => {
    mailboxStore?.close()
    await closeDatastore()
  }
  let libp2p: RelayLibp2p
  try {
    libp2p = await createLibp2p<RelayServices>({
      privateKey,
      datastore,
      addresses: {
        listen: resolved.listen,
        announce: resolved.announce
      },
      transports: [tcp(), webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [parleyMuxer()],
      connectionManager: {
        maxConnections: limits.maxConnections,
        // the gate counts the rate per IPv4 address / IPv6 /64 instead of
        // js-libp2p's per full address: turn js-libp2p's off
        inboundConnectionThreshold: Number.MAX_SAFE_INTEGER,
        maxIncomingPendingConnections: limits.maxPendingConnections
      },
      // per-source connection limits, checked before any handshake
      connectionGater: gate.gater(),
      // libp2p's monitor would open a ping stream to every client every 10 s:
      // the heartbeat below pings through the muxer, and less often
      connectionMonitor: { enabled: false },
      // libp2p's own metrics only with the endpoint: @libp2p/prometheus-metrics
      // keeps its metric objects in a module-wide map, fine for the one relay a
      // `parley relay` process runs, not for many relays in one test process
      metrics: resolved.metrics != null
        ? prometheusMetrics({ registry: metrics.registry, statfsLocation: resolved.dataDir })
        : undefined,
      peerDiscovery: bootstrapDiscovery(resolved.bootstrap),
      services: {
        ...basicServices(),
        autoNAT: autoNAT(),
        // a client gone silent (its host died, its network went) holds a
        // connection and a reservation until found dead: within 1.5 × heartbeatInterval
        heartbeat: relayHeartbeat(resolved.heartbeatInterval),
        dht: parleyDHT(resolved.dhtProtocol, false),
        relay: guardedRelayServer(guard, {
          maxInboundHopStreams: limits.maxInboundHopStreams,
          maxOutboundStopStreams: limits.maxOutboundStopStreams,
          reservations: {
            // the guard enforces the total itself (counting requests in flight);
            // the store's own check stays as a backstop
            maxReservations: limits.maxReservations,
            reservationTtl: limits.reservationTtl,
            defaultDurationLimit: limits.circuitDuration,
            defaultDataLimit: BigInt(limits.circuitBytes)
          }
        }),
        ...(mailboxStore == null
          ? {}
          : { mailbox: mailboxService({ store: mailboxStore, limits: resolved.mailbox, clock: systemClock, observer: metrics.mailbox }) })
      }
    })
  } catch (err) {
    guard.stop()
    await close()
    throw err
  }

  const node = libp2p
  // count js-libp2p's own refusals (maxConnections, maxPendingConnections) too
  gate.watch((node as unknown as { components?: { connectionManager?: unknown } }).components?.connectionManager)
  metrics.bind({
    reservations: () => node.services.relay.reservations.size,
    circuits: () => guard.circuits,
    connections: () => node.getConnections()
  })
  if (mailboxStore != null) {
    const store = mailboxStore
    metrics.mailbox.bind(() => store.held, resolved.mailbox)
  }
  // a reservation is only of use while its peer is connected (js-libp2p keeps
  // it until it expires): end it with the peer's last connection
  node.addEventListener('peer:disconnect', evt => { guard.endReservation(evt.detail) })

  const relay = new ParleyRelay({ libp2p: node, config: resolved, guard, metrics, closeDatastore: close })
  try {
    await relay.serveMetrics()
  } catch (err) {
    await relay.stop()
    throw err
  }
  return relay
}
