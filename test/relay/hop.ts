/**
 * Bare libp2p peers and a minimal circuit-relay-v2 HOP client, so tests
 * can send exactly the reservation and connect requests they mean and read the
 * exact relay-v2 status the relay answers (with parley's codec of the HOP
 * messages, relay/pb/circuit.ts).
 */
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { pbStream } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { HopMessage } from '../../relay/pb/circuit.js'
import type { TCPOptions } from '@libp2p/tcp'
import type { Libp2pOptions } from 'libp2p'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export const HOP = '/libp2p/circuit/relay/0.2.0/hop'

export interface HopResponse {
  status: string
  /** The circuit limit the relay granted: duration (as js-libp2p sends it) and bytes. */
  limit?: { duration?: number, data?: bigint }
  reserved: boolean
}

export interface BareNodeOptions {
  circuits?: boolean
  listen?: string[]
  /**
   * The loopback address its TCP dials leave from (Linux takes any of
   * 127.0.0.0/8 as a source): a stand-in for a peer on another host.
   */
  from?: string
  /** For a peer that takes many relayed connections at once (js-libp2p lets a host open 5 a second). */
  connectionManager?: Libp2pOptions['connectionManager']
}

/** A libp2p peer with TCP only, plus the relay transport when it should reserve or dial circuits. */
export async function bareNode (options: BareNodeOptions = {}): Promise<Libp2p> {
  // dialOpts go to net.connect as they are: localAddress binds the source address
  const tcpInit = options.from == null ? {} : { dialOpts: { localAddress: options.from } as TCPOptions['dialOpts'] }
  return createLibp2p({
    addresses: { listen: options.listen ?? [] },
    connectionManager: options.connectionManager,
    transports: options.circuits === true ? [tcp(tcpInit), circuitRelayTransport()] : [tcp(tcpInit)],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
}

async function request (node: Libp2p, relay: Multiaddr | string, message: HopMessage): Promise<{ response: HopResponse, stream: Stream }> {
  const stream = await node.dialProtocol(typeof relay === 'string' ? multiaddr(relay) : relay, HOP, { signal: AbortSignal.timeout(20_000) })
  const hop = pbStream(stream).pb(HopMessage)
  await hop.write(message)
  const answer = await hop.read({ signal: AbortSignal.timeout(20_000) })
  const response: HopResponse = { status: answer.status ?? 'NONE', limit: answer.limit, reserved: answer.reservation != null }
  return { response, stream: hop.unwrap().unwrap() }
}

/** Asks `relay` for a reservation for `node`; the reservation lasts while the node stays connected. */
export async function reserve (node: Libp2p, relay: Multiaddr | string): Promise<HopResponse> {
  const { response, stream } = await request(node, relay, { type: HopMessage.Type.RESERVE })
  await stream.close().catch(() => {})
  return response
}

/**
 * Asks `relay` to connect `node` to `destination`. On OK the returned stream
 * is the circuit (the destination's side sees an inbound relayed connection).
 */
export async function connect (node: Libp2p, relay: Multiaddr | string, destination: PeerId): Promise<{ response: HopResponse, stream: Stream }> {
  return request(node, relay, { type: HopMessage.Type.CONNECT, peer: { id: destination.toMultihash().bytes, addrs: [] } })
}
