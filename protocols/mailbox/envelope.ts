/**
 * The sealed envelope of parley's mailboxes (protocols/mailbox/README.md §4):
 * an /im ChatMessage or a receipt, signed by its sender's libp2p key and bound
 * to its recipient's peer ID, then sealed with HPKE (RFC 9180) to one of the
 * recipient's mailbox keys. A mailbox host stores the result without being able
 * to read it, tell who sent it, or change a byte of it undetected.
 *
 * Pure: no I/O, no clock (the sender passes `createdAt`).
 */
import { Chacha20Poly1305 } from '@hpke/chacha20poly1305'
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core'
import { peerIdFromMultihash, peerIdFromPrivateKey } from '@libp2p/peer-id'
import { sha256 } from '@noble/hashes/sha2.js'
import * as Digest from 'multiformats/hashes/digest'
import { concat as uint8ArrayConcat } from 'uint8arrays/concat'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { ChatMessage } from '../im/pb/im.js'
import { Envelope, Sealed, Signed } from './pb/mailbox.js'
import { MAX_ENVELOPE_BYTES } from './protocol.js'
import type { ReceiptEntry } from './pb/mailbox.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export const ENVELOPE_VERSION = 1

// the largest encoded Envelope is the protocol's (§5): senders never seal a larger one, hosts and recipients refuse one
export { MAX_ENVELOPE_BYTES }

/** Bytes of a raw X25519 key, public or private. */
export const MAILBOX_KEY_BYTES = 32

/** Bytes of a key id: the first bytes of SHA-256(public key). */
export const MAILBOX_KEY_ID_BYTES = 8

/** Most entries one receipt may answer. */
export const MAX_RECEIPT_ENTRIES = 256

/** Bytes of a ChatMessage id, hence of a receipt entry's id. */
export const RECEIPT_ID_BYTES = 16

/** Largest reply record (the sender's own signed mailbox record) an envelope may carry. */
export const MAX_REPLY_RECORD_BYTES = 4096

/** HPKE `info` starts with this; the recipient's peer ID bytes follow. */
export const ENVELOPE_INFO_PREFIX = 'parley-mailbox/1 envelope'

/** The sender signs this, a 0x00 byte, the recipient's peer ID bytes and SHA-256 of `Signed`. */
export const SEALED_SIGNATURE_DOMAIN = 'parley-mailbox/1 sealed'

const INFO_PREFIX_BYTES = uint8ArrayFromString(ENVELOPE_INFO_PREFIX)
const SIGNATURE_DOMAIN_BYTES = uint8ArrayFromString(SEALED_SIGNATURE_DOMAIN)

/** An X25519 key pair, raw bytes (RFC 7748), 32 bytes each. */
export interface MailboxKeyPair {
  publicKey: Uint8Array
  privateKey: Uint8Array
}

/** What an envelope carries: exactly one of an encoded /im ChatMessage or a receipt. */
export type SealedContent = { message: Uint8Array } | { receipt: ReceiptEntry[] }

export interface SealOptions {
  /** The sender's libp2p identity key; its peer ID must embed the public key (Ed25519 does). */
  senderKey: PrivateKey
  recipient: PeerId
  /** The recipient's mailbox public key (raw X25519), from its mailbox record. */
  recipientKey: Uint8Array
  content: SealedContent
  /** The sender's own signed mailbox record, so that the recipient can answer while the sender is offline. */
  replyRecord?: Uint8Array
  /** ms since the epoch, the sender's clock. */
  createdAt: number
}

export interface OpenedEnvelope {
  /** Authenticated: the envelope's signature verifies with this peer's key. */
  sender: PeerId
  recipient: PeerId
  createdAt: number
  /** Decoded, but not yet checked against the /im rules (size, UTF-8, id length…). */
  message?: ChatMessage
  receipt?: ReceiptEntry[]
  replyRecord?: Uint8Array
}

export interface OpenOptions {
  /** This node: an envelope whose content names another recipient is refused. */
  recipient: PeerId
  /** This node's mailbox private key with that key id, if it has (still) one. */
  privateKeyFor: (keyId: Uint8Array) => Uint8Array | undefined
}

/** An envelope that cannot be sealed or opened; the message says which rule it breaks. */
export class InvalidEnvelopeError extends Error {
  static override name = 'InvalidEnvelopeError'
  override name = 'InvalidEnvelopeError'
}

// one suite for every envelope: RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20-Poly1305
const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Chacha20Poly1305()
})

export async function generateMailboxKeyPair (): Promise<MailboxKeyPair> {
  const pair = await suite.kem.generateKeyPair()
  return {
    publicKey: new Uint8Array(await suite.kem.serializePublicKey(pair.publicKey)),
    privateKey: new Uint8Array(await suite.kem.serializePrivateKey(pair.privateKey))
  }
}

