import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { InvalidInviteError } from './errors.js'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Every invite starts with this, so people (and `contacts add`) can tell one from a peer ID. */
export const INVITE_PREFIX = 'parley:'

export interface Invite {
  peerId: PeerId
  addrs: Multiaddr[]
}

/**
 * A one-line invite: `parley:` and base64url JSON of the peer ID and the
 * addresses it can be reached at (relay circuit addresses included), so that a
 * friend can message it without a DHT lookup.
 */
export function encodeInvite (peerId: PeerId, addrs: Multiaddr[]): string {
  const json = JSON.stringify({ p: peerId.toString(), a: addrs.map(a => a.toString()) })
  return INVITE_PREFIX + Buffer.from(json).toString('base64url')
}

export function isInvite (text: string): boolean {
  return text.startsWith(INVITE_PREFIX)
}

export function decodeInvite (text: string): Invite {
  const what = 'the invite is damaged or incomplete; ask for a new one with `parley invite` and paste it whole'
  if (!isInvite(text)) throw new InvalidInviteError(`not an invite (it should start with "${INVITE_PREFIX}"); ${what}`)
  let parsed: any
  try {
    parsed = JSON.parse(Buffer.from(text.slice(INVITE_PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw new InvalidInviteError(what)
  }
  if (typeof parsed?.p !== 'string' || !Array.isArray(parsed.a)) throw new InvalidInviteError(what)
  try {
    return { peerId: peerIdFromString(parsed.p), addrs: parsed.a.map((a: string) => multiaddr(a)) }
  } catch {
    throw new InvalidInviteError(what)
  }
}
