import { CODE_P2P_CIRCUIT, CODE_WEBRTC } from '@multiformats/multiaddr'
import type { Connection } from '@libp2p/interface'

/** How a connection reaches the peer, as users see it. */
export type Path = 'direct' | 'relayed'

/**
 * A connection is relayed when its bytes pass through a circuit-relay-v2 relay.
 * A WebRTC connection is direct even though its address names the relay that
 * carried the signalling: once ICE completes, data flows peer to peer (or via
 * TURN, which the node reports separately).
 */
export function connectionPath (connection: Pick<Connection, 'remoteAddr' | 'limits'>): Path {
  const codes = connection.remoteAddr.getComponents().map(c => c.code)
  if (codes.includes(CODE_WEBRTC)) {
    return 'direct'
  }
  if (codes.includes(CODE_P2P_CIRCUIT) || connection.limits != null) {
    return 'relayed'
  }
  return 'direct'
}

/** A connection's path never changes: worked out once per connection, not per message. */
const paths = new WeakMap<Connection, Path>()

/** `connectionPath`, remembered per connection. */
export function pathOf (connection: Connection): Path {
  let path = paths.get(connection)
  if (path == null) {
    path = connectionPath(connection)
    paths.set(connection, path)
  }
  return path
}
