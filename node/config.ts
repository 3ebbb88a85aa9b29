import { isIP } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import { DEFAULT_DHT_PROTOCOL } from '../common/constants.js'
import { InvalidConfigError } from '../common/errors.js'
import { resolveConnectionLimits } from './network/connection-guard.js'
import { DEFAULT_LIMITS } from './policy.js'
import type { ConnectionLimits } from './network/connection-guard.js'
import type { PolicyLimits } from './policy.js'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface NodeConfig {
  /**
   * Where the identity key and the libp2p datastore live. Omitted: everything
   * is kept in memory and a new identity is made at every start.
   */
  dataDir?: string

  /**
   * Addresses to listen on. `/p2p-circuit` asks for a reservation on a
   * discovered relay, `/webrtc` accepts WebRTC connections signalled over relays.
   *
   * @default ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws', '/webrtc']
   */
  listen?: string[]

  /** Addresses to announce instead of the listening ones. */
  announce?: string[]

  /**
   * Relays to hold a reservation on, so that peers can reach this node through
   * them (`/ip4/…/tcp/…/p2p/<relay id>`).
   *
   * @default []
   */
  relays?: Array<string | Multiaddr>

  /**
   * Peers to join the DHT through (usually the relays).
   *
   * @default the relays
   */
  bootstrap?: Array<string | Multiaddr>

  /**
   * STUN/TURN servers for WebRTC hole punching (`RTCIceServer` objects).
   *
   * @default []
   */
  iceServers?: RTCIceServer[]

  /**
   * The local IP address WebRTC's ICE binds its UDP socket to, and so the only
   * host candidate it offers (say, one interface of a multi-homed machine, or
   * 127.0.0.1 for nodes that talk only on this machine).
   *
   * @default every interface
   */
  iceBindAddress?: string

  /**
   * The DHT protocol id.
   *
   * @default '/parley/kad/1.0.0'
   */
  dhtProtocol?: string

  /**
   * How long `send` keeps trying before it rejects, in ms.
   *
   * @default 60000
   */
  sendTimeout?: number

  /**
   * Heartbeat interval of libp2p's connection monitor, in ms.
   *
   * @default 10000
   */
  heartbeatInterval?: number

  /** How undelivered messages are retried. */
  retry?: {
    /**
     * Ceiling of the first retry delay, in ms; it doubles with each attempt (full jitter).
     *
     * @default 1000
     */
    initialDelay?: number

    /**
     * Longest wait between two attempts, in ms.
     *
     * @default 300000
     */
    maxDelay?: number
  }

  /**
   * How long a gap in a conversation's seqs holds later messages back before
   * they are shown anyway, in ms. The protocol says 60 s; change it only in tests.
   *
   * @default 60000
   */
  gapTimeout?: number

  /**
   * What strangers and contacts may make this node store, and how fast (see
   * SECURITY.md): message-request quotas, rate limits, held messages per
   * sender, the store's size.
   *
   * @default DEFAULT_LIMITS
   */
  limits?: Partial<PolicyLimits>

  /**
   * Inbound connections from peers that are not trusted (not contacts, not
   * configured relays): per IP, per subnet, in total, per peer, and how long
   * one that carries nothing is kept (see SECURITY.md).
   *
   * @default CONNECTION_LIMIT_DEFAULTS
   */
  connectionLimits?: ConnectionLimits
}

/** A NodeConfig with every default filled in and every address parsed. */
export interface ResolvedNodeConfig {
  dataDir?: string
  listen: string[]
  announce: string[]
  relays: Multiaddr[]
  bootstrap: Multiaddr[]
  iceServers: RTCIceServer[]
  iceBindAddress?: string
  dhtProtocol: string
  sendTimeout: number
  heartbeatInterval: number
  retry: { initialDelay: number, maxDelay: number }
  gapTimeout: number
  limits: PolicyLimits
  connectionLimits: Required<ConnectionLimits>
}

