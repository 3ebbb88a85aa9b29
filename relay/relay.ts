import { autoNAT } from '@libp2p/autonat'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { identify, identifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { openDatastore } from '../common/datastore.js'
import { loadIdentity } from '../common/identity.js'
import { peerRecordSelectors, peerRecordValidators } from '../protocols/peer-record/index.js'
import { resolveRelayConfig } from './config.js'
import type { RelayConfig, ResolvedRelayConfig } from './config.js'
import type { CircuitRelayService } from '@libp2p/circuit-relay-v2'
import type { Identify } from '@libp2p/identify'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface RelayServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: unknown
  ping: Ping
  autoNAT: unknown
  dht: KadDHT
  relay: CircuitRelayService
}

export type RelayLibp2p = Libp2p<RelayServices>

/**
 * A public parley relay: circuit-relay-v2 server for nodes behind NAT, DHT
 * server (so it doubles as a bootstrap node and stores peer records), AutoNAT
 * server, identify and ping.
 */
export class ParleyRelay {
  readonly peerId: PeerId
  readonly config: ResolvedRelayConfig

  constructor (readonly libp2p: RelayLibp2p, config: ResolvedRelayConfig, private readonly closeDatastore: () => Promise<void>) {
    this.peerId = libp2p.peerId
    this.config = config
  }

  /** Full addresses (with /p2p/<id>) that nodes put in their `relays` config. */
  get multiaddrs (): Multiaddr[] {
    return this.libp2p.getMultiaddrs()
  }

  /** Peers holding a reservation on this relay now. */
  get reservations (): number {
    return this.libp2p.services.relay.reservations.size
  }

  async stop (): Promise<void> {
    await this.libp2p.stop()
    await this.closeDatastore()
  }
}

export async function createRelay (config: RelayConfig = {}): Promise<ParleyRelay> {
  const resolved = resolveRelayConfig(config)
  const privateKey = await loadIdentity(resolved.dataDir)
  const { datastore, close } = await openDatastore(resolved.dataDir)
  const { limits } = resolved
  try {
    const libp2p = await createLibp2p<RelayServices>({
      privateKey,
      datastore,
      addresses: {
        listen: resolved.listen,
        announce: resolved.announce
      },
      transports: [tcp(), webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: {
        maxConnections: limits.maxConnections,
        inboundConnectionThreshold: limits.inboundConnectionsPerSecond,
        maxIncomingPendingConnections: limits.maxPendingConnections
      },
      peerDiscovery: resolved.bootstrap.length > 0
        ? [bootstrap({ list: resolved.bootstrap.map(ma => ma.toString()), timeout: 0 })]
        : [],
      services: {
        identify: identify(),
        identifyPush: identifyPush(),
        ping: ping(),
        autoNAT: autoNAT(),
        dht: kadDHT({
          protocol: resolved.dhtProtocol,
          clientMode: false,
          peerInfoMapper: passthroughMapper,
          validators: peerRecordValidators,
          selectors: peerRecordSelectors
        }),
        relay: circuitRelayServer({
          maxInboundHopStreams: limits.maxInboundHopStreams,
          maxOutboundStopStreams: limits.maxOutboundStopStreams,
          reservations: {
            maxReservations: limits.maxReservations,
            reservationTtl: limits.reservationTtl,
            defaultDurationLimit: limits.circuitDuration,
            defaultDataLimit: BigInt(limits.circuitBytes)
          }
        })
      }
    })
    return new ParleyRelay(libp2p, resolved, close)
  } catch (err) {
    await close()
    throw err
  }
}
