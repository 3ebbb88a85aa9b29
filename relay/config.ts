import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { CONFIG_FILE, envLayer, flagLayer, hasPeerId, limitTable, mergeLayers, multiaddrString, parseConfig, positiveInt, protocolId, readConfigFile } from '../common/config.js'
import { DEFAULT_DHT_PROTOCOL } from '../common/constants.js'
import { MAILBOX_DEFAULTS } from './mailbox/limits.js'
import type { MailboxLimits } from './mailbox/limits.js'
import type { ConfigBinding, ConfigLayer, ConfigValueKind } from '../common/config.js'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * What a relay lets its users spend. Every limit is a positive integer; a
 * request over a reservation or circuit limit is refused with its relay-v2
 * status and counted in `parley_relay_refusals_total`, a connection over a
 * connection limit is closed before its handshake and counted in
 * `parley_relay_connections_refused_total`.
 *
 * The reservation and circuit defaults are go-libp2p's relay v2 resources
 * (`relay.DefaultResources()`). Per-IP limits count an IPv4 address or an IPv6
 * /64; per-subnet limits an IPv4 /24 or an IPv6 /48 (where go-libp2p counts an
 * ASN). Loopback is counted like any other address.
 */
export interface RelayLimits {
  /**
   * Reservations the relay holds at once. The next peer is refused with
   * RESERVATION_REFUSED (go-libp2p: MaxReservations).
   *
   * @default 128
   */
  maxReservations?: number

  /**
   * Reservations (new or renewed) one peer ID is granted within one
   * `reservationTtl`, as go-libp2p's relay counted them. A client renews once
   * per TTL and re-reserves after a reconnect; a peer that asks more often is
   * refused with RESERVATION_REFUSED until its oldest grant ages out.
   *
   * @default 16
   */
  maxReservationsPerPeer?: number

  /**
   * Reservations held at once by peers connecting from one IPv4 address or one
   * IPv6 /64 (a host gets a whole /64). Over it: RESERVATION_REFUSED
   * (go-libp2p: MaxReservationsPerIP). Behind a load balancer that hides client
   * addresses every peer shares one IP: raise it.
   *
   * @default 8
   */
  maxReservationsPerIp?: number

  /**
   * Reservations held at once by peers connecting from one IPv4 /24 or one
   * IPv6 /48, so that one network cannot take every slot. Over it:
   * RESERVATION_REFUSED (go-libp2p counts an ASN: MaxReservationsPerASN).
   *
   * @default 32
   */
  maxReservationsPerSubnet?: number

  /**
   * How long a reservation lasts before the client must renew it, in ms
   * (go-libp2p: ReservationTTL, 1 h).
   *
   * @default 3600000
   */
  reservationTtl?: number

  /**
   * Relayed connections (circuits) open at once. The next CONNECT is refused
   * with RESOURCE_LIMIT_EXCEEDED.
   *
   * @default 1024
   */
  maxCircuits?: number

  /**
   * Circuits one peer takes part in at once, as the dialling or the dialled
   * side. Over it: RESOURCE_LIMIT_EXCEEDED (go-libp2p: MaxCircuits).
   *
   * @default 16
   */
  maxCircuitsPerPeer?: number

  /**
   * Circuits dialled at once by peers connecting from one IPv4 address or one
   * IPv6 /64 (counted on the dialling side; the dialled side is bounded by
   * `maxCircuitsPerPeer`). Over it: RESOURCE_LIMIT_EXCEEDED.
   *
   * @default 32
   */
  maxCircuitsPerIp?: number

  /**
   * Circuits dialled at once by peers connecting from one IPv4 /24 or one IPv6
   * /48. Over it: RESOURCE_LIMIT_EXCEEDED.
   *
   * @default 128
   */
  maxCircuitsPerSubnet?: number

  /**
   * Longest a circuit may stay open, in ms (relay-v2 default 2 min); then the
   * relay closes it.
   *
   * @default 120000
   */
  circuitDuration?: number

  /**
   * Most bytes a circuit may carry, both directions together (relay-v2 default
   * 128 KiB); then the relay closes it.
   *
   * @default 131072
   */
  circuitBytes?: number

  /**
   * HOP streams (reservation and connect requests, and the open circuits they
   * become) one connection may have open at once; more streams are reset.
   *
   * @default 256
   */
  maxInboundHopStreams?: number

