/**
 * Message ids as text. On the wire an id (and `reply_to`) is any 16 bytes
 * (spec section 3: UUIDv7 recommended, not required), so these read and write
 * the UUID layout (8-4-4-4-12 hex digits) without checking a UUID's version
 * or variant: a foreign client's id that is not a UUID still has a name.
 * The one conversion between the two forms in parley: use these rather than
 * converting by hand.
 */
import { randomFillSync } from 'node:crypto'
import { v7 as uuidv7 } from 'uuid'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { ID_BYTES } from '../protocols/im/index.js'

const ID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** 16 bytes as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case. */
export function idToString (id: Uint8Array): string {
  if (id.byteLength !== ID_BYTES) throw new RangeError(`a message id is ${ID_BYTES} bytes, not ${id.byteLength}`)
  const hex = uint8ArrayToString(id, 'base16')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export function isMessageId (text: unknown): text is string {
  return typeof text === 'string' && ID_TEXT.test(text)
}

/** The 16 bytes of an id written by `idToString` (any case). */
export function idFromString (text: string): Uint8Array<ArrayBuffer> {
  if (!isMessageId(text)) throw new RangeError(`"${text}" is not a message id (32 hex digits as 8-4-4-4-12)`)
  // base16 is the lower-case alphabet
  return uint8ArrayFromString(text.replaceAll('-', '').toLowerCase(), 'base16')
}

/** Random bytes for `newMessageId`, drawn 256 ids at a time. */
const pool = new Uint8Array(16 * 256)
let drawn = pool.length
/** The last id's millisecond and counter, as `uuid` keeps them: ids from one process sort in the order they were made. */
let lastMs = -Infinity
let counter = 0

/**
 * A new message id: a UUIDv7 as `uuid`'s `v7()` makes it (the same
 * millisecond and counter state, so that ids sort as they were made), with
 * its random bytes taken from a pool: `v7()` asks the kernel for 16 bytes per
 * id, a system call on the path of every message sent.
 */
export function newMessageId (): string {
  if (drawn === pool.length) {
    randomFillSync(pool)
    drawn = 0
  }
  const random = pool.subarray(drawn, drawn += 16)
  const now = Date.now()
  if (now > lastMs) {
    lastMs = now
    // a new millisecond starts the counter at a random 31-bit value, as `uuid` does
    counter = ((random[6] & 0x7f) << 24) | (random[7] << 16) | (random[8] << 8) | random[9]
  } else {
    counter = (counter + 1) | 0
    if (counter === 0) lastMs++
  }
  return uuidv7({ random, msecs: lastMs, seq: counter })
}
