/**
 * A relay link: the one line a relay operator hands out so that a node can use
 * the relay (`parley relays add <link>`). It lives in common/ because the
 * relay writes it and the node's CLI reads it.
 *
 * `parley-relay:` and base64url JSON `{ v: 1, p: <relay peer ID>, a: [addresses] }`,
 * each address ending in the relay's own `/p2p/<peer ID>`. Bounded like an
 * invite (node/invite.ts): at most MAX_RELAY_LINK_LENGTH characters and
 * MAX_RELAY_LINK_ADDRS addresses.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { isLoopback, isPrivate } from '@libp2p/utils'
import { CODE_P2P, CODE_P2P_CIRCUIT, multiaddr } from '@multiformats/multiaddr'
import { decodeLinkPayload, encodeLinkPayload } from './link-payload.js'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export const RELAY_LINK_PREFIX = 'parley-relay:'

/** Longest link accepted, in characters: as for invites, anything longer is damaged or hostile. */
export const MAX_RELAY_LINK_LENGTH = 4096

/** Most addresses a link may carry. */
export const MAX_RELAY_LINK_ADDRS = 16

const VERSION = 1

export interface RelayLink {
  peerId: PeerId
  /** Each ends in `/p2p/<peerId>`. */
  addrs: Multiaddr[]
}

/** A link is damaged, hostile or not a relay link; the message says what to do. */
export class InvalidRelayLinkError extends Error {
  static override name = 'InvalidRelayLinkError'
  override name = 'InvalidRelayLinkError'
}

/** The peer ID an address ends in, if its last component is /p2p/<id> (a circuit address is not a relay's own). */
export function relayPeerOf (addr: Multiaddr): string | undefined {
  const components = addr.getComponents()
  if (components.some(c => c.code === CODE_P2P_CIRCUIT)) return undefined
  const last = components.at(-1)
  return last?.code === CODE_P2P ? last.value : undefined
}

/** Public addresses before private ones before loopback: a node adding the link uses the first. */
function rank (addr: Multiaddr): number {
  if (isLoopback(addr)) return 2
  return isPrivate(addr) ? 1 : 0
}

function encode (peerId: PeerId, addrs: string[]): string {
  return RELAY_LINK_PREFIX + encodeLinkPayload({ v: VERSION, p: peerId.toString(), a: addrs })
}

/**
 * Writes the link for a relay: its own addresses (those ending in its peer
 * ID, or given without one), at most MAX_RELAY_LINK_ADDRS and
 * MAX_RELAY_LINK_LENGTH characters, public addresses first.
 */
export function encodeRelayLink (peerId: PeerId, addrs: Multiaddr[]): string {
  const id = peerId.toString()
  const own = addrs
    .map(a => relayPeerOf(a) == null && !a.getComponents().some(c => c.code === CODE_P2P || c.code === CODE_P2P_CIRCUIT) ? a.encapsulate(`/p2p/${id}`) : a)
    .filter(a => relayPeerOf(a) === id)
    .map((a, i) => ({ a, i, rank: rank(a) }))
    .sort((x, y) => x.rank - y.rank || x.i - y.i)
    .map(({ a }) => a.toString())
  const kept = [...new Set(own)].slice(0, MAX_RELAY_LINK_ADDRS)
  let link = encode(peerId, kept)
  while (link.length > MAX_RELAY_LINK_LENGTH && kept.length > 1) {
    kept.pop()
    link = encode(peerId, kept)
  }
  return link
}

export function isRelayLink (text: string): boolean {
  return text.trim().startsWith(RELAY_LINK_PREFIX)
}

/**
 * Reads a relay link. Every address must end in the relay's own /p2p/<peer ID>
 * (one naming another peer would make the node reserve on someone else).
 *
 * @throws InvalidRelayLinkError when it is not a relay link, is damaged, too
 * long, carries too many or no addresses, or an address names another peer
 */
export function decodeRelayLink (input: string): RelayLink {
  const text = input.trim()
  const what = 'the relay link is damaged or incomplete; ask the relay\'s operator for the line `parley relay` prints and paste it whole'
  if (!text.startsWith(RELAY_LINK_PREFIX)) throw new InvalidRelayLinkError(`not a relay link (it should start with "${RELAY_LINK_PREFIX}"); ${what}`)
  if (text.length > MAX_RELAY_LINK_LENGTH) {
    throw new InvalidRelayLinkError(`the relay link is ${text.length} characters long, over the ${MAX_RELAY_LINK_LENGTH}-character limit: \`parley relay\` never writes one this long; ${what}`)
  }
  const parsed = decodeLinkPayload(text.slice(RELAY_LINK_PREFIX.length))
  if (parsed == null) throw new InvalidRelayLinkError(what)
  if (parsed.v !== VERSION) {
    throw new InvalidRelayLinkError(`the relay link is of version ${JSON.stringify(parsed.v)}, this parley reads version ${VERSION}; update parley or ask for a link from an older relay`)
  }
  if (parsed.a.length > MAX_RELAY_LINK_ADDRS) {
    throw new InvalidRelayLinkError(`the relay link carries ${parsed.a.length} addresses, over the limit of ${MAX_RELAY_LINK_ADDRS}; ${what}`)
  }
  if (parsed.a.length === 0) throw new InvalidRelayLinkError(`the relay link carries no address; ${what}`)
  let peerId: PeerId
  let addrs: Multiaddr[]
  try {
    peerId = peerIdFromString(parsed.p)
    addrs = parsed.a.map((a: string) => multiaddr(a))
  } catch {
    throw new InvalidRelayLinkError(what)
  }
  const id = peerId.toString()
  const stranger = addrs.find(a => relayPeerOf(a) !== id)
  if (stranger != null) {
    throw new InvalidRelayLinkError(`the relay link's address ${stranger.toString()} does not end in the relay's own /p2p/${id}; ${what}`)
  }
  return { peerId, addrs }
}
