/**
 * The node's programmatic options (`createNode`): what each one is, its
 * default, and the zod schema that checks it. The daemon's config file,
 * environment and flags are checked by a schema picked from this one
 * (daemon/config.ts), so that each key is checked in one place.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { hasPeerId, limitTable, multiaddrString, parseConfig, positiveInt, positiveMs, positiveNumber, protocolId } from '../common/config.js'
import { DEFAULT_DHT_PROTOCOL } from '../common/constants.js'
import { CONNECTION_LIMIT_DEFAULTS } from './network/connection-guard.js'
import { MAX_RELAYS } from './network/reservations.js'
import { DEFAULT_MESSAGE_EXPIRY } from './outbox/machine.js'
import { DEFAULT_LIMITS } from './policy.js'
import { FILE_LIMIT_DEFAULTS } from './files/transfers.js'
import type { FileLimits } from './files/transfers.js'
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
   * @default ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws', '/ip6/::/tcp/0', '/ip6/::/tcp/0/ws', '/webrtc']
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
   * Relays that keep this node's mailbox (`/ip4/…/tcp/…/p2p/<relay id>`):
   * people who write while this node is offline leave their messages there,
   * sealed for it. An empty list: no mailbox (messages to this node wait in
   * their senders' outboxes until it is online).
   *
   * @default the relays
   */
  mailboxes?: Array<string | Multiaddr>

  /**
   * How long a recipient may be unreachable, with a dial failed, before a
   * message to it is left in its mailbox too (three times as long while the
   * first dial is merely slow; it is still delivered directly if the recipient
   * comes back), in ms.
   *
   * @default 5000
   */
  mailboxAfter?: number

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
   * How long a connection may receive nothing before it is pinged, in ms
   * (common/heartbeat.ts: a yamux PING frame, no stream); also how often
   * connections are looked at. A connection that does not answer within this
   * (and 5 s at least) is aborted, so a peer that went silent is found dead
   * within 2.5 times this (25 s by default; common/heartbeat.ts) of the last
   * thing it sent; a connection carrying traffic is never pinged.
   *
   * @default 10000
   */
  heartbeatInterval?: number

  /**
   * `heartbeatInterval` for the connections to the relays this node keeps a
   * reservation on, in ms. A relay answers the pings of every one of its
   * thousands of clients, and pings none of them while they ping it
   * (relay/relay.ts): this is what its idle CPU is made of. A relay that
   * went silent is found dead within this + 1.5 × heartbeatInterval (75 s
   * by default); one that restarts or closes its sockets is
   * seen at once, and a move of this machine to another network is found by
   * the stale-path tests (node/network/stale-paths.ts). Keep it under a
   * relay's own interval (90 s, relay/README.md) or the relay pings too.
   *
   * @default 60000
   */
  relayHeartbeatInterval?: number

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
   * How long an undelivered message is tried before it fails as expired, in
   * ms (counted from when it was sent; a message to a wrong or dead peer ID
   * would otherwise wait for ever).
   *
   * @default 604800000 (7 days)
   */
  messageExpiry?: number

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

  /**
   * Files received (protocols/file): a contact's offer up to `autoAcceptSize`
   * bytes is fetched at once (25 MiB), larger ones and strangers' wait for
   * `acceptFile`; offers over `maxFileSize` (1 GiB) are refused; received
   * files and transfers under way take at most `quotaBytes` (4 GiB);
   * `maxConcurrentFetches` (4) run at once.
   */
  files?: Partial<FileLimits>
}

/** A NodeConfig with every default filled in and every address parsed. */
export interface ResolvedNodeConfig {
  dataDir?: string
  listen: string[]
  announce: string[]
  relays: Multiaddr[]
  mailboxes: Multiaddr[]
  /** No `mailboxes` given: the relays keep the mailbox, as they change. */
  mailboxesFollowRelays: boolean
  mailboxAfter: number
  bootstrap: Multiaddr[]
  iceServers: RTCIceServer[]
  iceBindAddress?: string
  dhtProtocol: string
  sendTimeout: number
  heartbeatInterval: number
  relayHeartbeatInterval: number
  retry: { initialDelay: number, maxDelay: number }
  gapTimeout: number
  messageExpiry: number
  limits: PolicyLimits
  connectionLimits: Required<ConnectionLimits>
  files: FileLimits
}

export const NODE_DEFAULTS = {
  listen: ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws', '/ip6/::/tcp/0', '/ip6/::/tcp/0/ws', '/webrtc'],
  dhtProtocol: DEFAULT_DHT_PROTOCOL,
  sendTimeout: 60_000,
  heartbeatInterval: 10_000,
  relayHeartbeatInterval: 60_000,
  retry: { initialDelay: 1_000, maxDelay: 5 * 60_000 },
  gapTimeout: 60_000,
  messageExpiry: DEFAULT_MESSAGE_EXPIRY,
  mailboxAfter: 5_000
}