  /**
   * STOP streams (circuits to a client) one connection may have open at once.
   *
   * @default 256
   */
  maxOutboundStopStreams?: number

  /**
   * Connections the relay keeps open; it refuses inbound ones over this and
   * prunes the least valuable.
   *
   * @default 2048
   */
  maxConnections?: number

  /**
   * Inbound connections open at once from one IPv4 address or one IPv6 /64,
   * those still in their handshake included; more are refused before the
   * handshake.
   *
   * @default 16
   */
  maxConnectionsPerIp?: number

  /**
   * Inbound connections open at once from one IPv4 /24 or one IPv6 /48; more
   * are refused before the handshake.
   *
   * @default 64
   */
  maxConnectionsPerSubnet?: number

  /**
   * New inbound connections one IPv4 address or one IPv6 /64 may open within
   * a second; more are refused.
   *
   * @default 20
   */
  inboundConnectionsPerSecond?: number

  /**
   * Inbound connections still in their handshake at once; more are refused.
   *
   * @default 64
   */
  maxPendingConnections?: number
}

export interface RelayConfig {
  /**
   * Where the identity key and datastore live; a restart on the same dir keeps
   * the peer ID. Omitted: a new identity each start, everything in memory.
   */
  dataDir?: string

  /**
   * TCP and WebSockets addresses to listen on.
   *
   * @default ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws']
   */
  listen?: Array<string | Multiaddr>

  /**
   * Addresses to announce instead of the listening ones: behind a load
   * balancer, or with a public IP that is not on an interface.
   *
   * @default []
   */
  announce?: Array<string | Multiaddr>

  /**
   * Other relays / DHT servers to join the DHT through (each with /p2p/<id>).
   *
   * @default []
   */
  bootstrap?: Array<string | Multiaddr>

  /**
   * The DHT protocol id.
   *
   * @default '/parley/kad/1.0.0'
   */
  dhtProtocol?: string

  /**
   * Serve `/metrics` (Prometheus) and `/healthz` over HTTP at `host:port`
   * (port 0: any free port; see `ParleyRelay.metricsUrl`). `false` serves
   * nothing; the counters are still kept in `ParleyRelay.metrics`. The
   * `parley relay` command defaults to `127.0.0.1:4003`.
   *
   * @default false
   */
  metrics?: string | false

  /**
   * How long `stop()` lets connections close gracefully before it cuts them, in ms.
   *
   * @default 5000
   */
  shutdownTimeout?: number

  /**
   * How long a client connection may receive nothing before the relay pings
   * it, in ms (common/heartbeat.ts: a yamux PING frame). A parley client
   * pings its relays every 60 s (its `relayHeartbeatInterval`), which keeps
   * its connection from ever being silent that long: the relay pings no
   * parley client, and its idle CPU is the answers to its clients' pings
   * alone. A client that went silent (its host died, its network went) is
   * dropped, its connection closed and its reservation freed, within
   * 1.5 × this (135 s by default): connections are looked at every third of
   * it, and a ping not answered within a third of it (5 s at least) aborts
   * the connection.
   *
   * @default 90000
   */
  heartbeatInterval?: number

  limits?: RelayLimits

  /** The mailbox host (/parley/mailbox/1.0.0): on unless `enabled: false`; its limits. */
  mailbox?: RelayMailboxConfig
}

/** The `mailbox` section: every key optional, defaults in MAILBOX_DEFAULTS (relay/mailbox/limits.ts). */
export interface RelayMailboxConfig extends Partial<MailboxLimits> {
  /**
   * Serve mailboxes (`--no-mailbox`, `PARLEY_MAILBOX=false` turn it off).
   *
   * @default true
   */
  enabled?: boolean
}

export interface ResolvedRelayConfig {
  dataDir?: string
  listen: string[]
  announce: string[]
  bootstrap: Multiaddr[]
  dhtProtocol: string
  metrics?: { host: string, port: number }
  shutdownTimeout: number
  heartbeatInterval: number
  limits: Required<RelayLimits>
  mailbox: MailboxLimits & { enabled: boolean }
}

