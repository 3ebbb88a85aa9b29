/**
 * The signed mailbox record (protocols/mailbox/README.md §3): which X25519 keys
 * to seal to and which hosts to deposit on, in a libp2p signed envelope with its
 * own domain and payload type, published in parley's DHT under
 * `/parley-mailbox/<peer id>` and carried in invites and in envelopes (as a reply
 * record). Validity, selection and the DHT servers' rules follow the peer record's
 * (protocols/peer-record/README.md).
 */
import { peerIdFromMultihash, peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { RecordEnvelope } from '@libp2p/peer-record'
import { CODE_P2P, multiaddr } from '@multiformats/multiaddr'
import * as Digest from 'multiformats/hashes/digest'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { MAILBOX_KEY_BYTES } from './envelope.js'
import { MailboxRecord } from './pb/mailbox.js'
import type { PeerId, PrivateKey, Record } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The signed envelope's domain (RFC 0002): a signature for another purpose never verifies as a mailbox record. */
export const MAILBOX_RECORD_DOMAIN = 'parley-mailbox-record'

/** The signed envelope's payload type. */
export const MAILBOX_RECORD_CODEC: Uint8Array = uint8ArrayFromString('/parley/mailbox-record')

/** The DHT key namespace: `/parley-mailbox/<peer id>`. */
export const MAILBOX_RECORD_NAMESPACE = 'parley-mailbox'

/**
 * How long a record is served by the DHT, in ms after its signing time (`seq`),
 * and how far in the future `seq` may lie: those of the peer record, for the
 * same reasons (publishers republish far more often; a wrong clock cannot block
 * the publisher's later records for long). Readers of an invite may accept an
 * older record: its keys say themselves how long they may be used.
 */
export const MAILBOX_RECORD_VALIDITY = 24 * 60 * 60_000
export const MAILBOX_RECORD_MAX_CLOCK_SKEW = 60 * 60_000

/** Largest marshalled record envelope, in bytes. */
export const MAX_MAILBOX_RECORD_BYTES = 4096
/** Most keys a record lists. */
export const MAX_MAILBOX_RECORD_KEYS = 4

/** Protocol versions a record says its owner reads, at most; each at most MAX_MAILBOX_READS_BYTES. */
export const MAX_MAILBOX_READS = 4
export const MAX_MAILBOX_READS_BYTES = 32
/** Most hosts a record lists. */
export const MAX_MAILBOX_RECORD_HOSTS = 8
/** Most addresses per host. */
export const MAX_MAILBOX_HOST_ADDRS = 8

export class InvalidMailboxRecordError extends Error {
  static override name = 'InvalidMailboxRecordError'
  override name = 'InvalidMailboxRecordError'
}

/**
 * A record that was valid once but no longer is (too old, or every key expired):
 * a reader holding it in an old invite loses the mailbox, not the invite.
 */
export class ExpiredMailboxRecordError extends InvalidMailboxRecordError {
  static override name = 'ExpiredMailboxRecordError'
  override name = 'ExpiredMailboxRecordError'
}

export interface MailboxHostInfo {
  peerId: PeerId
  /** Without a trailing `/p2p/<host>`. */
  addrs: Multiaddr[]
}

export interface MailboxRecordKey {
  /** Raw X25519, 32 bytes. */
  publicKey: Uint8Array
  /** ms since the epoch: senders do not seal to it after this. */
  expiresAt: number
}

export interface MailboxRecordInfo {
  peerId: PeerId
  /** Signing time, ms since the epoch; higher is newer. */
  seq: number
  /** Newest first; senders seal to the first. From openMailboxRecord: only those not expired. */
  keys: MailboxRecordKey[]
  hosts: MailboxHostInfo[]
  /** /im versions the owner reads from its mailbox besides /im/1.0.0 (a sender deposits nothing else). */
  reads?: string[]
}

export interface OpenMailboxRecordOptions {
  /** The reader's clock, ms since the epoch. */
  now: number
  /** The peer the record must be about (and signed by); any peer when absent. */
  peerId?: PeerId
  /**
   * Accept a record signed more than MAILBOX_RECORD_VALIDITY ago, as long as
   * one of its keys has not expired: for a record carried in an invite or an
   * envelope, which may be days old when it is read. DHT servers never set it.
   */
  ignoreAge?: boolean
}

export function mailboxRecordKey (peerId: PeerId): Uint8Array {
  return uint8ArrayFromString(`/${MAILBOX_RECORD_NAMESPACE}/${peerId.toString()}`)
}

function peerIdOfKey (key: Uint8Array): PeerId {
  const parts = uint8ArrayToString(key).split('/')
  if (parts.length !== 3 || parts[0] !== '' || parts[1] !== MAILBOX_RECORD_NAMESPACE) {
    throw new InvalidMailboxRecordError(`key is not /${MAILBOX_RECORD_NAMESPACE}/<peer id>`)
  }
  try {
    return peerIdFromString(parts[2])
  } catch {
    throw new InvalidMailboxRecordError('key does not end in a peer id')
  }
}

function peerIdFromBytes (bytes: Uint8Array, what: string): PeerId {
  try {
    return peerIdFromMultihash(Digest.decode(bytes))
  } catch {
    throw new InvalidMailboxRecordError(`${what} is not a peer ID`)
  }
}

function checkCounts (record: { keys: unknown[], hosts: Array<{ addrs: unknown[] }> }): void {
  if (record.keys.length === 0 || record.keys.length > MAX_MAILBOX_RECORD_KEYS) {
    throw new InvalidMailboxRecordError(`a record lists 1 to ${MAX_MAILBOX_RECORD_KEYS} keys, not ${record.keys.length}`)
  }
  if (record.hosts.length > MAX_MAILBOX_RECORD_HOSTS) {
    throw new InvalidMailboxRecordError(`a record lists at most ${MAX_MAILBOX_RECORD_HOSTS} hosts, not ${record.hosts.length}`)
  }
  if (record.hosts.some(h => h.addrs.length > MAX_MAILBOX_HOST_ADDRS)) {
    throw new InvalidMailboxRecordError(`a host has at most ${MAX_MAILBOX_HOST_ADDRS} addresses`)
  }
}

function checkKeys (keys: Array<{ publicKey: Uint8Array, expiresAt: number | bigint }>): void {
  if (keys.some(k => k.publicKey.length !== MAILBOX_KEY_BYTES)) {
    throw new InvalidMailboxRecordError(`a mailbox key is ${MAILBOX_KEY_BYTES} bytes`)
  }
}

/** A Record for RecordEnvelope.seal: the encoded MailboxRecord under parley's domain and payload type. */
class MailboxRecordPayload implements Record {
  readonly domain = MAILBOX_RECORD_DOMAIN
  readonly codec = MAILBOX_RECORD_CODEC
  constructor (private readonly bytes: Uint8Array) {}
  marshal (): Uint8Array { return this.bytes }
  equals (other: Record): boolean {
    return other.domain === this.domain && uint8ArrayEquals(other.marshal(), this.bytes)
  }
}

/**
 * Signs a mailbox record for the peer of `privateKey`.
 *
 * @returns the marshalled signed envelope, at most MAX_MAILBOX_RECORD_BYTES
 * @throws InvalidMailboxRecordError when the record breaks a bound
 */
export async function signMailboxRecord (privateKey: PrivateKey, record: Omit<MailboxRecordInfo, 'peerId'>): Promise<Uint8Array> {
  checkCounts(record)
  checkKeys(record.keys)
  if (!Number.isSafeInteger(record.seq) || record.seq < 0) {
    throw new InvalidMailboxRecordError(`seq must be ms since the epoch, not ${record.seq}`)
  }
  const peerId = peerIdFromPrivateKey(privateKey)
  const payload = MailboxRecord.encode({
    peerId: peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    seq: BigInt(record.seq),
    keys: record.keys.map(k => ({ publicKey: k.publicKey as Uint8Array<ArrayBuffer>, expiresAt: BigInt(k.expiresAt) })),
    hosts: record.hosts.map(h => ({
      peerId: h.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
      addrs: h.addrs.map(a => withoutPeer(a, h.peerId).bytes as Uint8Array<ArrayBuffer>)
    })),
    reads: checkReads(record.reads ?? [])
  })
  const bytes = (await RecordEnvelope.seal(new MailboxRecordPayload(payload), privateKey)).marshal()
  if (bytes.length > MAX_MAILBOX_RECORD_BYTES) {
    throw new InvalidMailboxRecordError(`the signed record is ${bytes.length} bytes, over ${MAX_MAILBOX_RECORD_BYTES}`)
  }
  return bytes
}

/** `addr` without a trailing `/p2p/<host>`: the record names the host once. */
function withoutPeer (addr: Multiaddr, host: PeerId): Multiaddr {
  const components = addr.getComponents()
  const last = components[components.length - 1]
  return last?.code === CODE_P2P && last.value === host.toString() ? addr.decapsulateCode(CODE_P2P) : addr
}

/**
 * Verifies and reads a marshalled mailbox record: the signature (domain and
 * payload type), that the signer is the record's peer (and `options.peerId`),
 * its age (unless `ignoreAge`), every bound, and that a key is still usable.
 *
 * @returns the record, its `keys` limited to those not expired at `now`
 * @throws InvalidMailboxRecordError saying which check failed
 */
export async function openMailboxRecord (bytes: Uint8Array, options: OpenMailboxRecordOptions): Promise<MailboxRecordInfo> {
  if (bytes.length > MAX_MAILBOX_RECORD_BYTES) {
    throw new InvalidMailboxRecordError(`record of ${bytes.length} bytes, over ${MAX_MAILBOX_RECORD_BYTES}`)
  }
  let envelope: RecordEnvelope
  try {
    envelope = await RecordEnvelope.openAndCertify(bytes, MAILBOX_RECORD_DOMAIN)
  } catch (err: any) {
    throw new InvalidMailboxRecordError(`not a signed mailbox record envelope: ${err.message}`)
  }
  if (!uint8ArrayEquals(envelope.payloadType, MAILBOX_RECORD_CODEC)) {
    throw new InvalidMailboxRecordError('the envelope\'s payload type is not a mailbox record')
  }
  let record: MailboxRecord
  try {
    record = MailboxRecord.decode(envelope.payload, {
      limits: { keys: MAX_MAILBOX_RECORD_KEYS, hosts: MAX_MAILBOX_RECORD_HOSTS, hosts$: { addrs: MAX_MAILBOX_HOST_ADDRS }, reads: MAX_MAILBOX_READS }
    })
  } catch (err: any) {
    throw new InvalidMailboxRecordError(`undecodable mailbox record: ${err.message}`)
  }
  const peerId = peerIdFromBytes(record.peerId, 'the record\'s peer_id')
  if (!envelope.publicKey.equals(peerId.publicKey)) {
    throw new InvalidMailboxRecordError('the record is not signed by the peer it is about')
  }
  if (options.peerId != null && !options.peerId.equals(peerId)) {
    throw new InvalidMailboxRecordError(`the record is about ${peerId.toString()}, not ${options.peerId.toString()}`)
  }
  checkCounts(record)
  checkKeys(record.keys)
  const now = options.now
  if (record.seq > BigInt(now + MAILBOX_RECORD_MAX_CLOCK_SKEW)) {
    throw new InvalidMailboxRecordError(`record signed in the future: seq ${record.seq}, now ${now}`)
  }
  if (options.ignoreAge !== true && record.seq < BigInt(now - MAILBOX_RECORD_VALIDITY)) {
    throw new ExpiredMailboxRecordError(`record expired: signed at ${record.seq}, valid for ${MAILBOX_RECORD_VALIDITY} ms`)
  }
  const keys = record.keys
    .filter(k => k.expiresAt > BigInt(now))
    .map(k => ({ publicKey: Uint8Array.from(k.publicKey), expiresAt: k.expiresAt > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(k.expiresAt) }))
  if (keys.length === 0) {
    throw new ExpiredMailboxRecordError('every key of the record has expired')
  }
  const seen = new Set<string>()
  const hosts = record.hosts.map(h => {
    const host = peerIdFromBytes(h.peerId, 'a host')
    if (seen.has(host.toString())) throw new InvalidMailboxRecordError(`host ${host.toString()} is listed twice`)
    seen.add(host.toString())
    let addrs: Multiaddr[]
    try {
      addrs = h.addrs.map(a => multiaddr(a))
    } catch {
      throw new InvalidMailboxRecordError(`an address of host ${host.toString()} is not a multiaddr`)
    }
    return { peerId: host, addrs }
  })
  return { peerId, seq: Number(record.seq), keys, hosts, reads: checkReads(record.reads) }
}

function checkReads (reads: string[]): string[] {
  if (reads.length > MAX_MAILBOX_READS || reads.some(r => uint8ArrayFromString(r).length > MAX_MAILBOX_READS_BYTES)) {
    throw new InvalidMailboxRecordError(`a record lists at most ${MAX_MAILBOX_READS} protocol versions it reads, each at most ${MAX_MAILBOX_READS_BYTES} bytes`)
  }
  return reads
}

/**
 * Throws unless `value` is a mailbox record valid at `now` for the peer `key`
 * names (what a DHT server stores and serves).
 */
export async function validateMailboxRecord (key: Uint8Array, value: Uint8Array, now: number = Date.now()): Promise<MailboxRecordInfo> {
  return openMailboxRecord(value, { now, peerId: peerIdOfKey(key) })
}

function seqOf (value: Uint8Array): bigint {
  try {
    return MailboxRecord.decode(RecordEnvelope.createFromProtobuf(value).payload).seq
  } catch {
    return -1n
  }
}

/**
 * Picks the newest record: the highest `seq`; the first of equals. Validity is
 * the validator's business: kad-dht validates every answer before selecting.
 */
export function selectMailboxRecord (_key: Uint8Array, records: Uint8Array[]): number {
  let best = 0
  for (let i = 1; i < records.length; i++) {
    if (seqOf(records[i]) > seqOf(records[best])) best = i
  }
  return best
}

/** Validators for kad-dht's `validators` option. Every DHT server must have them. */
export const mailboxRecordValidators = {
  [MAILBOX_RECORD_NAMESPACE]: async (key: Uint8Array, value: Uint8Array): Promise<void> => {
    await validateMailboxRecord(key, value)
  }
}

/** Selectors for kad-dht's `selectors` option. */
export const mailboxRecordSelectors = {
  [MAILBOX_RECORD_NAMESPACE]: selectMailboxRecord
}
