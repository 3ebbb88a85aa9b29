/**
 * The group payload's bytes and signatures (protocols/group/README.md sections
 * 3-5): signing and verifying membership operations and group messages with
 * the authors' libp2p keys, each under its own domain string, and decoding
 * a peer's payload within the limits. Knows nothing of a group's state: that
 * is node/group/log.ts.
 */
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { sha256 } from '@noble/hashes/sha2.js'
import * as Digest from 'multiformats/hashes/digest'
import { concat as uint8ArrayConcat } from 'uint8arrays/concat'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import {
  HASH_BYTES, MAX_LOG_BYTES, MAX_MEMBERS, MAX_NAME_BYTES, MAX_OP_BYTES, MAX_OPS, MAX_PARENTS, MAX_PAYLOAD_BYTES,
  MESSAGE_DOMAIN, MESSAGE_ID_BYTES, NONCE_BYTES, OP_DOMAIN
} from './constants.js'
import { isMediaType } from '../im/validate.js'
import { MAX_CONTENT_TYPE_BYTES } from '../im/constants.js'
import { GroupMessage, GroupPayload, Op, SignedGroupMessage, SignedOp } from './pb/group.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export { GroupMessage, GroupPayload, Op, SignedGroupMessage, SignedOp, Create } from './pb/group.js'

/** A payload, op or message that does not follow the spec, or whose signature does not verify. */
export class InvalidGroupPayloadError extends Error {
  static override name = 'InvalidGroupPayloadError'
  override name = 'InvalidGroupPayloadError'
}

const OP_DOMAIN_BYTES = uint8ArrayFromString(OP_DOMAIN)
const MESSAGE_DOMAIN_BYTES = uint8ArrayFromString(MESSAGE_DOMAIN)

/** Hex of a hash or group ID, as the node names them. */
export function hex (bytes: Uint8Array): string {
  return uint8ArrayToString(bytes, 'base16')
}

export function fromHex (text: string): Uint8Array<ArrayBuffer> {
  return uint8ArrayFromString(text, 'base16') as Uint8Array<ArrayBuffer>
}

/** An op's hash: SHA-256 of its encoded `Op`; a create's hash is its group's ID. */
export function opHash (op: Uint8Array): Uint8Array {
  return sha256(op)
}

/** The kinds of membership operation (spec section 4.2). */
export type OpKind = 'create' | 'add' | 'remove' | 'leave' | 'rename' | 'add-admin' | 'remove-admin'

/** A signed op, checked: its signature verifies with its author's key, and every field is within bounds. */
export interface VerifiedOp {
  /** Hex SHA-256 of `bytes`. */
  hash: string
  /** Hex group ID (the hash itself for a create). */
  group: string
  author: string
  lamport: number
  /** Hex parent hashes. */
  parents: string[]
  createdAt: number
  kind: OpKind
  /** The member added or removed, or the admin made or unmade. */
  target?: string
  /** A create's or a rename's name. */
  name?: string
  /** A create's members besides its author. */
  members?: string[]
  /** The encoded Op and its signature, as received: what is forwarded. */
  bytes: Uint8Array
  signature: Uint8Array
}

/** A signed group message, checked like a VerifiedOp. */
export interface VerifiedGroupMessage {
  group: string
  sender: string
  /** Hex of the 16-byte id. */
  id: string
  seq: number
  lamport: number
  heads: string[]
  sentAt: number
  body: string
  contentType?: string
  bytes: Uint8Array
  signature: Uint8Array
}

function peerOf (bytes: Uint8Array, field: string): PeerId {
  try {
    return peerIdFromMultihash(Digest.decode(bytes))
  } catch {
    throw new InvalidGroupPayloadError(`${field} is not a peer ID`)
  }
}

function safeNumber (value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidGroupPayloadError(`${field} is over 2^53 - 1`)
  return Number(value)
}

function checkHashes (hashes: Uint8Array[], field: string): string[] {
  if (hashes.length > MAX_PARENTS) throw new InvalidGroupPayloadError(`more than ${MAX_PARENTS} ${field}`)
  const out = hashes.map(h => {
    if (h.length !== HASH_BYTES) throw new InvalidGroupPayloadError(`a hash of ${field} is not ${HASH_BYTES} bytes`)
    return hex(h)
  })
  if (new Set(out).size !== out.length) throw new InvalidGroupPayloadError(`${field} repeat a hash`)
  return out.sort()
}

