import { CODE_P2P, CODE_P2P_CIRCUIT, CODE_WEBRTC, multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { connectionPath } from '../../protocols/im/index.js'
import type { NodeLibp2p } from './libp2p.js'
import type { Path } from '../../protocols/im/index.js'
import type { Connection, IdentifyResult, Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The protocol a peer serves when it accepts WebRTC connections signalled over relays. */
const WEBRTC_SIGNALING = '/webrtc-signaling/0.0.1'

/** A WebRTC dial (signalling, ICE, DTLS) must complete within this time. */
const UPGRADE_TIMEOUT = 30_000

/** After a failed upgrade, try again after this long, doubling up to UPGRADE_RETRY_MAX. */
const UPGRADE_RETRY_FIRST = 2_000
const UPGRADE_RETRY_MAX = 60_000

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
  private readonly paths = new Map<string, Path>()
  private readonly upgrading = new Set<string>()
  private readonly failures = new Map<string, number>()
  private readonly controller = new AbortController()

  constructor (private readonly libp2p: NodeLibp2p, private readonly log: Logger) {
    super()
    this.onIdentify = this.onIdentify.bind(this)
    this.onConnectionChange = this.onConnectionChange.bind(this)
  }

  start (): void {
    this.libp2p.addEventListener('peer:identify', this.onIdentify)
    this.libp2p.addEventListener('connection:open', this.onConnectionChange)
    this.libp2p.addEventListener('connection:close', this.onConnectionChange)
  }

  stop (): void {
    this.controller.abort()
    this.libp2p.removeEventListener('peer:identify', this.onIdentify)
    this.libp2p.removeEventListener('connection:open', this.onConnectionChange)
    this.libp2p.removeEventListener('connection:close', this.onConnectionChange)
  }

  /** The best open path to a peer, if connected. */
  pathTo (peer: PeerId): Path | undefined {
    const open = this.libp2p.getConnections(peer).filter(isUsable)
    if (open.length === 0) return undefined
    return open.some(c => connectionPath(c) === 'direct') ? 'direct' : 'relayed'
  }

  private onConnectionChange (evt: CustomEvent<Connection>): void {
    const connection = evt.detail
    const peer = connection.remotePeer
    const pc = peerConnectionOf(connection)
    if (evt.type === 'connection:open' && pc != null && pc.connectionState !== 'connected') {
      // counted once ICE connects; closed if it never does
      this.watchIce(connection)
    }
    if (evt.type === 'connection:close' && pc != null) {
      // the direct path went away: if the relayed one stays (a hang-up closes
      // both), try to get the direct one back
      setTimeout(() => { this.retryUpgrade(peer) }, 1_000).unref?.()
    }
    const path = this.pathTo(peer)
    const key = peer.toString()
    if (this.paths.get(key) === path) return
    if (path == null) this.paths.delete(key)
    else this.paths.set(key, path)
    const best = this.libp2p.getConnections(peer).find(c => isUsable(c) && connectionPath(c) === path)
    this.dispatchEvent(new CustomEvent<PathChange>('path:change', {
      detail: {
        peer: key,
        path,
        transport: best == null ? undefined : transportOf(best),
        remoteAddr: best?.remoteAddr.toString()
      }
    }))
  }

  private watchIce (connection: Connection): void {
    const pc = peerConnectionOf(connection) as any
    const started = Date.now()
    const check = (): void => {
      if (connection.status !== 'open') return
      if (pc.connectionState === 'connected') {
        this.onConnectionChange(new CustomEvent('connection:open', { detail: connection }))
        return
      }
      if (Date.now() - started > ICE_DEADLINE) {
        this.log('closing WebRTC connection to %p: ICE never connected', connection.remotePeer)
        connection.abort(new Error('ICE did not connect'))
        return
      }
      setTimeout(check, 250).unref?.()
    }
    setTimeout(check, 250).unref?.()
  }

  private retryUpgrade (peer: PeerId): void {
    if (this.controller.signal.aborted || this.pathTo(peer) === 'direct') return
    const relayed = this.libp2p.getConnections(peer).find(c => isUsable(c) && connectionPath(c) === 'relayed' && c.direction === 'outbound')
    if (relayed == null) return
    this.libp2p.peerStore.get(peer)
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
    if (this.upgrading.has(key) || this.pathTo(peer) === 'direct') {
      return
    }
    this.upgrading.add(key)
    const started = Date.now()
    try {
      const targets = webrtcAddresses(peer, relayed, listenAddrs)
      this.log('upgrading %p to WebRTC via %s', peer, targets[0]?.toString())
      const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(UPGRADE_TIMEOUT)])
      await this.libp2p.dial(targets, { signal })
      this.failures.delete(key)
      this.log('upgraded %p to a direct WebRTC connection in %d ms', peer, Date.now() - started)
    } catch (err: any) {
      // ICE may fail for a while (a busy machine, a NAT mapping not yet open):
      // try again with back-off for as long as the relayed connection lasts
      const failures = (this.failures.get(key) ?? 0) + 1
      this.failures.set(key, failures)
      const delay = Math.min(UPGRADE_RETRY_MAX, UPGRADE_RETRY_FIRST * 2 ** (failures - 1))
      this.log('WebRTC upgrade to %p failed, staying relayed, trying again in %d ms - %e', peer, delay, err)
      if (!this.controller.signal.aborted) setTimeout(() => { this.retryUpgrade(peer) }, delay).unref?.()
    } finally {
      this.upgrading.delete(key)
    }
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
