/** libp2p pieces the node and the relay assemble alike. */
import { bootstrap } from '@libp2p/bootstrap'
import { identify, identifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { peerRecordSelectors, peerRecordValidators } from '../protocols/peer-record/index.js'
import type { PeerDiscovery } from '@libp2p/interface'
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
 * parley's DHT: its own protocol id, parley peer records accepted (validated
 * and selected), and every address kept. parley's DHT is its own network;
 * peers on one LAN (or loopback) should find each other's private addresses too.
 */
export function parleyDHT (protocol: string, clientMode: boolean): ReturnType<typeof kadDHT> {
  return kadDHT({
    protocol,
    clientMode,
    peerInfoMapper: passthroughMapper,
    // every lookup waits for the first self-query, which kad-dht otherwise
    // starts 1 s after start: a message sent by a node just started sat that out
    initialQuerySelfInterval: 0,
    validators: peerRecordValidators,
    selectors: peerRecordSelectors
  })
}
