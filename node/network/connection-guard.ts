/**
 * Limits on the connections other peers open to the user's node, so that
 * strangers cannot take the room its contacts need.
 *
 * js-libp2p's defaults are a total of 300 connections, no limit per IP address,
 * and idle connections kept for ever: one IP address that opened 300
 * connections and held them left the node unreachable to everyone else. The
 * guard, after go-libp2p's resource manager (8 inbound connections per IPv4
 * address) and connection manager (protected peers, idle connections trimmed):
 *
 * - counts the inbound connections of peers that are not trusted (trusted:
 *   contacts, as the node says through `TrustSource`, and the relays it
 *   reserves on, which it keeps in step with `trustRelay`/`distrustRelay`)
 *   per IP address (IPv4 address, IPv6 /64), per subnet (IPv4 /24, IPv6 /48)
 *   and in all, and refuses one over a limit; a trusted peer is never refused
 *   for its address (it may share a NAT with an attacker);
 * - caps the inbound connections of any one peer;
 * - closes inbound connections of untrusted peers that carried nothing but
 *   libp2p's own housekeeping (identify, ping, …) for `idleTimeout`;
 * - closes the connections this node opened to DHT servers (for its DHT
 *   walks) once they carried nothing but housekeeping for `dhtIdleTimeout`,
 *   unless the server is trusted: kept until the server closed them, each
 *   cost both ends a heartbeat every beat;
 * - closes relayed connections, whoever opened them and whoever the peer, once
 *   they carried nothing but housekeeping for `relayedIdleTimeout`, or once a
 *   direct connection to the same peer that opened after them (a WebRTC
 *   upgrade, DCUtR) has been usable that long (seen so by each sweep): each
 *   holds a circuit at its relay, which counts it against both peers' share
 *   of its circuits (16 each by default, as go-libp2p's relays), and the
 *   relay would keep it until its circuit's time ran out (2 min by
 *   default). An upgraded one
 *   carries nothing new (messages take the direct path), but its /im stream
 *   would stay open 30 s. A direct connection older than the relayed one
 *   does not count: a peer that moved dials through the relay while its old
 *   direct connection still looks open (see stale-paths.ts);
 * - tags trusted peers in the peer store with a high value, so that libp2p's
 *   connection pruner, when over `maxConnections`, closes theirs last;
 * - drops, from every peer store update, addresses that name another peer as
 *   their destination (see `isAddressOf`).
 *
 * Limits are checked by the connection gater's `denyInboundEncryptedConnection`:
 * the peer is known then (Noise has authenticated it), before any stream. A
 * relayed connection arrives with its relay's address, and a WebRTC one with no
 * IP address at all: neither is counted per IP (the relay limits its circuits;
 * WebRTC is signalled over such a circuit), both count per peer and in all.
 */
