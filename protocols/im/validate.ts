import { ID_BYTES, MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES } from './constants.js'
import { Ack } from './pb/im.js'
import type { ChatMessage } from './pb/im.js'

const utf8 = new TextEncoder()

/** UTF-8 length of a string without allocating for the common ASCII case. */
export function utf8Length (text: string): number {
  // a UTF-16 code unit becomes at most 3 UTF-8 bytes, so short strings cannot be over
  if (text.length * 3 <= MAX_BODY_BYTES) {
    return Buffer.byteLength(text, 'utf8')
  }
  return utf8.encode(text).byteLength
}

/**
 * Checks a received message against the limits of spec section 6. Returns the
 * refusing Ack status, or `undefined` when the message is acceptable.
 */
export function refusalFor (message: ChatMessage): Ack.Status | undefined {
  if (message.id.byteLength !== ID_BYTES) {
    return Ack.Status.INVALID
  }
  if (message.seq === 0n || message.seq > BigInt(Number.MAX_SAFE_INTEGER)) {
    return Ack.Status.INVALID
  }
  if (message.replyTo != null && message.replyTo.byteLength !== ID_BYTES) {
    return Ack.Status.INVALID
  }
  if (utf8Length(message.body) > MAX_BODY_BYTES) {
    return Ack.Status.TOO_LARGE
  }
  if (message.contentType != null && utf8Length(message.contentType) > MAX_CONTENT_TYPE_BYTES) {
    return Ack.Status.TOO_LARGE
  }
  return undefined
}