export const NODE_DEFAULTS = {
  listen: ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws', '/webrtc'],
  dhtProtocol: DEFAULT_DHT_PROTOCOL,
  sendTimeout: 60_000,
  heartbeatInterval: 10_000,
  retry: { initialDelay: 1_000, maxDelay: 5 * 60_000 },
  gapTimeout: 60_000
}

export function parseMultiaddr (value: string | Multiaddr, key: string): Multiaddr {
  if (typeof value !== 'string') {
    return value
  }
  try {
    return multiaddr(value)
  } catch (err: any) {
    throw new InvalidConfigError(`${key}: "${value}" is not a valid multiaddr (${err.message})`)
  }
}

function positive (value: number | undefined, fallback: number, key: string): number {
  const n = value ?? fallback
  if (!Number.isFinite(n) || n <= 0) {
    throw new InvalidConfigError(`${key}: must be a positive number of milliseconds, got ${String(value)}`)
  }
  return n
}

function resolveLimits (limits: Partial<PolicyLimits> = {}): PolicyLimits {
  if (typeof limits !== 'object' || limits === null) throw new InvalidConfigError('limits: must be an object')
  for (const [key, value] of Object.entries(limits)) {
    if (!(key in DEFAULT_LIMITS)) throw new InvalidConfigError(`limits.${key}: unknown limit; known: ${Object.keys(DEFAULT_LIMITS).join(', ')}`)
    if (typeof value !== 'number' || !(value > 0)) throw new InvalidConfigError(`limits.${key}: must be a positive number, got ${String(value)}`)
  }
  return { ...DEFAULT_LIMITS, ...limits }
}

export function resolveNodeConfig (config: NodeConfig = {}): ResolvedNodeConfig {
  const listen = config.listen ?? NODE_DEFAULTS.listen
  listen.forEach((ma, i) => parseMultiaddr(ma, `listen[${i}]`))
  const announce = config.announce ?? []
  announce.forEach((ma, i) => parseMultiaddr(ma, `announce[${i}]`))
  const relays = (config.relays ?? []).map((ma, i) => parseMultiaddr(ma, `relays[${i}]`))
  relays.forEach((ma, i) => {
    if (ma.getComponents().find(c => c.name === 'p2p') == null) {
      throw new InvalidConfigError(`relays[${i}]: "${ma.toString()}" must end in /p2p/<relay peer id>`)
    }
  })
  const bootstrap = (config.bootstrap ?? relays).map((ma, i) => parseMultiaddr(ma, `bootstrap[${i}]`))
  if (config.iceServers != null && !Array.isArray(config.iceServers)) {
    throw new InvalidConfigError('iceServers: must be an array of RTCIceServer objects')
  }
  if (config.iceBindAddress != null && isIP(config.iceBindAddress) === 0) {
    throw new InvalidConfigError(`iceBindAddress: "${String(config.iceBindAddress)}" is not an IP address`)
  }
  return {
    dataDir: config.dataDir,
    listen,
    announce,
    relays,
    bootstrap,
    iceServers: config.iceServers ?? [],
    iceBindAddress: config.iceBindAddress,
    dhtProtocol: config.dhtProtocol ?? NODE_DEFAULTS.dhtProtocol,
    sendTimeout: positive(config.sendTimeout, NODE_DEFAULTS.sendTimeout, 'sendTimeout'),
    heartbeatInterval: positive(config.heartbeatInterval, NODE_DEFAULTS.heartbeatInterval, 'heartbeatInterval'),
    retry: {
      initialDelay: positive(config.retry?.initialDelay, NODE_DEFAULTS.retry.initialDelay, 'retry.initialDelay'),
      maxDelay: positive(config.retry?.maxDelay, NODE_DEFAULTS.retry.maxDelay, 'retry.maxDelay')
    },
    gapTimeout: positive(config.gapTimeout, NODE_DEFAULTS.gapTimeout, 'gapTimeout'),
    limits: resolveLimits(config.limits),
    connectionLimits: resolveConnectionLimits(config.connectionLimits)
  }
}