import { KEEP_ALIVE } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { addressGroups } from '../../common/address-groups.js'
import { InvalidConfigError } from '../../common/errors.js'
import { connectionPath } from '../../protocols/im/index.js'
import { isAddressOf } from './peer-addresses.js'
import { isUsable } from './paths.js'
import type { ComponentLogger, Connection, ConnectionGater, Libp2pEvents, Logger, MultiaddrConnection, PeerId, PeerStore, Startable, TypedEventTarget } from '@libp2p/interface'
import type { AddressGroups } from '../../common/address-groups.js'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface ConnectionLimits {
  /**
   * Inbound connections of untrusted peers from one IPv4 address or IPv6 /64.
   *
   * @default 8
   */
  maxInboundPerIp?: number

  /**
   * Inbound connections of untrusted peers from one IPv4 /24 or IPv6 /48.
   *
   * @default 32
   */
  maxInboundPerSubnet?: number

  /**
   * Inbound connections of untrusted peers in all (relayed ones included).
   * Kept well under `maxConnections`: the rest is for contacts and for the
   * connections this node opens.
   *
   * @default 200
   */
  maxInboundUntrusted?: number

  /**
   * Inbound connections of any one peer, trusted or not.
   *
   * @default 8
   */
  maxInboundPerPeer?: number

  /**
   * An untrusted peer's inbound connection that carried no stream but
   * libp2p's own (identify, ping, AutoNAT, DCUtR) for this long is closed, in ms.
   *
   * @default 60000
   */
  idleTimeout?: number

  /**
   * A connection this node opened to a DHT server (a peer that serves
   * `dhtProtocols`) that is not trusted and carried no stream but libp2p's
   * own for this long is closed, in ms. A DHT walk reaches up to 20 servers;
   * the next walk dials the ones it needs again.
   *
   * @default 60000
   */
  dhtIdleTimeout?: number

  /**
   * A relayed connection (through a circuit relay), trusted peer or not,
   * inbound or outbound, that carried no stream but libp2p's own for this
   * long is closed, in ms, freeing its circuit at the relay. The next message
   * to the peer dials again. (An /im stream is kept open 30 s after its last
   * message, so a conversation's circuit goes this long after that.) So is
   * one whose peer has had, for this long, a direct connection that opened
   * after it: upgraded, it carries nothing new.
   *
   * @default 10000
   */
  relayedIdleTimeout?: number

  /**
   * libp2p's limit on all connections; over it, libp2p refuses inbound ones
   * and closes the least valuable (contacts last).
   *
   * @default 300
   */
  maxConnections?: number

  /**
   * Peers kept in the peer store. Every stranger that connects, or that the DHT
   * names, gets an entry; libp2p drops one only after 6 h without news. Past
   * this many, the peers that are neither trusted nor connected are forgotten
   * (checked every 10 minutes).
   * @default 5000
   */
  maxStoredPeers?: number
}

export const CONNECTION_LIMIT_DEFAULTS: Required<ConnectionLimits> = {
  maxInboundPerIp: 8,
  maxInboundPerSubnet: 32,
  maxInboundUntrusted: 200,
  maxInboundPerPeer: 8,
  idleTimeout: 60_000,
  dhtIdleTimeout: 60_000,
  relayedIdleTimeout: 10_000,
  maxConnections: 300,
  maxStoredPeers: 5_000
}

/**
 * Checks connection limits from a config (`key` names them in errors) and
 * fills in the defaults.
 *
 * @throws InvalidConfigError naming the key and the reason
 */
export function resolveConnectionLimits (limits: ConnectionLimits = {}, key = 'connectionLimits'): Required<ConnectionLimits> {
  if (typeof limits !== 'object' || limits === null) throw new InvalidConfigError(`${key}: must be an object`)
  for (const [name, value] of Object.entries(limits)) {
    if (!(name in CONNECTION_LIMIT_DEFAULTS)) throw new InvalidConfigError(`${key}.${name}: unknown limit; known: ${Object.keys(CONNECTION_LIMIT_DEFAULTS).join(', ')}`)
    if (value == null) continue
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) throw new InvalidConfigError(`${key}.${name}: must be a positive integer, got ${String(value)}`)
  }
  const defined = Object.fromEntries(Object.entries(limits).filter(([, v]) => v != null))
  return { ...CONNECTION_LIMIT_DEFAULTS, ...defined }
}

/** Who the node trusts: its contacts and its configured relays. */
export interface TrustSource {
  isTrusted(peer: PeerId): boolean
  /** Refused outright for now (a peer that kept sending after being told to wait). @default nobody */
  isDenied?(peer: PeerId): boolean
}

/**
 * Protocols libp2p runs by itself on every connection: a connection that
 * carries only these is idle.
 */
const HOUSEKEEPING_PROTOCOLS = new Set([
  '/ipfs/id/1.0.0',
  '/ipfs/id/push/1.0.0',
  '/ipfs/ping/1.0.0',
  '/libp2p/autonat/1.0.0',
  '/libp2p/autonat/2/dial-request',
  '/libp2p/autonat/2/dial-back',
  '/libp2p/dcutr'
])

/** Whether a connection carries a stream of its own: one that is not libp2p's housekeeping. */
function carriesOwnStreams (connection: Connection): boolean {
  return connection.streams.some(s => s.protocol != null && s.protocol !== '' && !HOUSEKEEPING_PROTOCOLS.has(s.protocol))
}

