/**
 * Bare libp2p peers and a hand-rolled circuit-relay-v2 HOP client, so tests
 * can send exactly the reservation and connect requests they mean and read the
 * exact relay-v2 status the relay answers.
 */
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { TCPOptions } from '@libp2p/tcp'
import type { Libp2pOptions } from 'libp2p'
import { reader, writer } from 'protons-runtime'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export const HOP = '/libp2p/circuit/relay/0.2.0/hop'

const STATUS_NAMES: Record<number, string> = {
  100: 'OK',
  200: 'RESERVATION_REFUSED',
  201: 'RESOURCE_LIMIT_EXCEEDED',
  202: 'PERMISSION_DENIED',
  203: 'CONNECTION_FAILED',
  204: 'NO_RESERVATION',
  400: 'MALFORMED_MESSAGE',
  401: 'UNEXPECTED_MESSAGE'
}

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

function encodeReserve (): Uint8Array {
  const w = writer()
  w.uint32(0x08) // field 1, type
  w.int32(0) // RESERVE
  return w.finish()
}

function encodeConnect (peer: PeerId): Uint8Array {
  const id = peer.toMultihash().bytes
  const inner = writer()
  inner.uint32(0x0a) // Peer field 1, id
  inner.bytes(id)
  const peerBytes = inner.finish()
  const w = writer()
  w.uint32(0x08)
  w.int32(1) // CONNECT
  w.uint32(0x12) // field 2, peer
  w.bytes(peerBytes)
  return w.finish()
}

function decodeResponse (bytes: Uint8Array): HopResponse {
  const r = reader(bytes)
  const out: HopResponse = { status: 'NONE', reserved: false }
  while (r.pos < r.len) {
    const tag = r.uint32()
    switch (tag >>> 3) {
      case 3: {
        out.reserved = true
        r.skip(r.uint32())
        break
      }
      case 4: {
        const end = r.uint32() + r.pos
        const limit: HopResponse['limit'] = {}
        while (r.pos < end) {
          const t = r.uint32()
          if (t >>> 3 === 1) limit.duration = r.uint32()
          else if (t >>> 3 === 2) limit.data = r.uint64()
          else r.skipType(t & 7)
        }
        out.limit = limit
        break
      }
      case 5: {
        const code = r.int32()
        out.status = STATUS_NAMES[code] ?? String(code)
        break
      }
      default: r.skipType(tag & 7)
    }
  }
  return out
}

async function request (node: Libp2p, relay: Multiaddr | string, message: Uint8Array): Promise<{ response: HopResponse, stream: Stream }> {
  const stream = await node.dialProtocol(typeof relay === 'string' ? multiaddr(relay) : relay, HOP, { signal: AbortSignal.timeout(20_000) })
  const lp = lpStream(stream)
  await lp.write(message)
  const response = decodeResponse((await lp.read({ signal: AbortSignal.timeout(20_000) })).subarray())
  return { response, stream: lp.unwrap() }
}

/** Asks `relay` for a reservation for `node`; the reservation lasts while the node stays connected. */
export async function reserve (node: Libp2p, relay: Multiaddr | string): Promise<HopResponse> {
  const { response, stream } = await request(node, relay, encodeReserve())
  await stream.close().catch(() => {})
  return response
}

/**
 * Asks `relay` to connect `node` to `destination`. On OK the returned stream
 * is the circuit (the destination's side sees an inbound relayed connection).
 */
export async function connect (node: Libp2p, relay: Multiaddr | string, destination: PeerId): Promise<{ response: HopResponse, stream: Stream }> {
  return request(node, relay, encodeConnect(destination))
}
