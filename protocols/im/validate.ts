import { ID_BYTES, MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES, MAX_GROUP_BYTES } from './constants.js'
import { Ack } from './pb/im.js'
import type { ChatMessage } from './pb/im.js'

const utf8 = new TextEncoder()
/** Where `utf8Length` encodes a short string, so that measuring one allocates nothing. */
const scratch = new Uint8Array(MAX_BODY_BYTES)

/** UTF-8 length of a string (a lone surrogate counts as U+FFFD, 3 bytes, as it would be sent). */
export function utf8Length (text: string): number {
  // a UTF-16 code unit becomes at most 3 UTF-8 bytes, so a short string fits the scratch buffer whole
  if (text.length * 3 <= scratch.byteLength) {
    return utf8.encodeInto(text, scratch).written
  }
  return utf8.encode(text).byteLength
}

/** RFC 9110 section 5.6.2: `token = 1*tchar`. */
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
/**
 * RFC 9110 section 5.6.4, printable ASCII only (no HTAB, no obs-text):
 * `DQUOTE *( qdtext / quoted-pair ) DQUOTE`.
 */
const QUOTED_STRING = '"(?:[ !#-\\[\\]-~]|\\\\[ -~])*"'
/**
 * `type "/" subtype *( OWS ";" OWS parameter )`, `parameter = token "=" ( token / quoted-string )`,
 * with OWS limited to spaces. Every part is unambiguous (a token holds neither
 * space, ";" nor '"'), so matching is linear in the length.
 */
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?: *; *${TOKEN}=(?:${TOKEN}|${QUOTED_STRING}))*$`)

/**
 * Whether `text` may be sent as a `content_type` (spec section 3): a media type
 * in the syntax of RFC 9110 section 8.3.1 (RFC 6838), printable ASCII only, at
 * most 128 bytes. For example `text/plain`, `text/markdown; charset=utf-8`,
 * `application/vnd.foo+json`. The names are not checked against a registry.
 */
export function isMediaType (text: string): boolean {
  // printable ASCII: one byte a character, so the length is the byte length
  return text.length <= MAX_CONTENT_TYPE_BYTES && MEDIA_TYPE.test(text)
}

/**
 * Checks a received message against the limits of spec section 6. Returns the
 * refusing Ack status, or `undefined` when the message is acceptable.
 */
export function refusalFor (message: ChatMessage, options: { groups?: boolean } = {}): Ack.Status | undefined {
  if (message.group != null) {
    // only a /im/1.1.0 peer may send one (a 1.0.0 receiver would show it as an empty one-to-one message)
    if (options.groups !== true || message.body !== '') return Ack.Status.INVALID
    if (message.group.byteLength > MAX_GROUP_BYTES) return Ack.Status.TOO_LARGE
  }
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
  // the decoder turns ill-formed UTF-8 into lone surrogates: text nobody can show or send back
  if (!message.body.isWellFormed()) {
    return Ack.Status.INVALID
  }
  if (message.contentType != null) {
    if (utf8Length(message.contentType) > MAX_CONTENT_TYPE_BYTES) {
      return Ack.Status.TOO_LARGE
    }
    if (!isMediaType(message.contentType)) {
      return Ack.Status.INVALID
    }
  }
  return undefined
}