/** The peer store tag that makes libp2p's pruner keep a trusted peer's connections. */
export const TRUSTED_TAG = 'parley-trusted'
/** How often the peer store is pruned (see `prunePeerStore`). */
const PRUNE_INTERVAL = 10 * 60_000
/** IPs penalized at once, at most (each entry expires with its penalty). */
const MAX_DENIED_IPS = 10_000
const TRUSTED_TAG_VALUE = 100
/** The tag expires unless renewed, so a peer no longer trusted loses it by itself. */
const TRUSTED_TAG_TTL = 10 * 60_000

/** Why an inbound connection was refused. */
export type InboundRefusal = 'denied' | 'per-peer' | 'per-ip' | 'per-subnet' | 'untrusted-total'

export interface RefusedConnection {
  peer: PeerId
  remoteAddr: Multiaddr
  reason: InboundRefusal
}

/** Why the guard closed a connection. */
export type TrimReason = 'idle' | 'upgraded'

export interface TrimmedConnection {
  connection: Connection
  reason: TrimReason
}

export interface ConnectionGuardEvents {
  /** An inbound connection was refused (it is closed right after). */
  'connection:refused': CustomEvent<RefusedConnection>
  /** A connection is being closed: an untrusted peer's, one to a DHT server or a relayed one gone idle, or a relayed one upgraded. */
  'connection:trimmed': CustomEvent<TrimmedConnection>
}

interface Inbound {
  peer: PeerId
  trusted: boolean
  groups?: AddressGroups
}

export interface ConnectionGuardComponents {
  connectionManager: ConnectionManager
  events: TypedEventTarget<Libp2pEvents>
  peerStore: PeerStore
  logger: ComponentLogger
}

export interface ConnectionGuardInit {
  limits?: ConnectionLimits
  /** @default nobody is trusted */
  trust?: TrustSource
  /**
   * The relays this node reserves on (peer IDs): trusted like contacts. The
   * node keeps the set in step (`trustRelay`, `distrustRelay`) as relays are
   * added and removed.
   *
   * @default none
   */
  relays?: Iterable<PeerId | string>
  /**
   * The DHT's protocols: an outbound connection to a peer that serves one is
   * closed once idle for `dhtIdleTimeout`.
   *
   * @default none: outbound connections are left to their peers
   */
  dhtProtocols?: string[]
}

/**
 * The guard: `gater` goes in libp2p's `connectionGater`, `service()` in its
 * services (it needs the connection manager and the peer store).
 */
export class ConnectionGuard extends TypedEventEmitter<ConnectionGuardEvents> implements Startable {
  readonly limits: Required<ConnectionLimits>
  readonly gater: ConnectionGater
  /** Refusals since start, by reason. */
  readonly refused: Record<InboundRefusal, number> = { denied: 0, 'per-peer': 0, 'per-ip': 0, 'per-subnet': 0, 'untrusted-total': 0 }
  private readonly trust: TrustSource
  private readonly dhtProtocols: Set<string>
  /** The relays this node reserves on, by peer ID. */
  private readonly relays = new Set<string>()
  /** Inbound connections from the moment they were let in (handshake still running, maybe) until they close. */
  private readonly inbound = new Map<MultiaddrConnection, Inbound>()
  /** When each inbound connection (by id) last carried a stream of its own. */
  private readonly lastActive = new Map<string, number>()
  /** When the sweep first found each direct connection (by id) usable, and found it so since. */
  private readonly usableSince = new Map<string, number>()
  /** When each trusted peer was last tagged. */
  private readonly tagged = new Map<string, number>()
  /** IPs (IPv6 /64s) whose untrusted peers are refused until then: one of them was abusive. */
  private readonly deniedIps = new Map<string, number>()
  private components?: ConnectionGuardComponents
  private log?: Logger
  private timer?: ReturnType<typeof setInterval>
  private pruneTimer?: ReturnType<typeof setInterval>
  private pruning?: Promise<number>

  constructor (init: ConnectionGuardInit = {}) {
    super()
    this.limits = resolveConnectionLimits(init.limits)
    this.trust = init.trust ?? { isTrusted: () => false }
    this.dhtProtocols = new Set(init.dhtProtocols ?? [])
    for (const relay of init.relays ?? []) this.relays.add(relay.toString())
    this.onOpen = this.onOpen.bind(this)
    this.onClose = this.onClose.bind(this)
    this.gater = {
      // the peer store's address filter: no address that leads to another peer
      filterMultiaddrForPeer: (peer, addr) => isAddressOf(peer, addr),
      denyInboundEncryptedConnection: (peer, maConn) => this.denyInbound(peer, maConn)
    }
  }

