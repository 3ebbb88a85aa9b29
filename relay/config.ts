import { InvalidConfigError } from '../common/errors.js'
import { DEFAULT_DHT_PROTOCOL, parseMultiaddr } from '../node/config.js'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface RelayLimits {
  /**
   * Reservations the relay holds at once.
   *
   * @default 512
   */
  maxReservations?: number

  /**
   * How long a reservation lasts before the client must renew it, in ms.
   *
   * @default 7200000
   */
  reservationTtl?: number

  /**
   * Longest a relayed connection may stay open, in ms (relay-v2 default 2 min).
   *
   * @default 120000
   */
  circuitDuration?: number

  /**
   * Most bytes a relayed connection may carry in each direction (relay-v2 default 128 KiB).
   *
   * @default 131072
   */
  circuitBytes?: number

  /**
   * Simultaneous HOP streams (reservation and connect requests in progress).
   *
   * @default 256
   */
  maxInboundHopStreams?: number

  /**
   * Simultaneous STOP streams (circuits being opened to clients).
   *
   * @default 256
   */
  maxOutboundStopStreams?: number

  /**
   * Most connections the relay keeps open.
   *
   * @default 2048
   */
  maxConnections?: number

  /**
   * New connections one IP address may open per second; more are refused.
   *
   * @default 20
   */
  inboundConnectionsPerSecond?: number

  /**
   * Inbound connections still in their handshake at once.
   *
   * @default 64
   */
  maxPendingConnections?: number
}

export interface RelayConfig {
  /** Where the identity key and datastore live; a restart keeps the peer ID. */
  dataDir?: string

  /**
   * @default ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws']
   */
  listen?: string[]

  /** Public addresses to announce (behind a load balancer, or a public IP not on an interface). */
  announce?: string[]

  /** Other relays / DHT servers to join the DHT through. */
  bootstrap?: Array<string | Multiaddr>

  /** @default '/parley/kad/1.0.0' */
  dhtProtocol?: string

  limits?: RelayLimits
}

export interface ResolvedRelayConfig {
  dataDir?: string
  listen: string[]
  announce: string[]
  bootstrap: Multiaddr[]
  dhtProtocol: string
  limits: Required<RelayLimits>
}

export const RELAY_DEFAULTS = {
  listen: ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws'],
  limits: {
    maxReservations: 512,
    reservationTtl: 2 * 60 * 60_000,
    circuitDuration: 2 * 60_000,
    circuitBytes: 128 * 1024,
    maxInboundHopStreams: 256,
    maxOutboundStopStreams: 256,
    maxConnections: 2048,
    inboundConnectionsPerSecond: 20,
    maxPendingConnections: 64
  } satisfies Required<RelayLimits>
}

export function resolveRelayConfig (config: RelayConfig = {}): ResolvedRelayConfig {
  const listen = config.listen ?? RELAY_DEFAULTS.listen
  listen.forEach((ma, i) => parseMultiaddr(ma, `listen[${i}]`))
  const announce = config.announce ?? []
  announce.forEach((ma, i) => parseMultiaddr(ma, `announce[${i}]`))
  const limits = { ...RELAY_DEFAULTS.limits }
  for (const [key, value] of Object.entries(config.limits ?? {})) {
    if (!(key in limits)) {
      throw new InvalidConfigError(`limits.${key}: unknown limit; known limits are ${Object.keys(limits).join(', ')}`)
    }
    if (value == null) continue
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw new InvalidConfigError(`limits.${key}: must be a positive integer, got ${String(value)}`)
    }
    limits[key as keyof RelayLimits] = value
  }
  return {
    dataDir: config.dataDir,
    listen,
    announce,
    bootstrap: (config.bootstrap ?? []).map((ma, i) => parseMultiaddr(ma, `bootstrap[${i}]`)),
    dhtProtocol: config.dhtProtocol ?? DEFAULT_DHT_PROTOCOL,
    limits
  }
}