async function verifySignature (signer: PeerId, domain: Uint8Array, bytes: Uint8Array, signature: Uint8Array): Promise<void> {
  if (signer.publicKey == null) throw new InvalidGroupPayloadError('the signer\'s peer ID does not hold its key (only Ed25519 and secp256k1 IDs can sign here)')
  let ok = false
  try {
    ok = await signer.publicKey.verify(uint8ArrayConcat([domain, bytes]), signature)
  } catch {}
  if (!ok) throw new InvalidGroupPayloadError('the signature does not verify with the signer\'s key')
}

/** Signs an op with the author's key. */
export async function signOp (key: PrivateKey, op: Op): Promise<SignedOp> {
  const bytes = Op.encode(op)
  if (bytes.length > MAX_OP_BYTES) throw new InvalidGroupPayloadError(`the operation is ${bytes.length} bytes, over ${MAX_OP_BYTES}`)
  const signature = await key.sign(uint8ArrayConcat([OP_DOMAIN_BYTES, bytes]))
  return { op: bytes, signature: signature as Uint8Array<ArrayBuffer> }
}

/** Signs a group message with the sender's key. */
export async function signMessage (key: PrivateKey, message: GroupMessage): Promise<SignedGroupMessage> {
  const bytes = GroupMessage.encode(message)
  const signature = await key.sign(uint8ArrayConcat([MESSAGE_DOMAIN_BYTES, bytes]))
  return { message: bytes, signature: signature as Uint8Array<ArrayBuffer> }
}

/**
 * Checks one signed op on its own (spec section 4.3): decodes, bounds, exactly
 * one kind, and the author's signature. Whether the author may do it is the
 * log's to say.
 */
export async function verifyOp (signed: SignedOp): Promise<VerifiedOp> {
  if (signed.op.length > MAX_OP_BYTES) throw new InvalidGroupPayloadError(`an operation is over ${MAX_OP_BYTES} bytes`)
  let op: Op
  try {
    op = Op.decode(signed.op, { limits: { parents: MAX_PARENTS, create: { members: MAX_MEMBERS - 1 } } })
  } catch (err: any) {
    throw new InvalidGroupPayloadError(`an operation does not decode: ${err.message}`)
  }
  const author = peerOf(op.author, 'the author')
  const kinds = [op.create, op.add, op.remove, op.leave, op.rename, op.addAdmin, op.removeAdmin].filter(v => v != null)
  if (kinds.length !== 1) throw new InvalidGroupPayloadError('an operation must be exactly one of create, add, remove, leave, rename, add_admin, remove_admin')
  const hash = hex(opHash(signed.op))
  const parents = checkHashes(op.parents, 'parents')
  const lamport = safeNumber(op.lamport, 'lamport')
  const base = { hash, author: author.toString(), lamport, parents, createdAt: safeNumber(op.createdAt, 'created_at'), bytes: signed.op, signature: signed.signature }
  let verified: VerifiedOp
  if (op.create != null) {
    if (op.group.length !== 0 || parents.length !== 0 || lamport !== 1) throw new InvalidGroupPayloadError('a create has no group, no parents and Lamport time 1')
    if (op.create.nonce.length !== NONCE_BYTES) throw new InvalidGroupPayloadError(`a create's nonce is not ${NONCE_BYTES} bytes`)
    checkName(op.create.name)
    const members = op.create.members.map(m => peerOf(m, 'a member').toString())
    if (new Set([...members, author.toString()]).size !== members.length + 1) throw new InvalidGroupPayloadError('a create names a member twice, or its author')
    if (members.length + 1 > MAX_MEMBERS) throw new InvalidGroupPayloadError(`a group has at most ${MAX_MEMBERS} members`)
    verified = { ...base, group: hash, kind: 'create', name: op.create.name, members }
  } else {
    if (op.group.length !== HASH_BYTES) throw new InvalidGroupPayloadError(`the group ID is not ${HASH_BYTES} bytes`)
    if (parents.length === 0) throw new InvalidGroupPayloadError('an operation other than create has parents')
    const group = hex(op.group)
    if (op.rename != null) {
      checkName(op.rename)
      verified = { ...base, group, kind: 'rename', name: op.rename }
    } else if (op.leave != null) {
      if (!op.leave) throw new InvalidGroupPayloadError('leave must be true')
      verified = { ...base, group, kind: 'leave' }
    } else {
      const [kind, target] = op.add != null
        ? ['add', op.add] as const
        : op.remove != null ? ['remove', op.remove] as const : op.addAdmin != null ? ['add-admin', op.addAdmin] as const : ['remove-admin', op.removeAdmin as Uint8Array] as const
      verified = { ...base, group, kind, target: peerOf(target, 'the target').toString() }
    }
  }
  await verifySignature(author, OP_DOMAIN_BYTES, signed.op, signed.signature)
  return verified
}

