/**
 * Signed peer records in the DHT, so that a node behind NAT (absent from other
 * nodes' routing tables) can still be found by peer ID.
 *
 * Each node publishes libp2p's signed `PeerRecord` envelope, holding its current
 * addresses (relay circuit addresses included), under `/parley-peer/<peer id>`.
 * DHT servers accept a record only if the envelope is signed by the peer the key
 * names and its sequence number (the signing time, ms) is within the validity
 * period, and never replace the record they hold with one of a lower or equal
 * sequence number. The contract is README.md in this directory.
 */
import { PeerRecordService } from './service.js'
import type { AbortOptions, ComponentLogger, ContentRouting, Libp2pEvents, PeerId, PrivateKey, TypedEventTarget } from '@libp2p/interface'
import type { AddressManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

export { peerRecordKey, peerRecordSelectors, peerRecordValidators, validatePeerRecord, selectPeerRecord, PEER_RECORD_NAMESPACE, PEER_RECORD_VALIDITY, PEER_RECORD_MAX_CLOCK_SKEW, InvalidPeerRecordError } from './record.js'
export { guardRecordStore, StaleRecordError } from './store.js'
export type { RecordStoreGuardInit } from './store.js'

export interface PeerRecordInit {
  /**
   * Republish at least this often, in ms, even when addresses do not change.
   *
   * @default 600000
   */
  republishInterval?: number

  /**
   * Wait this long after an address change before publishing, in ms, so that a
   * burst of changes makes one record.
   *
   * @default 1000
   */
  publishDelay?: number

  /**
   * First retry delay after a failed publish, in ms; doubles up to `republishInterval`.
   *
   * @default 2000
   */
  retryDelay?: number
}

export interface PeerRecordComponents {
  peerId: PeerId
  privateKey: PrivateKey
  addressManager: AddressManager
  contentRouting: ContentRouting
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface PeerRecordPublisher {
  /** Publishes the node's current addresses now. */
  publish(options?: AbortOptions): Promise<void>

  /** The addresses a peer published for itself, verified; empty when none is found. */
  lookup(peerId: PeerId, options?: AbortOptions): Promise<Multiaddr[]>

  /** When the last publish succeeded (ms since epoch), if ever. */
  readonly lastPublished?: number
}

export function peerRecords (init: PeerRecordInit = {}): (components: PeerRecordComponents) => PeerRecordPublisher {
  return (components) => new PeerRecordService(components, init)
}