export const RELAY_DEFAULTS = {
  listen: ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/tcp/4002/ws'],
  dhtProtocol: DEFAULT_DHT_PROTOCOL,
  shutdownTimeout: 5_000,
  heartbeatInterval: 90_000,
  /** What `parley relay` serves metrics on unless told otherwise. */
  cliMetrics: '127.0.0.1:4003',
  limits: {
    maxReservations: 128,
    maxReservationsPerPeer: 16,
    maxReservationsPerIp: 8,
    maxReservationsPerSubnet: 32,
    reservationTtl: 60 * 60_000,
    maxCircuits: 1024,
    maxCircuitsPerPeer: 16,
    maxCircuitsPerIp: 32,
    maxCircuitsPerSubnet: 128,
    circuitDuration: 2 * 60_000,
    circuitBytes: 128 * 1024,
    maxInboundHopStreams: 256,
    maxOutboundStopStreams: 256,
    maxConnections: 2048,
    maxConnectionsPerIp: 16,
    maxConnectionsPerSubnet: 64,
    inboundConnectionsPerSecond: 20,
    maxPendingConnections: 64
  } satisfies Required<RelayLimits>
}

/** What each limit is, for `--help` (the TSDoc above says more). */
const LIMIT_HELP: Record<keyof RelayLimits, string> = {
  maxReservations: 'reservations held at once',
  maxReservationsPerPeer: 'reservations granted to one peer per reservation TTL',
  maxReservationsPerIp: 'reservations held at once by peers from one IP (IPv6: one /64)',
  maxReservationsPerSubnet: 'reservations held at once by peers from one IPv4 /24 or IPv6 /48',
  reservationTtl: 'reservation lifetime',
  maxCircuits: 'relayed connections open at once',
  maxCircuitsPerPeer: 'relayed connections one peer takes part in at once',
  maxCircuitsPerIp: 'relayed connections dialled at once from one IP (IPv6: one /64)',
  maxCircuitsPerSubnet: 'relayed connections dialled at once from one IPv4 /24 or IPv6 /48',
  circuitDuration: 'longest a relayed connection stays open',
  circuitBytes: 'most bytes a relayed connection carries',
  maxInboundHopStreams: 'relay requests/circuits open on one connection',
  maxOutboundStopStreams: 'circuits to one client connection',
  maxConnections: 'connections kept open',
  maxConnectionsPerIp: 'inbound connections open at once from one IP (IPv6: one /64)',
  maxConnectionsPerSubnet: 'inbound connections open at once from one IPv4 /24 or IPv6 /48',
  inboundConnectionsPerSecond: 'new connections one IP (IPv6: one /64) may open per second',
  maxPendingConnections: 'inbound connections in their handshake at once'
}

/** `maxReservationsPerIp` → `MAX_RESERVATIONS_PER_IP`. */
function snake (key: string): string {
  return key.replace(/[A-Z]/g, c => `_${c}`).toUpperCase()
}

/** `maxReservationsPerIp` → `max-reservations-per-ip`. */
export function kebab (key: string): string {
  return key.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)
}

/** The limits with their help text and flag/env names, for the CLI. */
export const LIMIT_OPTIONS = (Object.keys(RELAY_DEFAULTS.limits) as Array<keyof RelayLimits>).map(key => ({
  key,
  flag: `--${kebab(key)}`,
  /** What the flag's value is, for `--help`. */
  arg: key === 'reservationTtl' || key === 'circuitDuration' ? '<ms>' : key === 'circuitBytes' ? '<bytes>' : '<n>',
  env: `PARLEY_${snake(key)}`,
  help: LIMIT_HELP[key],
  default: RELAY_DEFAULTS.limits[key]
}))

/** `PARLEY_*` environment variables and the keys they set. */
export const RELAY_ENV: Record<string, ConfigBinding> = {
  PARLEY_HOME: { key: 'dataDir', kind: 'string' },
  PARLEY_LISTEN: { key: 'listen', kind: 'list' },
  PARLEY_ANNOUNCE: { key: 'announce', kind: 'list' },
  PARLEY_BOOTSTRAP: { key: 'bootstrap', kind: 'list' },
  PARLEY_DHT_PROTOCOL: { key: 'dhtProtocol', kind: 'string' },
  PARLEY_METRICS: { key: 'metrics', kind: 'string' },
  PARLEY_SHUTDOWN_TIMEOUT: { key: 'shutdownTimeout', kind: 'number' },
  PARLEY_HEARTBEAT_INTERVAL: { key: 'heartbeatInterval', kind: 'number' },
  PARLEY_MAILBOX: { key: 'mailbox.enabled', kind: 'boolean' },
  ...Object.fromEntries(LIMIT_OPTIONS.map(o => [o.env, { key: `limits.${o.key}`, kind: 'number' as ConfigValueKind }]))
}

