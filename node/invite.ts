import { peerIdFromString } from '@libp2p/peer-id'
import { isLoopback, isPrivate } from '@libp2p/utils'
import { CODE_IP4, CODE_IP6, CODE_P2P_CIRCUIT, CODE_WEBRTC, multiaddr } from '@multiformats/multiaddr'
import { decodeLinkPayload, encodeLinkPayload } from '../common/link-payload.js'
import { InvalidInviteError } from './errors.js'
import { addressesOf } from './network/peer-addresses.js'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Every invite starts with this, so people (and `contacts add`) can tell one from a peer ID. */
export const INVITE_PREFIX = 'parley:'

/**
 * Longest invite accepted, in characters. One with MAX_INVITE_ADDRS relay
 * circuit addresses is about 2.5 KiB; a bigger one is damaged or hostile (a
 * 1 MiB invite used to be accepted, and its 30,000 addresses stored and
 * dialled at every start).
 */
export const MAX_INVITE_LENGTH = 4096

/** Most addresses an invite may carry. */
export const MAX_INVITE_ADDRS = 16

export interface Invite {
  peerId: PeerId
  addrs: Multiaddr[]
}

/**
 * Which addresses an invite keeps when a node has more than it can carry:
 * public ones and relay circuits (reachable from anywhere) before WebRTC
 * circuits, then private and loopback addresses.
 */
function inviteRank (addr: Multiaddr): number {
  const codes = addr.getComponents().map(c => c.code)
  const circuit = codes.includes(CODE_P2P_CIRCUIT)
  if (!codes.includes(CODE_IP4) && !codes.includes(CODE_IP6)) return 1
  if (isLoopback(addr)) return 4
  if (isPrivate(addr)) return 3
  if (circuit && codes.includes(CODE_WEBRTC)) return 2
  return circuit ? 1 : 0
}

function encode (peerId: PeerId, addrs: string[]): string {
  return INVITE_PREFIX + encodeLinkPayload({ p: peerId.toString(), a: addrs })
}

/**
 * A one-line invite: `parley:` and base64url JSON of the peer ID and the
 * addresses it can be reached at (relay circuit addresses included), so that a
 * friend can message it without a DHT lookup. The peer ID is written once: an
 * address's trailing `/p2p/<peer ID>` is left out (the reader puts it back).
 * At most MAX_INVITE_ADDRS addresses, MAX_INVITE_LENGTH characters in all.
 */
export function encodeInvite (peerId: PeerId, addrs: Multiaddr[]): string {
  const suffix = `/p2p/${peerId.toString()}`
  const ranked = addressesOf(peerId, addrs)
    .map((a, i) => ({ a, i, rank: inviteRank(a) }))
    .sort((x, y) => x.rank - y.rank || x.i - y.i)
    .map(({ a }) => a.toString())
    .map(a => a.endsWith(suffix) ? a.slice(0, -suffix.length) : a)
    .filter(a => a !== '')
  const kept = ranked.slice(0, MAX_INVITE_ADDRS)
  let invite = encode(peerId, kept)
  while (invite.length > MAX_INVITE_LENGTH && kept.length > 0) {
    kept.pop()
    invite = encode(peerId, kept)
  }
  return invite
}

export function isInvite (text: string): boolean {
  return text.startsWith(INVITE_PREFIX)
}

/**
 * Reads an invite. Addresses that name another peer than the invite's are
 * left out (they would send the peer's messages to that other peer); each
 * address kept ends in `/p2p/<peer ID>`.
 *
 * @throws InvalidInviteError when it is not an invite, is damaged, or is over
 * MAX_INVITE_LENGTH characters or MAX_INVITE_ADDRS addresses
 */
export function decodeInvite (input: string): Invite {
  const text = input.trim()
  const what = 'the invite is damaged or incomplete; ask for a new one with `parley invite` and paste it whole'
  if (!isInvite(text)) throw new InvalidInviteError(`not an invite (it should start with "${INVITE_PREFIX}"); ${what}`)
  if (text.length > MAX_INVITE_LENGTH) {
    throw new InvalidInviteError(`the invite is ${text.length} characters long, over the ${MAX_INVITE_LENGTH}-character limit: \`parley invite\` never writes one this long, so it is damaged or not from parley; ask for a new one`)
  }
  const parsed = decodeLinkPayload(text.slice(INVITE_PREFIX.length))
  if (parsed == null) throw new InvalidInviteError(what)
  if (parsed.a.length > MAX_INVITE_ADDRS) {
    throw new InvalidInviteError(`the invite carries ${parsed.a.length} addresses, over the limit of ${MAX_INVITE_ADDRS}: \`parley invite\` never writes that many, so it is damaged or not from parley; ask for a new one`)
  }
  let peerId: PeerId
  let addrs: Multiaddr[]
  try {
    peerId = peerIdFromString(parsed.p)
    addrs = parsed.a.map((a: string) => multiaddr(a))
  } catch {
    throw new InvalidInviteError(what)
  }
  return { peerId, addrs: addressesOf(peerId, addrs) }
}
