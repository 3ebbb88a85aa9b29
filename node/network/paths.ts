import { CODE_P2P, CODE_P2P_CIRCUIT, CODE_WEBRTC, multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { backoff } from '../../common/backoff.js'
import { systemClock, timeoutSignal } from '../../common/clock.js'
import { connectionPath } from '../../protocols/im/index.js'
import type { NodeLibp2p } from './libp2p.js'
import type { BackoffInit } from '../../common/backoff.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { Path } from '../../protocols/im/index.js'
import type { AbortOptions, ComponentLogger, Connection, IdentifyResult, Libp2pEvents, Logger, PeerId, PeerStore, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The protocol a peer serves when it accepts WebRTC connections signalled over relays. */
const WEBRTC_SIGNALING = '/webrtc-signaling/0.0.1'

/** A WebRTC dial (signalling, ICE, DTLS) must complete within this time. */
const UPGRADE_TIMEOUT = 30_000

/** After a failed upgrade, try again after this long, doubling (2, 4, 8, 16 s until UPGRADE_MAX_FAILURES), never longer than UPGRADE_RETRY_MAX. */
const UPGRADE_RETRY_FIRST = 2_000
const UPGRADE_RETRY_MAX = 60_000
const UPGRADE_BACKOFF: BackoffInit = { first: UPGRADE_RETRY_FIRST, max: UPGRADE_RETRY_MAX, jitter: 'none' }

/**
 * After this many failed upgrades in a row (about 30 s of retries) the peer
 * stays relayed for as long as it stays connected: a NAT that breaks ICE (a
 * symmetric one, a router that answers unsolicited packets) breaks every
 * attempt alike, and each costs both sides STUN, ICE checks and signalling.
 * A new connection to the peer starts over.
 */
export const UPGRADE_MAX_FAILURES = 5

/** When a WebRTC connection closes, the relayed one is tried for an upgrade again after this long. */
const REUPGRADE_DELAY = 1_000

export interface PathChange {
  peer: string
  /** The best open path, or undefined when no connection is left. */
  path?: Path
  transport?: string
  remoteAddr?: string
}

export interface PathEvents {
  'path:change': CustomEvent<PathChange>
}

/** After this long without ICE connecting, a WebRTC connection is closed as dead. */
const ICE_DEADLINE = 20_000
/** How often a WebRTC connection's ICE state is looked at until it connects. */
const ICE_POLL_INTERVAL = 250

/** What the path upgrader uses of the libp2p node, and nothing more (see `pathUpgraderComponents`). */
export interface PathUpgraderComponents {
  /** Open connections to a peer, as libp2p's `getConnections`. */
  getConnections: (peer: PeerId) => Connection[]
  /** Dials the peer on one of `addrs`, as libp2p's `dial`. */
  dial: (addrs: Multiaddr[], options?: AbortOptions) => Promise<Connection>
  peerStore: Pick<PeerStore, 'get'>
  /** libp2p's events: the upgrader follows `peer:identify`, `connection:open` and `connection:close`. */
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
  /** @default systemClock */
  clock?: Clock
}

/** The path upgrader's components, taken from the node's libp2p. */
export function pathUpgraderComponents (libp2p: NodeLibp2p): PathUpgraderComponents {
  return {
    getConnections: (peer) => libp2p.getConnections(peer),
    dial: async (addrs, options) => libp2p.dial(addrs, options),
    peerStore: libp2p.peerStore,
    events: libp2p,
    logger: libp2p.logger
  }
}

/** The RTCPeerConnection under a WebRTC connection (node-datachannel's), if any. */
function peerConnectionOf (connection: Connection): { connectionState: string, selectedCandidatePair?(): any } | undefined {
  return (connection as any).maConn?.peerConnection
}

/**
 * Whether a connection can carry data. A WebRTC connection can exist while ICE
 * never connected (the dialling side gave up; js-libp2p #2646): it is not a path.
 */
export function isUsable (connection: Connection): boolean {
  if (connection.status !== 'open') return false
  const pc = peerConnectionOf(connection)
  return pc == null || pc.connectionState === 'connected'
}

/**
 * Where a connection's data goes, for people to read. A WebRTC connection's
 * remoteAddr is the relay circuit its offer was signalled over, not where its
 * data flows: that is the ICE pair's remote candidate.
 */
export function remoteAddrOf (connection: Connection): string {
  if (!connection.remoteAddr.getComponents().some(c => c.name === 'webrtc')) return connection.remoteAddr.toString()
  try {
    const remote = peerConnectionOf(connection)?.selectedCandidatePair?.()?.remote
    if (typeof remote?.address === 'string' && Number.isInteger(remote.port)) {
      return `/${remote.address.includes(':') ? 'ip6' : 'ip4'}/${remote.address}/udp/${Number(remote.port)}/webrtc`
    }
  } catch {}
  return 'webrtc (via relay signalling)'
}

/** A short name of the transport a connection runs on, for people to read. */
export function transportOf (connection: Connection): string {
  const names = connection.remoteAddr.getComponents().map(c => c.name)
  if (names.includes('webrtc')) {
    // through a TURN server the data is relayed after all, by the TURN server
    try {
      const pair = peerConnectionOf(connection)?.selectedCandidatePair?.()
      if (pair?.local?.type === 'relay' || pair?.remote?.type === 'relay') return 'webrtc-turn'
    } catch {}
    return 'webrtc'
  }
  if (names.includes('p2p-circuit')) return 'circuit-relay'
  if (names.includes('ws') || names.includes('wss')) return 'websockets'
  if (names.includes('tcp')) return 'tcp'
  return names.at(-1) ?? 'unknown'
}

/**
 * Watches the path to each peer and upgrades relayed connections: when this
 * node dialled a peer over a relay and the peer accepts WebRTC, it opens a
 * WebRTC connection (ICE hole punching, signalled over the relayed connection).
 * Later messages then take the direct path. DCUtR runs alongside for peers with
 * public TCP addresses.
 */
export class PathUpgrader extends TypedEventEmitter<PathEvents> {
  private readonly log: Logger
  private readonly clock: Clock
  /** The last path reported per connected peer, so that only changes are. */
  private readonly paths = new Map<string, Path>()
  /** Peers a WebRTC dial is under way to (each entry goes when its dial ends). */
  private readonly upgrading = new Set<string>()
  /** Failed upgrades in a row per peer, for the back-off and the cap; forgotten with the peer. */
  private readonly failures = new Map<string, number>()
  /** Open WebRTC connections whose ICE connected: closing one loses a path, closing any other was a failed upgrade. */
  private readonly iceConnected = new Set<string>()
  /** Pending timers per peer (upgrade retries, ICE checks), cancelled when the peer's last connection closes and at stop. */
  private readonly timers = new Map<string, Set<ClockTimer>>()
  private readonly controller = new AbortController()

  constructor (private readonly components: PathUpgraderComponents) {
    super()
    this.log = components.logger.forComponent('parley:paths')
    this.clock = components.clock ?? systemClock
    this.onIdentify = this.onIdentify.bind(this)
    this.onConnectionChange = this.onConnectionChange.bind(this)
  }

  start (): void {
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    this.components.events.addEventListener('connection:open', this.onConnectionChange)
    this.components.events.addEventListener('connection:close', this.onConnectionChange)
  }

  stop (): void {
    this.controller.abort()
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    this.components.events.removeEventListener('connection:open', this.onConnectionChange)
    this.components.events.removeEventListener('connection:close', this.onConnectionChange)
    for (const peer of [...this.timers.keys()]) this.forget(peer)
    this.paths.clear()
    this.failures.clear()
    this.iceConnected.clear()
  }

  /** The best open path to a peer, if connected. */
  pathTo (peer: PeerId): Path | undefined {
    const open = this.components.getConnections(peer).filter(isUsable)
    if (open.length === 0) return undefined
    return open.some(c => connectionPath(c) === 'direct') ? 'direct' : 'relayed'
  }

  private onConnectionChange (evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    const peer = connection.remotePeer
    const key = peer.toString()
    const pc = peerConnectionOf(connection)
    if (evt.type === 'connection:close' && !this.components.getConnections(peer).some(c => c.id !== connection.id)) {
      // a long-running node meets many peers: what it kept about one goes with its last connection
      this.forget(key)
    }
    if (evt.type === 'connection:open' && pc != null && pc.connectionState !== 'connected') {
      // counted once ICE connects; closed if it never does
      this.watchIce(connection)
    }
    if (evt.type === 'connection:open' && pc != null && pc.connectionState === 'connected') {
      // only a connected ICE proves the network lets the peers through
      this.iceConnected.add(connection.id)
      this.failures.delete(key)
    }
    if (evt.type === 'connection:close' && pc != null) {
      if (this.iceConnected.delete(connection.id)) {
        // the direct path went away: if a relayed one is still open (the
        // connection guard closes it once the direct one has carried the
        // conversation for a while; a hang-up closes both), try to get the
        // direct one back over it. Otherwise the next message dials again
        this.schedule(key, () => { this.retryUpgrade(peer) }, REUPGRADE_DELAY)
      } else if (connection.direction === 'outbound' && this.components.getConnections(peer).some(c => c.id !== connection.id)) {
        // our upgrade's connection opened but ICE never connected: a failed upgrade like any other
        this.upgradeFailed(peer, new Error('ICE never connected'))
      }
    }
    const path = this.pathTo(peer)
    if (this.paths.get(key) === path) return
    if (path == null) this.paths.delete(key)
    else this.paths.set(key, path)
    const best = this.components.getConnections(peer).find(c => isUsable(c) && connectionPath(c) === path)
    this.dispatchEvent(new CustomEvent<PathChange>('path:change', {
      detail: {
        peer: key,
        path,
        transport: best == null ? undefined : transportOf(best),
        remoteAddr: best?.remoteAddr.toString()
      }
    }))
  }

  /** Runs `fn` after `ms` unless the peer is forgotten (or the upgrader stopped) first. */
  private schedule (peer: string, fn: () => void, ms: number): void {
    const timers = this.timers.get(peer) ?? new Set<ClockTimer>()
    this.timers.set(peer, timers)
    const timer = this.clock.setTimeout(() => {
      timers.delete(timer)
      if (timers.size === 0 && this.timers.get(peer) === timers) this.timers.delete(peer)
      fn()
    }, ms)
    timers.add(timer)
  }

  /**
   * Drops the retries and back-off kept for a peer. Its last reported path
   * goes when the disconnection is reported; an upgrade under way ends by itself.
   */
  private forget (peer: string): void {
    for (const timer of this.timers.get(peer) ?? []) this.clock.clearTimeout(timer)
    this.timers.delete(peer)
    this.failures.delete(peer)
  }

  private watchIce (connection: Connection): void {
    const pc = peerConnectionOf(connection) as any
    const key = connection.remotePeer.toString()
    const started = this.clock.now()
    const check = (): void => {
      if (connection.status !== 'open') return
      if (pc.connectionState === 'connected') {
        this.onConnectionChange(new CustomEvent('connection:open', { detail: connection }))
        return
      }
      if (this.clock.now() - started > ICE_DEADLINE) {
        this.log('closing WebRTC connection to %p: ICE never connected', connection.remotePeer)
        connection.abort(new Error('ICE did not connect'))
        return
      }
      this.schedule(key, check, ICE_POLL_INTERVAL)
    }
    this.schedule(key, check, ICE_POLL_INTERVAL)
  }

  private retryUpgrade (peer: PeerId): void {
    if (this.controller.signal.aborted || this.pathTo(peer) === 'direct') return
    const relayed = this.components.getConnections(peer).find(c => isUsable(c) && connectionPath(c) === 'relayed' && c.direction === 'outbound')
    if (relayed == null) return
    this.components.peerStore.get(peer)
      .then(async p => { await this.upgrade(peer, relayed, p.addresses.map(a => a.multiaddr)) })
      .catch(() => {})
  }

  private onIdentify (evt: CustomEvent<IdentifyResult>): void {
    const { peerId, protocols, listenAddrs, connection } = evt.detail
    if (connectionPath(connection) !== 'relayed' || connection.direction !== 'outbound') return
    // a peer that does not listen on /webrtc has not asked for WebRTC connections
    const announcesWebRTC = listenAddrs.some(a => a.getComponents().some(c => c.code === CODE_WEBRTC))
    if (!protocols.includes(WEBRTC_SIGNALING) || !announcesWebRTC) return
    this.upgrade(peerId, connection, listenAddrs).catch(() => {})
  }

  private async upgrade (peer: PeerId, relayed: Connection, listenAddrs: Multiaddr[]): Promise<void> {
    const key = peer.toString()
    if (this.upgrading.has(key) || this.pathTo(peer) === 'direct' || (this.failures.get(key) ?? 0) >= UPGRADE_MAX_FAILURES) {
      return
    }
    this.upgrading.add(key)
    const started = this.clock.now()
    const timeout = timeoutSignal(this.clock, UPGRADE_TIMEOUT)
    try {
      const targets = webrtcAddresses(peer, relayed, listenAddrs)
      this.log('upgrading %p to WebRTC via %s', peer, targets[0]?.toString())
      const signal = AbortSignal.any([this.controller.signal, timeout.signal])
      await this.components.dial(targets, { signal })
      // the failures are forgotten once ICE connects (connection:open), not here: the dial may end before it does
      this.log('upgraded %p to a direct WebRTC connection in %d ms', peer, this.clock.now() - started)
    } catch (err: any) {
      if (this.controller.signal.aborted) return
      if (this.components.getConnections(peer).length === 0) {
        // its last connection closed meanwhile: nothing left to upgrade, nothing to keep
        this.forget(key)
        this.log('WebRTC upgrade to %p failed, and the peer is gone - %e', peer, err)
        return
      }
      this.upgradeFailed(peer, err)
    } finally {
      timeout.clear()
      this.upgrading.delete(key)
    }
  }

  /**
   * ICE may fail for a while (a busy machine, a NAT mapping not yet open): try
   * again with back-off, up to UPGRADE_MAX_FAILURES attempts in a row.
   */
  private upgradeFailed (peer: PeerId, err: unknown): void {
    const key = peer.toString()
    const failures = (this.failures.get(key) ?? 0) + 1
    this.failures.set(key, failures)
    if (failures >= UPGRADE_MAX_FAILURES) {
      this.log('WebRTC upgrade to %p failed %d times in a row, giving up: staying relayed while connected - %e', peer, failures, err)
      return
    }
    const delay = backoff(failures, UPGRADE_BACKOFF)
    this.log('WebRTC upgrade to %p failed, staying relayed, trying again in %d ms - %e', peer, delay, err)
    this.schedule(key, () => { this.retryUpgrade(peer) }, delay)
  }
}

/**
 * WebRTC addresses of the peer: those it announced, the ones through the relay
 * we reached it by first, or else one built from the relayed connection.
 */
function webrtcAddresses (peer: PeerId, relayed: Connection, listenAddrs: Multiaddr[]): Multiaddr[] {
  const announced = listenAddrs.filter(a => a.getComponents().some(c => c.code === CODE_WEBRTC))
  const components = relayed.remoteAddr.getComponents()
  const circuit = components.findIndex(c => c.code === CODE_P2P_CIRCUIT)
  const relayPart = multiaddr(components.slice(0, circuit).map(c => `/${c.name}${c.value != null ? `/${c.value}` : ''}`).join(''))
  const viaSameRelay = announced.filter(a => a.toString().startsWith(relayPart.toString()))
  const built = relayPart.encapsulate(`/p2p-circuit/webrtc/p2p/${peer.toString()}`)
  const ordered = [...viaSameRelay, built, ...announced.filter(a => !viaSameRelay.includes(a))]
  const seen = new Set<string>()
  return ordered
    .map(a => a.getComponents().at(-1)?.code === CODE_P2P ? a : a.encapsulate(`/p2p/${peer.toString()}`))
    .filter(a => !seen.has(a.toString()) && seen.add(a.toString()) != null)
}
