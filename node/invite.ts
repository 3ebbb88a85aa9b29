import { peerIdFromString } from '@libp2p/peer-id'
import { isLoopback, isPrivate } from '@libp2p/utils'
import { CODE_IP4, CODE_IP6, CODE_P2P_CIRCUIT, CODE_WEBRTC, multiaddr } from '@multiformats/multiaddr'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { decodeLinkPayload, encodeLinkPayload } from '../common/link-payload.js'
import { ExpiredMailboxRecordError, MAX_MAILBOX_RECORD_BYTES, openMailboxRecord } from '../protocols/mailbox/record.js'
import { InvalidInviteError } from './errors.js'
import { addressesOf } from './network/peer-addresses.js'
import type { MailboxRecordInfo } from '../protocols/mailbox/record.js'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Every invite starts with this, so people (and `contacts add`) can tell one from a peer ID. */
export const INVITE_PREFIX = 'parley:'

/**
 * Longest invite accepted, in characters. One with MAX_INVITE_ADDRS relay
 * circuit addresses is about 2.5 KiB, and a mailbox record of the largest size
 * (4 KiB, base64url inside the base64url payload) adds about 7.3 KiB; a bigger
 * one is damaged or hostile (a 1 MiB invite used to be accepted, and its 30,000
 * addresses stored and dialled at every start).
 */
export const MAX_INVITE_LENGTH = 12_288

/** Most addresses an invite may carry. */
export const MAX_INVITE_ADDRS = 16

export interface Invite {
  peerId: PeerId
  addrs: Multiaddr[]
}

/** An invite read by readInvite: with the peer's mailbox record, verified, when it carries a live one. */
export interface VerifiedInvite extends Invite {
  mailbox?: MailboxRecordInfo & { bytes: Uint8Array }
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

function encode (peerId: PeerId, addrs: string[], mailboxRecord?: Uint8Array): string {
  const mailbox = mailboxRecord == null ? {} : { mailbox: uint8ArrayToString(mailboxRecord, 'base64url') }
  return INVITE_PREFIX + encodeLinkPayload({ p: peerId.toString(), a: addrs, ...mailbox })
}

/**
 * A one-line invite: `parley:` and base64url JSON of the peer ID and the
 * addresses it can be reached at (relay circuit addresses included), so that a
 * friend can message it without a DHT lookup. The peer ID is written once: an
 * address's trailing `/p2p/<peer ID>` is left out (the reader puts it back).
 * With `mailboxRecord` (the node's signed mailbox record), it carries that too
 * (`mailbox`, base64url), so that the friend can leave messages while the node
 * is offline, before any DHT lookup.
 * At most MAX_INVITE_ADDRS addresses, MAX_INVITE_LENGTH characters in all.
 */
export function encodeInvite (peerId: PeerId, addrs: Multiaddr[], options: { mailboxRecord?: Uint8Array } = {}): string {
  if (options.mailboxRecord != null && options.mailboxRecord.length > MAX_MAILBOX_RECORD_BYTES) {
    throw new RangeError(`a mailbox record is at most ${MAX_MAILBOX_RECORD_BYTES} bytes, not ${options.mailboxRecord.length}`)
  }
  const suffix = `/p2p/${peerId.toString()}`
  const ranked = addressesOf(peerId, addrs)
    .map((a, i) => ({ a, i, rank: inviteRank(a) }))
    .sort((x, y) => x.rank - y.rank || x.i - y.i)
    .map(({ a }) => a.toString())
    .map(a => a.endsWith(suffix) ? a.slice(0, -suffix.length) : a)
    .filter(a => a !== '')
  const kept = ranked.slice(0, MAX_INVITE_ADDRS)
  let invite = encode(peerId, kept, options.mailboxRecord)
  while (invite.length > MAX_INVITE_LENGTH && kept.length > 0) {
    kept.pop()
    invite = encode(peerId, kept, options.mailboxRecord)
  }
  return invite
}

export function isInvite (text: string): boolean {
  return text.startsWith(INVITE_PREFIX)
}

/** Where an invite was damaged: what it says, what to do. */
const DAMAGED = 'the invite is damaged or incomplete; ask for a new one with `parley invite` and paste it whole'

/** The invite and its mailbox record's bytes (checked in shape only). */
function parseInvite (input: string): { invite: Invite, mailboxRecord?: Uint8Array } {
  const text = input.trim()
  const what = DAMAGED
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
  let mailboxRecord: Uint8Array | undefined
  if (parsed.mailbox !== undefined) {
    // a lenient decoder skips characters outside the alphabet
    if (typeof parsed.mailbox !== 'string' || !/^[A-Za-z0-9_-]+$/.test(parsed.mailbox)) {
      throw new InvalidInviteError(`the invite's mailbox record is not base64url; ${what}`)
    }
    mailboxRecord = uint8ArrayFromString(parsed.mailbox, 'base64url')
    if (mailboxRecord.length > MAX_MAILBOX_RECORD_BYTES) {
      throw new InvalidInviteError(`the invite's mailbox record is ${mailboxRecord.length} bytes, over the limit of ${MAX_MAILBOX_RECORD_BYTES}; ${what}`)
    }
  }
  return { invite: { peerId, addrs: addressesOf(peerId, addrs) }, mailboxRecord }
}

/**
 * Reads an invite. Addresses that name another peer than the invite's are
 * left out (they would send the peer's messages to that other peer); each
 * address kept ends in `/p2p/<peer ID>`. A mailbox record is checked in shape
 * only and not returned: readInvite verifies and returns it.
 *
 * @throws InvalidInviteError when it is not an invite, is damaged, or is over
 * MAX_INVITE_LENGTH characters or MAX_INVITE_ADDRS addresses
 */
export function decodeInvite (input: string): Invite {
  return parseInvite(input).invite
}

/**
 * Reads an invite as decodeInvite does, and verifies the mailbox record it
 * carries, if any: signed by the invite's peer, within every bound. The
 * record may be older than the DHT would serve (an invite waits days to be
 * used); one whose keys have all expired is left out, and the invite stays
 * valid without it.
 *
 * @throws InvalidInviteError as decodeInvite, and when the mailbox record is not valid
 */
export async function readInvite (input: string, options: { now?: number } = {}): Promise<VerifiedInvite> {
  const { invite, mailboxRecord } = parseInvite(input)
  if (mailboxRecord == null) return invite
  try {
    const record = await openMailboxRecord(mailboxRecord, { now: options.now ?? Date.now(), peerId: invite.peerId, ignoreAge: true })
    return { ...invite, mailbox: { ...record, bytes: mailboxRecord } }
  } catch (err: any) {
    if (err instanceof ExpiredMailboxRecordError) return invite
    throw new InvalidInviteError(`the invite's mailbox record is not valid (${err.message}); it was altered or is not from this peer: ask for a new invite`)
  }
}