/** The relay listens on TCP and WebSockets over TCP, on an IP address. */
function listenable (ma: Multiaddr): string | undefined {
  const names = ma.getComponents().map(c => c.name)
  const ok = (names[0] === 'ip4' || names[0] === 'ip6') && names[1] === 'tcp' &&
    (names.length === 2 || (names.length === 3 && names[2] === 'ws'))
  return ok ? undefined : 'is not an address the relay can listen on: use /ip4|ip6/<ip>/tcp/<port> (TCP) or /ip4|ip6/<ip>/tcp/<port>/ws (WebSockets)'
}

const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/

/** `host:port` (IPv6 in brackets) → `{ host, port }`, or undefined if it is not one. */
function parseHostPort (value: string): { host: string, port: number } | undefined {
  const match = HOST_PORT.exec(value.trim())
  if (match == null || Number(match[3]) > 65535) return undefined
  return { host: match[1] ?? match[2], port: Number(match[3]) }
}

/** `host:port`, or `false` (also `off`, `none` from the environment or a flag) for no endpoint. */
const metricsSchema = z.preprocess(
  value => typeof value === 'string' && ['off', 'false', 'none', 'no'].includes(value.trim().toLowerCase()) ? false : value,
  z.union([
    z.literal(false),
    z.string().superRefine((value, ctx) => {
      if (parseHostPort(value) == null) {
        ctx.addIssue({ code: 'custom', message: `"${value}" must be host:port, such as 127.0.0.1:4003 or [::1]:4003, or false to serve no metrics` })
      }
    })
  ], { error: 'must be host:port, such as 127.0.0.1:4003, or false to serve no metrics' })
) as z.ZodType<string | false>

const limitsSchema = limitTable(Object.keys(RELAY_DEFAULTS.limits) as Array<keyof RelayLimits>, positiveInt())

/** The mailbox section: the limits (positive integers; the share a percentage, envelopes within the spec's 64 KiB) and `enabled`. */
const mailboxSchema = z.strictObject({
  ...limitTable(Object.keys(MAILBOX_DEFAULTS) as Array<keyof MailboxLimits>, positiveInt()).shape,
  enabled: z.boolean({ error: 'must be true or false' }).optional(),
  depositorSharePercent: positiveInt().max(100, { error: 'must be a percentage, 1 to 100' }).optional(),
  maxEnvelopeBytes: positiveInt().max(MAILBOX_DEFAULTS.maxEnvelopeBytes, { error: `must be at most ${MAILBOX_DEFAULTS.maxEnvelopeBytes} (the protocol's limit)` }).optional()
})

/** The relay's whole configuration: unknown keys are errors, not silently ignored. */
export const relayConfigSchema = z.strictObject({
  dataDir: z.string().min(1, { error: 'must be a directory path' }).optional(),
  listen: z.array(multiaddrString(listenable)).min(1, { error: 'must list at least one address to listen on' }).optional(),
  announce: z.array(multiaddrString()).optional(),
  bootstrap: z.array(multiaddrString(hasPeerId)).optional(),
  dhtProtocol: protocolId().optional(),
  metrics: metricsSchema.optional(),
  shutdownTimeout: positiveInt().optional(),
  heartbeatInterval: positiveInt().optional(),
  limits: limitsSchema.optional(),
  mailbox: mailboxSchema.optional()
})

/** The mailbox section with its defaults filled in. */
function withMailboxDefaults (section: z.output<typeof mailboxSchema> | undefined): MailboxLimits & { enabled: boolean } {
  const mailbox = { ...MAILBOX_DEFAULTS, enabled: true }
  for (const [key, value] of Object.entries(section ?? {})) {
    if (value != null) (mailbox as Record<string, unknown>)[key] = value
  }
  return mailbox
}

/** Fills in the defaults; `config` has passed `relayConfigSchema`. */
function withDefaults (config: z.output<typeof relayConfigSchema>): ResolvedRelayConfig {
  const limits = { ...RELAY_DEFAULTS.limits }
  for (const [key, value] of Object.entries(config.limits ?? {})) {
    if (value != null) limits[key as keyof RelayLimits] = value
  }
  return {
    dataDir: config.dataDir,
    listen: config.listen ?? RELAY_DEFAULTS.listen,
    announce: config.announce ?? [],
    bootstrap: (config.bootstrap ?? []).map(ma => multiaddr(ma)),
    dhtProtocol: config.dhtProtocol ?? RELAY_DEFAULTS.dhtProtocol,
    metrics: config.metrics == null || config.metrics === false ? undefined : parseHostPort(config.metrics),
    shutdownTimeout: config.shutdownTimeout ?? RELAY_DEFAULTS.shutdownTimeout,
    heartbeatInterval: config.heartbeatInterval ?? RELAY_DEFAULTS.heartbeatInterval,
    limits,
    mailbox: withMailboxDefaults(config.mailbox)
  }
}

