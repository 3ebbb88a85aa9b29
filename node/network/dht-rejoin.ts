import { peerIdFromString } from '@libp2p/peer-id'
import { CODE_P2P } from '@multiformats/multiaddr'
import type { AbortOptions, Connection, Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** What rejoining the DHT uses of the libp2p node. */
export interface RejoinComponents {
  getConnections: () => Connection[]
  /** The protocols the peer store holds for a peer (identify's answer). */
  protocolsOf: (peer: PeerId) => Promise<string[]>
  dial: (addr: Multiaddr, options?: AbortOptions) => Promise<Connection>
  /** Puts the peer in the DHT's routing table. */
  addToRoutingTable: (peer: PeerId, options?: AbortOptions) => Promise<void>
  log: Logger
}

/**
 * Fills an empty DHT routing table again: with the peers this node is
 * connected to that serve `dhtProtocol` (its relays, usually), else with the
 * bootstrap peers, dialled again.
 *
 * kad-dht adds a server to the routing table when identify says it serves the
 * DHT, once per connection, and libp2p's bootstrap discovery dials the
 * bootstrap list once, at start. A node started under heavy load can miss
 * both (the table's update is given 10 s) and then has nobody to ask: it
 * could never look a peer up, though connected to DHT servers all along.
 *
 * @returns how many peers were added
 */
export async function rejoinDHT (components: RejoinComponents, bootstrap: Multiaddr[], dhtProtocol: string, options: AbortOptions = {}): Promise<number> {
  let added = 0
  const add = async (peer: PeerId): Promise<void> => {
    try {
      await components.addToRoutingTable(peer, options)
      added++
    } catch (err) {
      components.log('could not add %p to the routing table - %e', peer, err)
    }
  }
  const connected = new Map<string, PeerId>(components.getConnections().map(c => [c.remotePeer.toString(), c.remotePeer]))
  for (const peer of connected.values()) {
    const protocols = await components.protocolsOf(peer).catch((): string[] => [])
    if (protocols.includes(dhtProtocol)) await add(peer)
  }
  if (added > 0) return added
  for (const addr of bootstrap) {
    const id = addr.getComponents().findLast(c => c.code === CODE_P2P)?.value
    if (id == null) continue
    try {
      await components.dial(addr, options)
      await add(peerIdFromString(id))
    } catch (err) {
      options.signal?.throwIfAborted()
      components.log('could not dial bootstrap peer %a - %e', addr, err)
    }
  }
  return added
}
