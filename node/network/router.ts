import { anySignal } from 'any-signal'
import { CODE_WEBRTC } from '@multiformats/multiaddr'
import { connectionPath } from '../../protocols/im/index.js'
import { PeerUnreachableError } from '../errors.js'
import { isUsable } from './paths.js'
import { addressesOf } from './peer-addresses.js'
import type { NodeLibp2p } from './libp2p.js'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { AbortOptions, Connection, Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How long one DHT query may take before the router moves on. */
const DHT_QUERY_TIMEOUT = 15_000

/**
 * Turns a peer ID into a connection, trying in order: an open connection
 * (direct first), addresses in the peer store, a DHT peer lookup, and the peer's
 * signed record in the DHT (which carries its relay circuit addresses).
 *
 * Whatever the source, only addresses of the peer itself are dialled (see
 * `addressesOf`), and a connection is used for the peer only if its
 * authenticated remote peer is that peer: an address naming someone else,
 * from an invite or a hostile DHT server, must not turn the peer's messages
 * over to that someone.
 */
export class Router {
  constructor (private readonly libp2p: NodeLibp2p, private readonly log: Logger) {}

  /** The best open connection to the peer, direct before relayed. */
  openConnection (peer: PeerId): Connection | undefined {
    const open = this.libp2p.getConnections(peer).filter(c => c.remotePeer.equals(peer) && isUsable(c))
    return open.find(c => connectionPath(c) === 'direct') ?? open[0]
  }

  async connect (peer: PeerId, options: AbortOptions = {}): Promise<Connection> {
    const existing = this.openConnection(peer)
    if (existing != null) {
      return existing
    }

    const errors: string[] = []
    const known = await this.libp2p.peerStore.get(peer, options).then(p => addressesOf(peer, p.addresses.map(a => a.multiaddr)), () => [])
    if (known.length > 0) {
      try {
        return await this.dial(peer, known, options)
      } catch (err: any) {
        options.signal?.throwIfAborted()
        errors.push(`known addresses: ${err.message}`)
      }
    }

    // a DHT with nobody in the routing table has nobody to ask
    const dhtPeers = (this.libp2p.services.dht as SingleKadDHT).routingTable?.size ?? 0
    if (dhtPeers === 0) {
      errors.push('DHT: no DHT peers to ask (is a bootstrap node or relay configured and reachable?)')
    }

    for (const [source, lookup] of dhtPeers === 0
      ? []
      : [
          ['DHT peer lookup', async (signal: AbortSignal) => (await this.libp2p.peerRouting.findPeer(peer, { signal })).multiaddrs],
          ['DHT peer record', async (signal: AbortSignal) => this.libp2p.services.peerRecords.lookup(peer, { signal })]
        ] as const) {
      const signal = anySignal([options.signal, AbortSignal.timeout(DHT_QUERY_TIMEOUT)])
      try {
        const addrs = addressesOf(peer, await lookup(signal)).filter(a => !known.some(k => k.equals(a)))
        if (addrs.length === 0) {
          errors.push(`${source}: no new addresses`)
          continue
        }
        const connection = await this.dial(peer, addrs, options)
        // kept once the peer answered on them: a lookup's answer that led
        // nowhere (or to someone else) stays out of the peer store
        await this.libp2p.peerStore.merge(peer, { multiaddrs: addrs }).catch(err => { this.log('could not keep the addresses of %p - %e', peer, err) })
        return connection
      } catch (err: any) {
        options.signal?.throwIfAborted()
        errors.push(`${source}: ${err.message}`)
      } finally {
        signal.clear()
      }
    }

    throw new PeerUnreachableError(`no way to reach ${peer.toString()} (${errors.join('; ')}); check that the peer is online and that both nodes use a common relay or bootstrap node`)
  }

  /**
   * Dials the peer on `addrs` (addresses of the peer, as `addressesOf` gives
   * them). WebRTC addresses are left out when others exist: a WebRTC
   * dial waits for ICE, while a relayed connection carries the message at once;
   * the path upgrader then moves the conversation to WebRTC in the background.
   */
  private async dial (peer: PeerId, addrs: Multiaddr[], options: AbortOptions): Promise<Connection> {
    const isWebRTC = (a: Multiaddr): boolean => a.getComponents().some(c => c.code === CODE_WEBRTC)
    const fast = addrs.filter(a => !isWebRTC(a))
    const targets = fast.length > 0 ? fast : addrs
    this.log('dialling %p on %d addresses', peer, targets.length)
    const before = new Set(this.libp2p.getConnections().map(c => c.id))
    const connection = await this.libp2p.dial(targets, options)
    if (!connection.remotePeer.equals(peer)) {
      // cannot happen through libp2p's Noise check; if it ever does, the
      // connection is not the peer's and carries nothing of the peer's
      if (!before.has(connection.id)) connection.abort(new Error(`dialled ${peer.toString()} but ${connection.remotePeer.toString()} answered`))
      throw new PeerUnreachableError(`an address of ${peer.toString()} led to another peer (${connection.remotePeer.toString()}); it was not used`)
    }
    return connection
  }
}