/** Which mailbox key an envelope is sealed to: the first 8 bytes of SHA-256(public key). */
export function mailboxKeyId (publicKey: Uint8Array): Uint8Array {
  return sha256(publicKey).subarray(0, MAILBOX_KEY_ID_BYTES)
}

function peerIdBytes (peerId: PeerId): Uint8Array {
  return peerId.toMultihash().bytes
}

function envelopeInfo (recipient: Uint8Array): Uint8Array {
  return uint8ArrayConcat([INFO_PREFIX_BYTES, recipient])
}

/** What the sender signs: the domain, 0x00, the recipient's peer ID bytes, SHA-256 of the encoded Signed. */
function signatureInput (recipient: Uint8Array, signed: Uint8Array): Uint8Array {
  return uint8ArrayConcat([SIGNATURE_DOMAIN_BYTES, Uint8Array.of(0), recipient, sha256(signed)])
}

function checkReceipt (entries: ReceiptEntry[]): void {
  if (entries.length === 0 || entries.length > MAX_RECEIPT_ENTRIES) {
    throw new InvalidEnvelopeError(`a receipt answers 1 to ${MAX_RECEIPT_ENTRIES} messages, not ${entries.length}`)
  }
  if (entries.some(e => e.id.length !== RECEIPT_ID_BYTES)) {
    throw new InvalidEnvelopeError(`a receipt entry's id must be ${RECEIPT_ID_BYTES} bytes`)
  }
}

function checkReplyRecord (replyRecord: Uint8Array | undefined): void {
  if (replyRecord != null && replyRecord.length > MAX_REPLY_RECORD_BYTES) {
    throw new InvalidEnvelopeError(`reply record of ${replyRecord.length} bytes, over ${MAX_REPLY_RECORD_BYTES}`)
  }
}

/**
 * Signs and seals `content` for `recipient` under its mailbox key.
 *
 * @returns an encoded Envelope, at most MAX_ENVELOPE_BYTES
 * @throws InvalidEnvelopeError when the content breaks a bound or the result would be too large
 */
export async function sealEnvelope (options: SealOptions): Promise<Uint8Array> {
  const { senderKey, recipient, recipientKey, content, replyRecord, createdAt } = options
  if (recipientKey.length !== MAILBOX_KEY_BYTES) {
    throw new InvalidEnvelopeError(`a mailbox key is ${MAILBOX_KEY_BYTES} bytes, not ${recipientKey.length}`)
  }
  if (!Number.isSafeInteger(createdAt) || createdAt < 0) {
    throw new InvalidEnvelopeError(`createdAt must be ms since the epoch, not ${createdAt}`)
  }
  const hasMessage = 'message' in content && content.message != null
  const hasReceipt = 'receipt' in content && content.receipt != null
  if (hasMessage === hasReceipt) {
    throw new InvalidEnvelopeError('an envelope carries exactly one of a message or a receipt')
  }
  if ('receipt' in content) checkReceipt(content.receipt)
  checkReplyRecord(replyRecord)
  const sender = peerIdFromPrivateKey(senderKey)
  if (sender.publicKey == null) {
    throw new InvalidEnvelopeError('the sender\'s peer ID must embed its public key')
  }
  const recipientBytes = peerIdBytes(recipient)
  const signed = Signed.encode({
    sender: peerIdBytes(sender) as Uint8Array<ArrayBuffer>,
    recipient: recipientBytes as Uint8Array<ArrayBuffer>,
    createdAt: BigInt(createdAt),
    message: 'message' in content ? content.message as Uint8Array<ArrayBuffer> : undefined,
    receipt: 'receipt' in content ? { entries: content.receipt } : undefined,
    replyRecord: replyRecord as Uint8Array<ArrayBuffer> | undefined
  })
  const signature = await senderKey.sign(signatureInput(recipientBytes, signed))
  const plaintext = Sealed.encode({ signed, signature: signature as Uint8Array<ArrayBuffer> })
  const keyId = mailboxKeyId(recipientKey)
  let sealed: { enc: ArrayBuffer, ct: ArrayBuffer }
  try {
    sealed = await suite.seal({
      recipientPublicKey: await suite.kem.deserializePublicKey(recipientKey),
      info: envelopeInfo(recipientBytes)
    }, plaintext, keyId)
  } catch (err: any) {
    throw new InvalidEnvelopeError(`cannot seal to that mailbox key: ${err.message}`)
  }
  const envelope = Envelope.encode({
    version: ENVELOPE_VERSION,
    keyId: keyId as Uint8Array<ArrayBuffer>,
    enc: new Uint8Array(sealed.enc),
    ciphertext: new Uint8Array(sealed.ct)
  })
  if (envelope.length > MAX_ENVELOPE_BYTES) {
    throw new InvalidEnvelopeError(`the sealed envelope is ${envelope.length} bytes, over ${MAX_ENVELOPE_BYTES}`)
  }
  return envelope
}

