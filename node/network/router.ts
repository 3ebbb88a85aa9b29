import { anySignal } from 'any-signal'
import { raceSignal } from 'race-signal'
import { CODE_WEBRTC } from '@multiformats/multiaddr'
import { systemClock, timeoutSignal } from '../../common/clock.js'
import { connectionPath } from '../../protocols/im/index.js'
import { PeerUnreachableError } from '../errors.js'
import { isUsable } from './paths.js'
import { rejoinDHT } from './dht-rejoin.js'
import { addressesOf } from './peer-addresses.js'
import type { NodeLibp2p } from './libp2p.js'
import type { Clock } from '../../common/clock.js'
import type { PeerRecordPublisher } from '../../protocols/peer-record/index.js'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { AbortOptions, ComponentLogger, Connection, Logger, PeerId, PeerRouting, PeerStore } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How long refilling an empty routing table (`rejoinDHT`) may take. */
const DHT_REJOIN_TIMEOUT = 10_000

/** How long one DHT query may take before the router moves on. */
const DHT_QUERY_TIMEOUT = 15_000

/**
 * How long the peer lookup runs alone before the peer record is asked for
 * too. Most peer lookups answer within it; asking for both every time doubled
 * the DHT work per first message and made first messages slower on a busy
 * network (BENCHMARKS.md, "Network at scale").
 */
export const DHT_RECORD_AFTER = 2_000

/** What the router uses of the libp2p node, and nothing more (see `routerComponents`). */
export interface RouterComponents {
  /** Open connections, to one peer or to all, as libp2p's `getConnections`. */
  getConnections: (peer?: PeerId) => Connection[]
  /** Dials the peer on one of `addrs`, as libp2p's `dial` (`force`: a new connection even if one is open). */
  dial: (addrs: Multiaddr[], options?: AbortOptions & { force?: boolean }) => Promise<Connection>
  peerStore: Pick<PeerStore, 'get' | 'merge'>
  peerRouting: Pick<PeerRouting, 'findPeer'>
  /** How many peers the DHT has to ask now (its routing table's size). */
  dhtPeers: () => number
  /** Fills an empty routing table again (`rejoinDHT`); how many peers it added. */
  rejoinDHT?: (options?: AbortOptions) => Promise<number>
  /** The peer's signed record in the DHT (its relay circuit addresses). */
  peerRecords: Pick<PeerRecordPublisher, 'lookup'>
  logger: ComponentLogger
  /** @default systemClock */
  clock?: Clock
}

/** The router's components, taken from the node's libp2p. */
export function routerComponents (libp2p: NodeLibp2p, bootstrap: Multiaddr[], dhtProtocol: string): RouterComponents {
  const routingTable = (libp2p.services.dht as SingleKadDHT).routingTable as SingleKadDHT['routingTable'] & { add?: (peer: PeerId, options?: AbortOptions) => Promise<void> }
  return {
    getConnections: (peer) => libp2p.getConnections(peer),
    dial: async (addrs, options) => libp2p.dial(addrs, options),
    peerStore: libp2p.peerStore,
    peerRouting: libp2p.peerRouting,
    dhtPeers: () => routingTable?.size ?? 0,
    rejoinDHT: async (options) => rejoinDHT({
      getConnections: () => libp2p.getConnections(),
      protocolsOf: async (peer) => (await libp2p.peerStore.get(peer)).protocols,
      dial: async (addr, dialOptions) => libp2p.dial(addr, dialOptions),
      // kad-dht's routing table has `add`, though its published type names only `size`
      addToRoutingTable: async (peer, addOptions) => { await routingTable?.add?.(peer, addOptions) },
      log: libp2p.logger.forComponent('parley:router')
    }, bootstrap, dhtProtocol, options),
    peerRecords: libp2p.services.peerRecords,
    logger: libp2p.logger
  }
}