  readonly [Symbol.toStringTag] = 'parley:connection-guard'

  /** The libp2p service factory. */
  service (): (components: ConnectionGuardComponents) => ConnectionGuard {
    return (components) => {
      this.components = components
      this.log = components.logger.forComponent('parley:connection-guard')
      return this
    }
  }

  start (): void {
    this.components?.events.addEventListener('connection:open', this.onOpen)
    this.components?.events.addEventListener('connection:close', this.onClose)
    const shortest = Math.min(this.limits.idleTimeout, this.limits.relayedIdleTimeout, this.dhtProtocols.size > 0 ? this.limits.dhtIdleTimeout : Infinity)
    const interval = Math.max(50, Math.min(15_000, Math.floor(shortest / 4)))
    this.timer = setInterval(() => { this.sweep() }, interval)
    this.pruneTimer = setInterval(() => { this.prunePeerStore().catch(err => { this.log?.error('could not prune the peer store - %e', err) }) }, PRUNE_INTERVAL)
    this.pruneTimer.unref?.()
    this.timer.unref?.()
  }

  stop (): void {
    clearInterval(this.timer)
    clearInterval(this.pruneTimer)
    this.components?.events.removeEventListener('connection:open', this.onOpen)
    this.components?.events.removeEventListener('connection:close', this.onClose)
    this.inbound.clear()
    this.lastActive.clear()
    this.usableSince.clear()
    this.tagged.clear()
  }

  /** Trusts a relay this node now reserves on. */
  trustRelay (relay: PeerId | string): void {
    this.relays.add(relay.toString())
  }

  /**
   * A relay this node no longer reserves on is trusted no more (unless the
   * trust source trusts it otherwise): its tag goes now rather than when it
   * expires, so that the pruner may close its connections like a stranger's.
   */
  distrustRelay (relay: PeerId | string): void {
    const key = relay.toString()
    if (!this.relays.delete(key)) return
    let peer: PeerId
    try {
      peer = typeof relay === 'string' ? peerIdFromString(relay) : relay
    } catch {
      return
    }
    if (this.isTrusted(peer)) return
    this.tagged.delete(key)
    this.components?.peerStore.merge(peer, { tags: { [TRUSTED_TAG]: undefined } })
      .catch(err => { this.log?.error('could not untag %p - %e', peer, err) })
  }

  /** The relays trusted now, by peer ID. */
  trustedRelays (): string[] {
    return [...this.relays]
  }

  isTrusted (peer: PeerId): boolean {
    if (this.relays.has(peer.toString())) return true
    try {
      return this.trust.isTrusted(peer)
    } catch (err) {
      this.log?.error('trust check of %p failed - %e', peer, err)
      return false
    }
  }

  /** The limit an inbound connection of `peer` from `addr` would break, if any. */
  check (peer: PeerId, addr: Multiaddr, trusted = this.isTrusted(peer)): InboundRefusal | undefined {
    const groups = addressGroups(addr)
    let perPeer = 0
    let untrusted = 0
    let perIp = 0
    let perSubnet = 0
    for (const [maConn, entry] of this.inbound) {
      if (maConn.status === 'closed') {
        this.inbound.delete(maConn)
        continue
      }
      if (entry.peer.equals(peer)) perPeer++
      if (entry.trusted) continue
      untrusted++
      if (groups != null && entry.groups?.ip === groups.ip) perIp++
      if (groups != null && entry.groups?.subnet === groups.subnet) perSubnet++
    }
    if (perPeer >= this.limits.maxInboundPerPeer) return 'per-peer'
    if (trusted) return undefined
    if (untrusted >= this.limits.maxInboundUntrusted) return 'untrusted-total'
    if (perIp >= this.limits.maxInboundPerIp) return 'per-ip'
    if (perSubnet >= this.limits.maxInboundPerSubnet) return 'per-subnet'
    return undefined
  }