/** One STUN/TURN server, as `RTCIceServer` has it. */
export const iceServerSchema = z.strictObject({
  urls: z.union([z.string(), z.array(z.string())], { error: 'must be a STUN/TURN URL or a list of them, such as stun:stun.l.google.com:19302' }),
  username: z.string().optional(),
  credential: z.string().optional()
})

/** `limits`: any of the policy limits (SECURITY.md lists them with their defaults). */
export const policyLimitsSchema = limitTable(Object.keys(DEFAULT_LIMITS) as Array<keyof PolicyLimits>, positiveNumber())

/** `connectionLimits`: caps on strangers' inbound connections (SECURITY.md). */
export const connectionLimitsSchema = limitTable(Object.keys(CONNECTION_LIMIT_DEFAULTS) as Array<keyof ConnectionLimits>, positiveInt())

/**
 * How each key of NodeConfig is checked. `satisfies` keeps it in step with
 * the interface: a key added to one and not the other fails to compile.
 */
export const nodeConfigShape = {
  dataDir: z.string().optional(),
  listen: z.array(multiaddrString()).optional(),
  announce: z.array(multiaddrString()).optional(),
  relays: z.array(multiaddrString(hasPeerId)).max(MAX_RELAYS, { error: `at most ${MAX_RELAYS} relays` }).optional(),
  mailboxes: z.array(multiaddrString(hasPeerId)).max(8, { error: 'at most 8 mailbox hosts' }).optional(),
  mailboxAfter: positiveMs().optional(),
  bootstrap: z.array(multiaddrString()).optional(),
  iceServers: z.array(iceServerSchema).optional(),
  iceBindAddress: z.union([z.ipv4(), z.ipv6()], { error: 'must be an IP address of this machine' }).optional(),
  dhtProtocol: protocolId().optional(),
  sendTimeout: positiveMs().optional(),
  heartbeatInterval: positiveMs().optional(),
  relayHeartbeatInterval: positiveMs().optional(),
  retry: z.strictObject({ initialDelay: positiveMs().optional(), maxDelay: positiveMs().optional() }).optional(),
  gapTimeout: positiveMs().optional(),
  // a timer's longest wait is no limit: the outbox re-arms one that is too long
  messageExpiry: positiveMs().optional(),
  limits: policyLimitsSchema.optional(),
  connectionLimits: connectionLimitsSchema.optional(),
  files: limitTable(Object.keys(FILE_LIMIT_DEFAULTS) as Array<keyof FileLimits>, positiveInt()).optional()
} satisfies Record<keyof NodeConfig, z.ZodType>

/** NodeConfig's schema: unknown keys are errors, not silently ignored. */
export const nodeConfigSchema = z.strictObject(nodeConfigShape)

/** What passed the schema: a NodeConfig with every address a string. */
export type CheckedNodeConfig = z.output<typeof nodeConfigSchema>

/**
 * Checks a programmatic config and fills in the defaults. Throws an
 * `InvalidConfigError` naming each bad key and the reason.
 */
export function resolveNodeConfig (config: NodeConfig = {}): ResolvedNodeConfig {
  // keys set to undefined are dropped on the way in: they leave the defaults in place
  const checked: CheckedNodeConfig = parseConfig(nodeConfigSchema, [{ source: 'createNode options', values: config as Record<string, unknown> }])
  const relays = (checked.relays ?? []).map(ma => multiaddr(ma))
  return {
    dataDir: checked.dataDir,
    listen: checked.listen ?? NODE_DEFAULTS.listen,
    announce: checked.announce ?? [],
    relays,
    mailboxes: checked.mailboxes == null ? relays : checked.mailboxes.map(ma => multiaddr(ma)),
    mailboxesFollowRelays: checked.mailboxes == null,
    mailboxAfter: checked.mailboxAfter ?? NODE_DEFAULTS.mailboxAfter,
    bootstrap: checked.bootstrap == null ? relays : checked.bootstrap.map(ma => multiaddr(ma)),
    iceServers: checked.iceServers ?? [],
    iceBindAddress: checked.iceBindAddress,
    dhtProtocol: checked.dhtProtocol ?? NODE_DEFAULTS.dhtProtocol,
    sendTimeout: checked.sendTimeout ?? NODE_DEFAULTS.sendTimeout,
    heartbeatInterval: checked.heartbeatInterval ?? NODE_DEFAULTS.heartbeatInterval,
    relayHeartbeatInterval: checked.relayHeartbeatInterval ?? NODE_DEFAULTS.relayHeartbeatInterval,
    retry: { ...NODE_DEFAULTS.retry, ...checked.retry },
    gapTimeout: checked.gapTimeout ?? NODE_DEFAULTS.gapTimeout,
    messageExpiry: checked.messageExpiry ?? NODE_DEFAULTS.messageExpiry,
    limits: { ...DEFAULT_LIMITS, ...checked.limits },
    connectionLimits: { ...CONNECTION_LIMIT_DEFAULTS, ...checked.connectionLimits },
    files: { ...FILE_LIMIT_DEFAULTS, ...checked.files }
  }
}
