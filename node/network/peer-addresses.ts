import { CODE_P2P, CODE_P2P_CIRCUIT } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * The peer IDs an address names as its destination: the `/p2p` components
 * after its last `/p2p-circuit` (or anywhere, without one). A relay's ID comes
 * before `/p2p-circuit` and is not the destination.
 */
function destinationsOf (addr: Multiaddr): string[] {
  const components = addr.getComponents()
  let start = 0
  components.forEach((c, i) => { if (c.code === CODE_P2P_CIRCUIT) start = i + 1 })
  return components.slice(start).filter(c => c.code === CODE_P2P).map(c => c.value ?? '')
}

/**
 * Whether `addr` may be an address of `peer`: it names no destination (the
 * peer is appended when dialling), or names `peer` and nobody else.
 * `/ip4/…/tcp/…/p2p/<relay>/p2p-circuit/p2p/<peer>` is one; `/ip4/…/tcp/…/p2p/<other>`
 * is not, whoever handed it over.
 */
export function isAddressOf (peer: PeerId, addr: Multiaddr): boolean {
  const target = peer.toString()
  return destinationsOf(addr).every(id => id === target)
}

/**
 * The addresses of `peer` among `addrs`, each ending in `/p2p/<peer>`, without
 * duplicates: those that name another peer as their destination are dropped
 * (an invite, a DHT answer or a peer record can carry one, to redirect
 * `peer`'s messages to someone else), and `/p2p/<peer>` is appended to those
 * that name none. Every address parley dials or stores for a peer goes
 * through this; libp2p then checks (Noise) that whoever answers is `peer`.
 */
export function addressesOf (peer: PeerId, addrs: Iterable<Multiaddr>): Multiaddr[] {
  const suffix = `/p2p/${peer.toString()}`
  const seen = new Set<string>()
  const out: Multiaddr[] = []
  for (const addr of addrs) {
    if (!isAddressOf(peer, addr)) continue
    const full = destinationsOf(addr).length > 0 ? addr : addr.encapsulate(suffix)
    const key = full.toString()
    if (seen.has(key)) continue
    seen.add(key)
    out.push(full)
  }
  return out
}