  /**
   * A peer reached from `addr` was abusive: untrusted peers from its IP (a
   * fresh identity costs an attacker nothing) are refused until `until`.
   * Relayed connections have no IP of their own and are left alone.
   */
  penalize (addr: Multiaddr, until: number): void {
    const ip = addressGroups(addr)?.ip
    if (ip == null) return
    const now = Date.now()
    for (const [key, end] of this.deniedIps) {
      if (end <= now) this.deniedIps.delete(key)
    }
    if (this.deniedIps.size >= MAX_DENIED_IPS) return
    this.deniedIps.set(ip, Math.max(until, this.deniedIps.get(ip) ?? 0))
  }

  private deniedIp (addr: Multiaddr): boolean {
    const ip = addressGroups(addr)?.ip
    return ip != null && (this.deniedIps.get(ip) ?? 0) > Date.now()
  }

  private denyInbound (peer: PeerId, maConn: MultiaddrConnection): boolean {
    const trusted = this.isTrusted(peer)
    const denied = this.trust.isDenied?.(peer) === true || (!trusted && this.deniedIp(maConn.remoteAddr))
    const refusal = denied ? 'denied' : this.check(peer, maConn.remoteAddr, trusted)
    if (refusal != null) {
      this.refused[refusal]++
      this.log?.('refusing a connection from %p at %a: %s limit', peer, maConn.remoteAddr, refusal)
      this.safeDispatchEvent('connection:refused', { detail: { peer, remoteAddr: maConn.remoteAddr, reason: refusal } })
      return true
    }
    this.inbound.set(maConn, { peer, trusted, groups: addressGroups(maConn.remoteAddr) })
    maConn.addEventListener('close', () => { this.inbound.delete(maConn) }, { once: true })
    return false
  }

  private onOpen (evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    if (this.isTrusted(connection.remotePeer)) this.tag(connection.remotePeer)
  }

  private onClose (evt: CustomEvent<Connection>): void {
    this.lastActive.delete(evt.detail.id)
    this.usableSince.delete(evt.detail.id)
  }

  /** Tags a trusted peer (again, once half the tag's life has passed). */
  private tag (peer: PeerId, now = Date.now()): void {
    const key = peer.toString()
    if (now - (this.tagged.get(key) ?? -Infinity) < TRUSTED_TAG_TTL / 2) return
    this.tagged.set(key, now)
    this.components?.peerStore.merge(peer, { tags: { [TRUSTED_TAG]: { value: TRUSTED_TAG_VALUE, ttl: TRUSTED_TAG_TTL } } })
      .catch(err => {
        this.tagged.delete(key)
        this.log?.error('could not tag %p - %e', peer, err)
      })
  }

  /**
   * Lets libp2p drop the peers it considers expired (it does so as it reads
   * them), then, if more than `maxStoredPeers` remain, forgets untrusted peers
   * that are not connected until that many are left. Resolves with how many
   * were forgotten.
   */
  async prunePeerStore (): Promise<number> {
    this.pruning ??= this.prune().finally(() => { this.pruning = undefined })
    return this.pruning
  }

  private async prune (): Promise<number> {
    const components = this.components
    if (components == null) return 0
    const connected = new Set(components.connectionManager.getConnections().map(c => c.remotePeer.toString()))
    let kept = 0
    const strangers: PeerId[] = []
    for (const peer of await components.peerStore.all()) {
      kept++
      if (!connected.has(peer.id.toString()) && !this.isTrusted(peer.id)) strangers.push(peer.id)
    }
    const excess = Math.min(strangers.length, kept - this.limits.maxStoredPeers)
    for (const peer of strangers.slice(0, Math.max(0, excess))) {
      await components.peerStore.delete(peer)
    }
    if (excess > 0) this.log?.('forgot %d strangers from the peer store (%d peers were kept)', excess, kept)
    return Math.max(0, excess)
  }