/**
 * Turns a peer ID into a connection, trying in order: an open connection
 * (direct first), addresses in the peer store, then the DHT: a peer lookup and
 * the peer's signed record (which carries its relay circuit addresses), both
 * at once.
 *
 * Whatever the source, only addresses of the peer itself are dialled (see
 * `addressesOf`), and a connection is used for the peer only if its
 * authenticated remote peer is that peer: an address naming someone else,
 * from an invite or a hostile DHT server, must not turn the peer's messages
 * over to that someone.
 */
/** What one DHT lookup answered: addresses, or why it failed. */
type LookupAnswer = { source: string, addrs: Multiaddr[] } | { source: string, error: Error }

export class Router {
  private readonly log: Logger
  private readonly clock: Clock
  private rejoining?: Promise<void>

  constructor (private readonly components: RouterComponents) {
    this.log = components.logger.forComponent('parley:router')
    this.clock = components.clock ?? systemClock
  }

  /** The best open connection to the peer, direct before relayed. */
  openConnection (peer: PeerId): Connection | undefined {
    const open = this.components.getConnections(peer).filter(c => c.remotePeer.equals(peer) && isUsable(c))
    return open.find(c => connectionPath(c) === 'direct') ?? open[0]
  }

  async connect (peer: PeerId, options: AbortOptions = {}): Promise<Connection> {
    const existing = this.openConnection(peer)
    if (existing != null) {
      return existing
    }

    const errors: string[] = []
    const known = await this.components.peerStore.get(peer, options).then(p => addressesOf(peer, p.addresses.map(a => a.multiaddr)), () => [])
    if (known.length > 0) {
      try {
        return await this.dial(peer, known, options)
      } catch (err: any) {
        options.signal?.throwIfAborted()
        this.log('known addresses of %p failed - %e', peer, err)
        errors.push(`known addresses: ${err.message}`)
      }
    }

    // a DHT with nobody in the routing table has nobody to ask
    if (this.components.dhtPeers() === 0) {
      try {
        await raceSignal(this.rejoinDHT(), options.signal)
      } catch (err) {
        options.signal?.throwIfAborted()
        this.log('could not rejoin the DHT - %e', err)
      }
    }
    if (this.components.dhtPeers() === 0) {
      errors.push('DHT: no DHT peers to ask (is a bootstrap node or relay configured and reachable?)')
    } else {
      const connection = await this.lookUpAndDial(peer, known, errors, options)
      if (connection != null) return connection
    }

    throw new PeerUnreachableError(`no way to reach ${peer.toString()} (${errors.join('; ')}); check that the peer is online and that both nodes use a common relay or bootstrap node`)
  }

  /**
   * Refills an empty routing table, once for every connect waiting on it:
   * each queued message to a different peer would otherwise dial the
   * bootstrap peers again at the same time.
   */
  private async rejoinDHT (): Promise<void> {
    const rejoin = this.components.rejoinDHT
    if (rejoin == null) return
    this.rejoining ??= (async () => {
      const timeout = timeoutSignal(this.clock, DHT_REJOIN_TIMEOUT)
      try {
        this.log('the routing table is empty; rejoined the DHT with %d peers', await rejoin({ signal: timeout.signal }))
      } finally {
        timeout.clear()
        this.rejoining = undefined
      }
    })()
    return this.rejoining
  }