function checkName (name: string): void {
  const bytes = uint8ArrayFromString(name).length
  if (name.trim() === '' || bytes > MAX_NAME_BYTES || !name.isWellFormed() || /\p{Cc}/u.test(name)) {
    throw new InvalidGroupPayloadError(`a group name is 1 to ${MAX_NAME_BYTES} bytes of UTF-8 without control characters`)
  }
}

/** Checks a signed group message on its own (spec section 5.2): decodes, bounds, the sender's signature. */
export async function verifyMessage (signed: SignedGroupMessage, maxBodyBytes: number): Promise<VerifiedGroupMessage> {
  let message: GroupMessage
  try {
    message = GroupMessage.decode(signed.message, { limits: { heads: MAX_PARENTS } })
  } catch (err: any) {
    throw new InvalidGroupPayloadError(`a group message does not decode: ${err.message}`)
  }
  if (message.group.length !== HASH_BYTES) throw new InvalidGroupPayloadError(`the group ID is not ${HASH_BYTES} bytes`)
  if (message.id.length !== MESSAGE_ID_BYTES) throw new InvalidGroupPayloadError(`a group message id is not ${MESSAGE_ID_BYTES} bytes`)
  const sender = peerOf(message.sender, 'the sender')
  const seq = safeNumber(message.seq, 'seq')
  if (seq === 0) throw new InvalidGroupPayloadError('a group message\'s seq starts at 1')
  const heads = checkHashes(message.heads, 'heads')
  if (heads.length === 0) throw new InvalidGroupPayloadError('a group message names the heads it was sent under')
  if (uint8ArrayFromString(message.body).length > maxBodyBytes) throw new InvalidGroupPayloadError(`the body is over ${maxBodyBytes} bytes`)
  if (message.body.length === 0) throw new InvalidGroupPayloadError('the body is empty')
  // the decoder turns ill-formed UTF-8 into lone surrogates: text nobody can show or send back
  if (!message.body.isWellFormed()) throw new InvalidGroupPayloadError('the body is not well-formed UTF-8')
  if (message.contentType != null && (uint8ArrayFromString(message.contentType).length > MAX_CONTENT_TYPE_BYTES || !isMediaType(message.contentType))) {
    throw new InvalidGroupPayloadError('the content type is not a media type of at most 128 bytes')
  }
  await verifySignature(sender, MESSAGE_DOMAIN_BYTES, signed.message, signed.signature)
  return {
    group: hex(message.group),
    sender: sender.toString(),
    id: hex(message.id),
    seq,
    lamport: safeNumber(message.lamport, 'lamport'),
    heads,
    sentAt: safeNumber(message.sentAt, 'sent_at'),
    body: message.body,
    contentType: message.contentType,
    bytes: signed.message,
    signature: signed.signature
  }
}

/** Decodes a ChatMessage's `group` field within the limits (spec section 3); nothing verified yet. */
export function decodePayload (bytes: Uint8Array): GroupPayload {
  if (bytes.length > MAX_PAYLOAD_BYTES) throw new InvalidGroupPayloadError(`the group payload is over ${MAX_PAYLOAD_BYTES} bytes`)
  let payload: GroupPayload
  try {
    payload = GroupPayload.decode(bytes, { limits: { ops: MAX_OPS } })
  } catch (err: any) {
    throw new InvalidGroupPayloadError(`the group payload does not decode: ${err.message}`)
  }
  if (payload.ops.length === 0 && payload.message == null) throw new InvalidGroupPayloadError('the group payload is empty')
  return payload
}

export function encodePayload (payload: GroupPayload): Uint8Array {
  const bytes = GroupPayload.encode(payload)
  if (bytes.length > MAX_PAYLOAD_BYTES) throw new InvalidGroupPayloadError(`the group payload is ${bytes.length} bytes, over ${MAX_PAYLOAD_BYTES}`)
  return bytes
}

/** The encoded size of a log's ops in a payload, for the MAX_LOG_BYTES bound. */
export function logBytes (ops: Array<Pick<VerifiedOp, 'bytes' | 'signature'>>): number {
  return GroupPayload.encode({ ops: ops.map(o => ({ op: o.bytes as Uint8Array<ArrayBuffer>, signature: o.signature as Uint8Array<ArrayBuffer> })) }).length
}

export function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return uint8ArrayEquals(a, b)
}

export { MAX_LOG_BYTES }