  /** Renews trust (contacts change), tags trusted peers, closes idle connections (see the class). */
  private sweep (): void {
    const connectionManager = this.components?.connectionManager
    if (connectionManager == null) return
    const now = Date.now()
    const trust = new Map<string, boolean>()
    const trusted = (peer: PeerId): boolean => {
      const key = peer.toString()
      let t = trust.get(key)
      if (t == null) {
        t = this.isTrusted(peer)
        trust.set(key, t)
      }
      return t
    }
    for (const [maConn, entry] of this.inbound) {
      if (maConn.status === 'closed') this.inbound.delete(maConn)
      else entry.trusted = trusted(entry.peer)
    }
    for (const key of this.tagged.keys()) {
      if (now - (this.tagged.get(key) ?? 0) >= TRUSTED_TAG_TTL) this.tagged.delete(key)
    }

    const connections = connectionManager.getConnections()
    // since when each peer has had a usable direct connection that opened after its relayed ones
    const directSince = new Map<string, { opened: number, usable: number }>()
    for (const connection of connections) {
      if (connectionPath(connection) !== 'direct') continue
      if (!isUsable(connection)) {
        // a WebRTC connection whose ICE is not connected (yet, or any more)
        this.usableSince.delete(connection.id)
        continue
      }
      const usable = this.usableSince.get(connection.id) ?? now
      this.usableSince.set(connection.id, usable)
      const key = connection.remotePeer.toString()
      const newest = directSince.get(key)
      if (newest == null || connection.timeline.open > newest.opened) directSince.set(key, { opened: connection.timeline.open, usable })
    }

    for (const connection of connections) {
      if (connection.status !== 'open') continue
      const relayed = connectionPath(connection) === 'relayed'
      const isTrusted = trusted(connection.remotePeer)
      if (isTrusted) this.tag(connection.remotePeer, now)
      if (!relayed && isTrusted) continue
      const inbound = connection.direction === 'inbound'
      if (!relayed && !inbound && this.dhtProtocols.size === 0) continue
      const last = carriesOwnStreams(connection) ? now : (this.lastActive.get(connection.id) ?? connection.timeline.open)
      this.lastActive.set(connection.id, last)
      if (relayed) {
        const direct = directSince.get(connection.remotePeer.toString())
        if (now - last >= this.limits.relayedIdleTimeout) {
          this.trim(connection, 'idle', now - last)
          continue
        }
        if (direct != null && direct.opened > connection.timeline.open && now - direct.usable >= this.limits.relayedIdleTimeout) {
          this.trim(connection, 'upgraded', now - direct.usable)
          continue
        }
      }
      if (isTrusted) continue
      if (inbound) {
        if (now - last >= this.limits.idleTimeout) this.trim(connection, 'idle', now - last)
      } else if (now - last >= this.limits.dhtIdleTimeout) {
        this.trimIfDhtServer(connection, now - last).catch(err => { this.log?.error('could not check the connection to %p - %e', connection.remotePeer, err) })
      }
    }
  }

  /** Closes an idle connection (idle for `ms`), or an upgraded one (a direct one usable for `ms`). */
  private trim (connection: Connection, reason: TrimReason, ms: number): void {
    this.lastActive.delete(connection.id)
    this.log?.('closing the %s connection with %p at %a: %s', connection.direction, connection.remotePeer, connection.remoteAddr,
      reason === 'idle' ? `idle for ${ms} ms` : `upgraded, a direct connection usable for ${ms} ms`)
    this.safeDispatchEvent('connection:trimmed', { detail: { connection, reason } })
    connection.close({ signal: AbortSignal.timeout(1_000) }).catch(err => { connection.abort(err) })
  }

  /** Closes an idle connection this node opened, if its peer is a DHT server (what the peer store holds of its protocols, from identify). */
  private async trimIfDhtServer (connection: Connection, idle: number): Promise<void> {
    const peer = await this.components?.peerStore.get(connection.remotePeer).catch(() => undefined)
    if (peer == null || !peer.protocols.some(p => this.dhtProtocols.has(p))) return
    // someone asked libp2p to keep this peer connected: it would be dialled straight back
    if ([...peer.tags.keys()].some(tag => tag.startsWith(KEEP_ALIVE))) return
    // still idle, and still not trusted, after the look-up
    if (connection.status !== 'open' || this.isTrusted(connection.remotePeer) || !this.lastActive.has(connection.id)) return
    if (carriesOwnStreams(connection)) return
    this.trim(connection, 'idle', idle)
  }
}