  /**
   * Asks the DHT for the peer (FIND_NODE), and for its signed peer record as
   * soon as the peer lookup has led nowhere or has run `DHT_RECORD_AFTER`
   * without an answer: a lookup that does not answer must not hold back one
   * that would. Both share `DHT_QUERY_TIMEOUT`. Each answer's new addresses
   * are dialled as it comes, and the first dial that reaches the peer ends the
   * other lookup. Undefined when neither reached the peer (`errors` says why).
   */
  private async lookUpAndDial (peer: PeerId, known: Multiaddr[], errors: string[], options: AbortOptions): Promise<Connection | undefined> {
    const done = new AbortController()
    const timeout = timeoutSignal(this.clock, DHT_QUERY_TIMEOUT)
    const signal = anySignal([options.signal, timeout.signal, done.signal])
    const started = this.clock.now()
    const record = Promise.withResolvers<void>()
    const askForRecord = (): void => { record.resolve() }
    const hedge = this.clock.setTimeout(askForRecord, DHT_RECORD_AFTER)
    const sources: Array<[string, (signal: AbortSignal) => Promise<Multiaddr[]>]> = [
      ['DHT peer lookup', async (signal) => (await this.components.peerRouting.findPeer(peer, { signal })).multiaddrs],
      ['DHT peer record', async (signal) => {
        await record.promise
        signal.throwIfAborted()
        return this.components.peerRecords.lookup(peer, { signal })
      }]
    ]
    const pending = new Map(sources.map(([source, lookup]) => [source, lookup(signal).then(
      (addrs): LookupAnswer => ({ source, addrs }),
      (error: Error): LookupAnswer => ({ source, error })
    )]))
    // what one answer led to is not dialled again for the other
    const tried = [...known]
    try {
      while (pending.size > 0) {
        const answer = await Promise.race(pending.values())
        pending.delete(answer.source)
        options.signal?.throwIfAborted()
        const connection = await this.dialAnswer(peer, answer, tried, errors, started, options)
        if (connection != null) return connection
        // this answer led nowhere: the record is worth asking for now
        askForRecord()
      }
      return undefined
    } finally {
      this.clock.clearTimeout(hedge)
      done.abort()
      // a record lookup not started yet sees the abort and ends
      askForRecord()
      signal.clear()
      timeout.clear()
    }
  }

  /**
   * Dials the new addresses in one lookup's answer; what it tried joins
   * `tried`, why it failed joins `errors`. The connection, or undefined.
   */
  private async dialAnswer (peer: PeerId, answer: LookupAnswer, tried: Multiaddr[], errors: string[], started: number, options: AbortOptions): Promise<Connection | undefined> {
    if ('error' in answer) {
      this.log('%s of %p failed after %d ms - %e', answer.source, peer, this.clock.now() - started, answer.error)
      errors.push(`${answer.source}: ${answer.error.message}`)
      return undefined
    }
    const addrs = addressesOf(peer, answer.addrs).filter(a => !tried.some(k => k.equals(a)))
    this.log('%s of %p: %d new addresses in %d ms', answer.source, peer, addrs.length, this.clock.now() - started)
    if (addrs.length === 0) {
      errors.push(`${answer.source}: no new addresses`)
      return undefined
    }
    tried.push(...addrs)
    try {
      const connection = await this.dial(peer, addrs, options)
      // kept once the peer answered on them: a lookup's answer that led
      // nowhere (or to someone else) stays out of the peer store
      await this.components.peerStore.merge(peer, { multiaddrs: addrs }).catch(err => { this.log('could not keep the addresses of %p - %e', peer, err) })
      return connection
    } catch (err: any) {
      options.signal?.throwIfAborted()
      this.log('addresses from %s of %p failed - %e', answer.source, peer, err)
      errors.push(`${answer.source}: ${err.message}`)
      return undefined
    }
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
    const before = new Set(this.components.getConnections().map(c => c.id))
    const started = this.clock.now()
    let connection = await this.components.dial(targets, options)
    if (connection.remotePeer.equals(peer) && !isUsable(connection)) {
      // libp2p handed back a connection it holds that carries nothing now (a
      // WebRTC one whose ICE is disconnected, after a network change): the
      // relayed one it superseded is gone, so a new one on these addresses
      this.log('the open connection to %p is not usable (%s): dialling a new one', peer, connection.remoteAddr)
      connection = await this.components.dial(targets, { ...options, force: true })
    }
    this.log('connected to %p in %d ms (%s)', peer, this.clock.now() - started, connection.remoteAddr)
    if (!connection.remotePeer.equals(peer)) {
      // cannot happen through libp2p's Noise check; if it ever does, the
      // connection is not the peer's and carries nothing of the peer's
      if (!before.has(connection.id)) connection.abort(new Error(`dialled ${peer.toString()} but ${connection.remotePeer.toString()} answered`))
      throw new PeerUnreachableError(`an address of ${peer.toString()} led to another peer (${connection.remotePeer.toString()}); it was not used`)
    }
    return connection
  }
}
