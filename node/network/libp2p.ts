import { basicServices, bootstrapDiscovery, parleyDHT, parleyMuxer } from '../../common/libp2p.js'
import { heartbeat } from '../../common/heartbeat.js'
import type { Heartbeat } from '../../common/heartbeat.js'
import { autoNAT } from '@libp2p/autonat'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { FaultTolerance } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'
import { peerRecords } from '../../protocols/peer-record/index.js'
import { im } from '../../protocols/im/index.js'
import { parleyAddressSorter } from './address-sorter.js'
import { ConnectionGuard } from './connection-guard.js'
import { MAX_RELAYS, reservationKeeper } from './reservations.js'
import { relayPeerOf } from '../../common/relay-link.js'
import { endWebRTCWithLastNode, guardWebRTCListenerLeak } from './webrtc-leak-guard.js'
import { stalePaths } from './stale-paths.js'
import type { StalePaths } from './stale-paths.js'
import type { TrustSource } from './connection-guard.js'
import type { ReservationKeeper, ReservationKeeperComponents } from './reservations.js'
import type { ResolvedNodeConfig } from '../config.js'
import { fileServer } from '../../protocols/file/index.js'
import type { FileServer, FileServerInit } from '../../protocols/file/index.js'
import type { ImInit, ImService } from '../../protocols/im/index.js'
import type { PeerRecordPublisher } from '../../protocols/peer-record/index.js'
import type { Identify } from '@libp2p/identify'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { ComponentLogger, Libp2p, PrivateKey } from '@libp2p/interface'
import type { Datastore } from 'interface-datastore'

export interface NodeServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: unknown
  ping: Ping
  dcutr: unknown
  autoNAT: unknown
  dht: KadDHT
  im: ImService
  peerRecords: PeerRecordPublisher
  reservations: ReservationKeeper
  connectionGuard: ConnectionGuard
  file: FileServer
  stalePaths: StalePaths
  heartbeat: Heartbeat
}

export type NodeLibp2p = Libp2p<NodeServices>

/** What the node hands its libp2p: the /im callbacks, and who it trusts. */
export type NodeHandlers = Pick<ImInit, 'store' | 'admit' | 'onRefused'> & {
  /**
   * Contacts (the relays the node reserves on are trusted by the guard itself): never refused for their IP address, their
   * idle connections kept, their connections pruned last.
   *
   * @default nobody
   */
  trust?: TrustSource
  /** What the /parley/file/1.0.0 server serves (node/files/transfers.ts): nothing when absent. */
  files?: FileServerInit
}

/**
 * Assembles the user's libp2p node, created stopped: every transport parley can use, circuit
 * relay reservations on the configured relays, the DHT in client mode (a node
 * behind NAT is no use as a DHT server), parley's own protocols, and the
 * connection guard (limits on strangers' connections; see connection-guard.ts).
 */
export async function createNodeLibp2p (
  config: ResolvedNodeConfig,
  privateKey: PrivateKey,
  datastore: Datastore,
  logger: ComponentLogger,
  handlers: NodeHandlers
): Promise<NodeLibp2p> {
  guardWebRTCListenerLeak()
  const { trust, files, ...imHandlers } = handlers
  // the relays it reserves on are trusted; the node keeps the set in step as relays are added and removed
  const guard = new ConnectionGuard({ limits: config.connectionLimits, trust, relays: config.relays.flatMap(r => relayPeerOf(r) ?? []), dhtProtocols: [config.dhtProtocol] })
  // one listen address per configured relay makes the transport reserve a slot on each
  const relayListen = config.relays.map(relay => relay.encapsulate('/p2p-circuit').toString())
  // the heartbeat asks the reservation keeper which connections go to its relays
  let keeper: ReservationKeeper | undefined

  const libp2p = await createLibp2p<NodeServices>({
    // the caller builds what the /im callbacks need, then starts it
    start: false,
    privateKey,
    datastore,
    logger,
    addresses: {
      listen: [...config.listen, ...relayListen],
      announce: config.announce
    },
    transports: [
      tcp(),
      webSockets(),
      // bindAddress: node-datachannel's own setting, passed through to libdatachannel
      webRTC({ rtcConfiguration: { iceServers: config.iceServers, ...(config.iceBindAddress == null ? {} : { bindAddress: config.iceBindAddress }) } as RTCConfiguration }),
      circuitRelayTransport({
        reservationCompletionTimeout: 10_000,
        // reserve on every relay at once, those added later included; with the
        // default of 1 the queued reservations after the first were seen never to start
        reservationConcurrency: MAX_RELAYS
      })
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [parleyMuxer()],
    connectionGater: guard.gater,
    connectionManager: {
      maxConnections: guard.limits.maxConnections,
      // every relayed connection counts as coming from its relay's IP address:
      // the default of 5 a second per host refuses circuits (and silently, as a
      // handshake timeout) as soon as a few peers reach this node through one relay
      inboundConnectionThreshold: 100,
      maxIncomingPendingConnections: 32,
      addressSorter: parleyAddressSorter
    },
    transportManager: {
      // a relay that is down at start must not stop the node: it runs without
      // that reservation and the reservation is made again later
      faultTolerance: FaultTolerance.NO_FATAL
    },
    // libp2p's monitor opens a ping stream per connection per beat, which the
    // peer (a relay: for each of its thousands of clients) pays for too; the
    // heartbeat service below pings through the muxer instead
    connectionMonitor: { enabled: false },
    peerDiscovery: bootstrapDiscovery(config.bootstrap),
    services: {
      ...basicServices(),
      dcutr: dcutr(),
      autoNAT: autoNAT(),
      // a node behind NAT is no use as a DHT server: client mode
      dht: parleyDHT(config.dhtProtocol, true),
      im: im(imHandlers),
      peerRecords: peerRecords(),
      reservations: (components: ReservationKeeperComponents) => (keeper = reservationKeeper({ relays: config.relays })(components)),
      connectionGuard: guard.service(),
      file: fileServer(files ?? { lookup: () => undefined }),
      // tests direct connections when this machine moves or a peer comes back another way
      stalePaths: stalePaths(),
      // finds dead connections, a silently dead relay's among them (config.ts:
      // heartbeatInterval, relayHeartbeatInterval). A relay's connection is
      // pinged less often: the relay answers the pings of all its clients, and
      // pings none of those that ping it (relay/relay.ts)
      heartbeat: heartbeat({
        interval: config.heartbeatInterval,
        intervalFor: (connection) => keeper?.keeps(connection.remotePeer) === true ? config.relayHeartbeatInterval : undefined
      })
    }
  })
  endWebRTCWithLastNode(libp2p)
  return libp2p
}
