import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'

/** How many parsed peer IDs `peerIdOf` keeps; past it, the memo starts over. */
const REMEMBERED = 1024

const parsed = new Map<string, PeerId>()

/**
 * The PeerId a peer ID's text names, parsed once: parsing decodes base58 and
 * builds a key, and a fresh PeerId encodes its text again on its first
 * `toString()`; a send pays both for every message otherwise. A PeerId is
 * immutable, so one instance can serve every caller. Throws as
 * `peerIdFromString` does on text that is no peer ID (nothing is kept then).
 */
export function peerIdOf (text: string): PeerId {
  let peerId = parsed.get(text)
  if (peerId == null) {
    peerId = peerIdFromString(text)
    if (parsed.size >= REMEMBERED) parsed.clear()
    parsed.set(text, peerId)
  }
  return peerId
}