function decodeEnvelope (bytes: Uint8Array): Envelope {
  if (bytes.length > MAX_ENVELOPE_BYTES) {
    throw new InvalidEnvelopeError(`envelope of ${bytes.length} bytes, over ${MAX_ENVELOPE_BYTES}`)
  }
  let envelope: Envelope
  try {
    envelope = Envelope.decode(bytes)
  } catch (err: any) {
    throw new InvalidEnvelopeError(`not an Envelope: ${err.message}`)
  }
  // one encoding per envelope: unknown fields, repeated or reordered fields
  // would let anyone on the way make new bytes of the same envelope, which a
  // host or a recipient deduplicating by bytes would take for another one
  if (!uint8ArrayEquals(Envelope.encode(envelope), bytes)) {
    throw new InvalidEnvelopeError('the Envelope is not in its canonical encoding')
  }
  if (envelope.version !== ENVELOPE_VERSION) {
    throw new InvalidEnvelopeError(`unknown envelope version ${envelope.version}`)
  }
  if (envelope.keyId.length !== MAILBOX_KEY_ID_BYTES) {
    throw new InvalidEnvelopeError(`key id of ${envelope.keyId.length} bytes, not ${MAILBOX_KEY_ID_BYTES}`)
  }
  if (envelope.enc.length !== MAILBOX_KEY_BYTES) {
    throw new InvalidEnvelopeError(`encapsulated key of ${envelope.enc.length} bytes, not ${MAILBOX_KEY_BYTES}`)
  }
  return envelope
}

/**
 * Checks an envelope's shape without opening it: size, canonical encoding,
 * version, key id and encapsulated key lengths. What a host may check.
 *
 * @returns the key id it is sealed to
 * @throws InvalidEnvelopeError
 */
export function envelopeKeyId (bytes: Uint8Array): Uint8Array {
  return decodeEnvelope(bytes).keyId
}

/**
 * Opens an envelope addressed to `options.recipient`: decrypts it with the
 * mailbox key its key id names, checks that its content names this recipient
 * and that its sender signed it, and bounds what it carries.
 *
 * @throws InvalidEnvelopeError on any failure; the message says which check
 */
export async function openEnvelope (bytes: Uint8Array, options: OpenOptions): Promise<OpenedEnvelope> {
  const envelope = decodeEnvelope(bytes)
  const privateKey = options.privateKeyFor(envelope.keyId)
  if (privateKey == null) {
    throw new InvalidEnvelopeError('sealed to a mailbox key this node does not have (unknown or deleted)')
  }
  const recipientBytes = peerIdBytes(options.recipient)
  let plaintext: Uint8Array
  try {
    plaintext = new Uint8Array(await suite.open({
      recipientKey: await suite.kem.deserializePrivateKey(privateKey),
      enc: envelope.enc,
      info: envelopeInfo(recipientBytes)
    }, envelope.ciphertext, envelope.keyId))
  } catch {
    // the message of an HPKE error says nothing an attacker could use, nor anything useful
    throw new InvalidEnvelopeError('cannot decrypt: altered, or sealed for another recipient or key')
  }

  let sealed: Sealed
  let signed: Signed
  try {
    sealed = Sealed.decode(plaintext)
    signed = Signed.decode(sealed.signed, { limits: { receipt: { entries: MAX_RECEIPT_ENTRIES } } })
  } catch (err: any) {
    throw new InvalidEnvelopeError(`undecodable sealed content: ${err.message}`)
  }
  if (!uint8ArrayEquals(signed.recipient, recipientBytes)) {
    throw new InvalidEnvelopeError('the signed content names another recipient')
  }
  let sender: PeerId
  try {
    sender = peerIdFromMultihash(Digest.decode(signed.sender))
  } catch {
    throw new InvalidEnvelopeError('the sender is not a peer ID')
  }
  if (sender.publicKey == null) {
    throw new InvalidEnvelopeError('the sender\'s peer ID does not embed its public key')
  }
  let verified: boolean
  try {
    verified = await sender.publicKey.verify(signatureInput(recipientBytes, sealed.signed), sealed.signature)
  } catch {
    verified = false
  }
  if (!verified) {
    throw new InvalidEnvelopeError('the sender\'s signature does not verify')
  }

  if ((signed.message == null) === (signed.receipt == null)) {
    throw new InvalidEnvelopeError('an envelope carries exactly one of a message or a receipt')
  }
  if (signed.receipt != null) checkReceipt(signed.receipt.entries)
  checkReplyRecord(signed.replyRecord)
  if (signed.createdAt > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidEnvelopeError('createdAt out of range')
  }
  let message: ChatMessage | undefined
  if (signed.message != null) {
    try {
      message = ChatMessage.decode(signed.message)
    } catch (err: any) {
      throw new InvalidEnvelopeError(`the message is not a ChatMessage: ${err.message}`)
    }
  }
  return {
    sender,
    recipient: options.recipient,
    createdAt: Number(signed.createdAt),
    message,
    receipt: signed.receipt?.entries,
    replyRecord: signed.replyRecord
  }
}
