import { peerIdFromString } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import type { PeerId } from '@libp2p/interface'

/** The DHT key namespace of parley peer records: `/parley-peer/<peer id>`. */
export const PEER_RECORD_NAMESPACE = 'parley-peer'

/**
 * How long a record stays valid, in ms after its signing time (its `seq`, ms since
 * the Unix epoch). Publishers republish far more often (every 10 minutes).
 */
export const PEER_RECORD_VALIDITY = 24 * 60 * 60_000

/** How far in the future (by the checker's clock) a record's `seq` may lie, in ms. */
export const PEER_RECORD_MAX_CLOCK_SKEW = 60 * 60_000

export class InvalidPeerRecordError extends Error {
  static override name = 'InvalidPeerRecordError'
  override name = 'InvalidPeerRecordError'
}

export function peerRecordKey (peerId: PeerId): Uint8Array {
  return uint8ArrayFromString(`/${PEER_RECORD_NAMESPACE}/${peerId.toString()}`)
}

function peerIdOfKey (key: Uint8Array): PeerId {
  const parts = uint8ArrayToString(key).split('/')
  if (parts.length !== 3 || parts[1] !== PEER_RECORD_NAMESPACE) {
    throw new InvalidPeerRecordError('key is not /parley-peer/<peer id>')
  }
  try {
    return peerIdFromString(parts[2])
  } catch {
    throw new InvalidPeerRecordError('key does not end in a peer id')
  }
}

/**
 * Throws unless `value` is a PeerRecord envelope signed by the peer that `key`
 * names, about that same peer, and signed (its `seq`) within the validity period
 * before `now` and not more than the allowed clock skew after it.
 */
export async function validatePeerRecord (key: Uint8Array, value: Uint8Array, now: number = Date.now()): Promise<PeerRecord> {
  const peerId = peerIdOfKey(key)
  let envelope: RecordEnvelope
  try {
    envelope = await RecordEnvelope.openAndCertify(value, PeerRecord.DOMAIN)
  } catch (err: any) {
    throw new InvalidPeerRecordError(`not a signed peer record envelope: ${err.message}`)
  }
  if (!envelope.publicKey.equals(peerId.publicKey)) {
    throw new InvalidPeerRecordError('envelope is not signed by the peer the key names')
  }
  const record = PeerRecord.createFromProtobuf(envelope.payload)
  if (!record.peerId.equals(peerId)) {
    throw new InvalidPeerRecordError('record describes another peer than the key names')
  }
  if (record.seqNumber < BigInt(now - PEER_RECORD_VALIDITY)) {
    throw new InvalidPeerRecordError(`record expired: signed at ${record.seqNumber}, valid for ${PEER_RECORD_VALIDITY} ms`)
  }
  if (record.seqNumber > BigInt(now + PEER_RECORD_MAX_CLOCK_SKEW)) {
    throw new InvalidPeerRecordError(`record signed in the future: seq ${record.seqNumber}, now ${now}`)
  }
  return record
}

function seqOf (value: Uint8Array): bigint {
  try {
    return PeerRecord.createFromProtobuf(RecordEnvelope.createFromProtobuf(value).payload).seqNumber
  } catch {
    return -1n
  }
}

/**
 * Picks the newest record: the highest sequence number; the first of equals.
 * Validity (signature, expiry) is the validator's business: kad-dht validates
 * every answer before selecting among them.
 */
export function selectPeerRecord (_key: Uint8Array, records: Uint8Array[]): number {
  let best = 0
  for (let i = 1; i < records.length; i++) {
    if (seqOf(records[i]) > seqOf(records[best])) {
      best = i
    }
  }
  return best
}

/** Validators for kad-dht's `validators` option. Every DHT server must have them. */
export const peerRecordValidators = {
  [PEER_RECORD_NAMESPACE]: async (key: Uint8Array, value: Uint8Array): Promise<void> => {
    await validatePeerRecord(key, value)
  }
}

/** Selectors for kad-dht's `selectors` option. */
export const peerRecordSelectors = {
  [PEER_RECORD_NAMESPACE]: selectPeerRecord
}
