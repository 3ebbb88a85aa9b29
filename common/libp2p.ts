/** libp2p pieces the node and the relay assemble alike. */
import { bootstrap } from '@libp2p/bootstrap'
import { identify, identifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { yamux } from '@libp2p/yamux'
import { hearing } from './heartbeat.js'
import { mailboxRecordSelectors, mailboxRecordValidators } from '../protocols/mailbox/record.js'
import { guardRecordStore, peerRecordSelectors, peerRecordValidators } from '../protocols/peer-record/index.js'
import { KEEP_ALIVE } from '@libp2p/interface'
import type { PeerDiscovery, PeerStore } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Bootstrap discovery through `list`, or none for an empty list (bootstrap refuses one). */
export function bootstrapDiscovery (list: Multiaddr[]): Array<(components: any) => PeerDiscovery> {
  return list.length > 0 ? [bootstrap({ list: list.map(ma => ma.toString()), timeout: 0 })] : []
}

/** identify, identify push and ping, as every parley peer serves them. */
export function basicServices (): { identify: ReturnType<typeof identify>, identifyPush: ReturnType<typeof identifyPush>, ping: ReturnType<typeof ping> } {
  return {
    identify: identify(),
    identifyPush: identifyPush(),
    ping: ping({
      // the connection monitor's heartbeat pings over this protocol; under load a
      // heartbeat can start before the last one's stream is gone, and the default
      // of one stream per connection then aborts a healthy connection
      maxOutboundStreams: 4,
      maxInboundStreams: 4
    })
  }
}

/**
 * yamux without its keep-alive: that pings every connection every 30 s from
 * both ends and acts on no answer; parley's heartbeat (./heartbeat.ts) pings
 * through the same muxer and aborts a connection that does not answer, so the
 * keep-alive would only add a wake-up per connection at each end. Its muxers
 * note when their connection last received anything (`hearing`), so that the
 * heartbeat pings only connections that went silent.
 */
export function parleyMuxer (): ReturnType<typeof yamux> {
  return hearing(yamux({ enableKeepAlive: false }))
}

/** The signed records parley's DHT stores, by namespace: peer records and mailbox records, under the same rules. */
const recordValidators = { ...peerRecordValidators, ...mailboxRecordValidators }
const recordSelectors = { ...peerRecordSelectors, ...mailboxRecordSelectors }

/** Where kad-dht keeps its data in the libp2p datastore (its default, named). */
const DHT_DATASTORE_PREFIX = '/dht'

/**
 * parley's DHT: its own protocol id, parley peer and mailbox records accepted
 * (validated and selected), and every address kept. parley's DHT is its own network;
 * peers on one LAN (or loopback) should find each other's private addresses too.
 *
 * kad-dht stores whatever validly signed record a PUT_VALUE brings, over the one
 * it holds; it sees the datastore through a guard that refuses a record the
 * selector ranks below (or level with) the held one, and hides expired ones.
 */
export function parleyDHT (protocol: string, clientMode: boolean): ReturnType<typeof kadDHT> {
  const dht = kadDHT({
    protocol,
    clientMode,
    peerInfoMapper: passthroughMapper,
    // every lookup waits for the first self-query, which kad-dht otherwise
    // starts 1 s after start: a message sent by a node just started sat that out
    initialQuerySelfInterval: 0,
    datastorePrefix: DHT_DATASTORE_PREFIX,
    validators: recordValidators,
    selectors: recordSelectors
  })
  return (components) => {
    const datastore = guardRecordStore(components.datastore, {
      prefix: `${DHT_DATASTORE_PREFIX}/record`,
      validators: recordValidators,
      selectors: recordSelectors
    })
    // kad-dht tags its 20 closest peers KEEP_ALIVE, so that libp2p dials each
    // again as soon as its connection closes: a DHT server closes a client's
    // idle connection after a minute, and the client dialled it straight back
    // (a Noise handshake and identify per server per minute, and a heartbeat
    // on each connection meanwhile). A node in client mode asks the DHT only
    // when it needs an answer and dials the servers then: its view of the
    // peer store lets the tag through only while the node serves the DHT
    const peerStore = withoutKeepAlive(components.peerStore, () => instance.getMode() === 'client')
    // libp2p's components object resolves each name on access; kad-dht reads
    // `components.datastore` on every use, so this view hands it the guard
    const instance = dht(new Proxy(components, {
      get: (target, prop) => prop === 'datastore' ? datastore : prop === 'peerStore' ? peerStore : Reflect.get(target, prop, target)
    }))
    return instance
  }
}

/** `peerStore`, whose `merge` drops KEEP_ALIVE tags while `drop()` says so. */
export function withoutKeepAlive (peerStore: PeerStore, drop: () => boolean): PeerStore {
  const merge: PeerStore['merge'] = async (peer, data, options) => {
    if (data.tags == null || !drop()) return peerStore.merge(peer, data, options)
    const tags = Object.fromEntries(Object.entries(data.tags).filter(([name]) => !name.startsWith(KEEP_ALIVE)))
    return peerStore.merge(peer, { ...data, tags }, options)
  }
  return new Proxy(peerStore, {
    get: (target, prop) => prop === 'merge' ? merge : Reflect.get(target, prop, target)
  })
}