/**
 * Checks a programmatic config and fills in the defaults. Throws an
 * `InvalidConfigError` naming the key path and the reason.
 */
export function resolveRelayConfig (config: RelayConfig = {}): ResolvedRelayConfig {
  return withDefaults(parseConfig(relayConfigSchema, [{ source: 'createRelay options', values: config as Record<string, unknown> }]))
}

/** What `parley relay` was given on its command line; unset flags are undefined. */
export interface RelayFlags {
  config?: string
  dataDir?: string
  listen?: string[]
  announce?: string[]
  bootstrap?: string[]
  dhtProtocol?: string
  /** A `host:port`, or false for `--no-metrics`. */
  metrics?: string | false
  shutdownTimeout?: string
  heartbeatInterval?: string
  limits?: Partial<Record<keyof RelayLimits, string>>
  /** false for `--no-mailbox`. */
  mailbox?: boolean
}

/** A checked relay config from every layer, and where each value came from. */
export interface LoadedRelayConfig {
  config: RelayConfig

  /** Per key path (`metrics`, `limits.maxReservations`): `defaults`, `config file …`, `environment variable …` or the flag. */
  origins: Map<string, string>
}

/**
 * The relay's config from every layer: defaults < config file (`--config`,
 * `PARLEY_CONFIG`, else `<data dir>/config.json` if there is one) <
 * `PARLEY_*` environment < flags, checked, for `createRelay`. Throws an
 * `InvalidConfigError` naming the key path, the reason and the source of each
 * bad value.
 */
export async function loadRelayConfig (flags: RelayFlags = {}, env: NodeJS.ProcessEnv = process.env): Promise<LoadedRelayConfig> {
  const flagValues: Record<string, { value: unknown, flag: string, kind?: ConfigValueKind }> = {
    dataDir: { value: flags.dataDir, flag: '--data-dir' },
    listen: { value: flags.listen, flag: '--listen' },
    announce: { value: flags.announce, flag: '--announce' },
    bootstrap: { value: flags.bootstrap, flag: '--bootstrap' },
    dhtProtocol: { value: flags.dhtProtocol, flag: '--dht-protocol' },
    metrics: { value: flags.metrics, flag: flags.metrics === false ? '--no-metrics' : '--metrics' },
    shutdownTimeout: { value: flags.shutdownTimeout, flag: '--shutdown-timeout', kind: 'number' },
    heartbeatInterval: { value: flags.heartbeatInterval, flag: '--heartbeat-interval', kind: 'number' },
    // commander sets `mailbox: true` when `--no-mailbox` is absent: only the flag itself counts
    'mailbox.enabled': { value: flags.mailbox === false ? false : undefined, flag: '--no-mailbox' }
  }
  for (const option of LIMIT_OPTIONS) {
    flagValues[`limits.${option.key}`] = { value: flags.limits?.[option.key], flag: option.flag, kind: 'number' }
  }
  const fromFlags = flagLayer(flagValues)
  const fromEnv = envLayer(RELAY_ENV, env)

  let file: ConfigLayer | undefined
  const configPath = flags.config ?? (env.PARLEY_CONFIG?.trim() !== '' ? env.PARLEY_CONFIG : undefined)
  if (configPath != null) {
    file = await readConfigFile(configPath)
  } else {
    // the data dir may come from the flags or the environment only: the file
    // that would name it lives inside it
    const dataDir = flags.dataDir ?? (env.PARLEY_HOME?.trim() !== '' ? env.PARLEY_HOME : undefined)
    if (dataDir != null) file = await readConfigFile(join(dataDir, CONFIG_FILE), { optional: true })
  }

  const defaults: ConfigLayer = { source: 'defaults', values: { metrics: RELAY_DEFAULTS.cliMetrics } }
  const layers = [defaults, file, fromEnv, fromFlags]
  return { config: parseConfig(relayConfigSchema, layers), origins: mergeLayers(layers).origins }
}
