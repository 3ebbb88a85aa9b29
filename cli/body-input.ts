/**
 * A message body for `parley send` given on stdin, read with a bound: a body
 * is at most MAX_BODY_BYTES of UTF-8 (the /im protocol's limit), so nothing
 * past that is kept in memory, whatever is piped in.
 */
// straight from the constants file: it imports nothing, so the client commands load none of libp2p
import { MAX_BODY_BYTES } from '../protocols/im/constants.js'

/** Past this, stdin is no longer even counted: the refusal says "over" this many bytes. */
const COUNT_AT_MOST = 64 * 1024 * 1024

/** The body is over the protocol's limit. */
export class BodyTooLargeError extends Error {
  static override name = 'BodyTooLargeError'
  override name = 'BodyTooLargeError'
}

/** The body is not UTF-8 text. */
export class BodyNotTextError extends Error {
  static override name = 'BodyNotTextError'
  override name = 'BodyNotTextError'
}

/** The refusal for a body of `size` bytes (`atLeast`: it was longer still, and not read to its end). */
export function tooLargeMessage (size: number, limit = MAX_BODY_BYTES, atLeast = false): string {
  return `the message is ${atLeast ? 'over ' : ''}${size} bytes of UTF-8, over the ${limit}-byte limit of one message; ` +
    'nothing was sent. Split it into smaller messages (e.g. `split -b 30k`), or send it as a file once file transfer exists (file transfer is not available yet)'
}

/** Throws BodyTooLargeError when `text` is over the limit (the daemon would refuse it too, less helpfully). */
export function checkBodySize (text: string): void {
  const size = Buffer.byteLength(text, 'utf8')
  if (size > MAX_BODY_BYTES) throw new BodyTooLargeError(tooLargeMessage(size))
}

/**
 * Reads a body from `input` to its end: exact bytes, strictly UTF-8, with one
 * trailing line end (`\n` or `\r\n`, what `echo` and editors add) removed, as
 * shells do with `$(…)`; anything before it, other newlines included, is kept.
 * Over the limit, it keeps counting (not keeping) up to COUNT_AT_MOST bytes to
 * say how big the input was, then stops reading.
 */
export async function readBody (input: AsyncIterable<Uint8Array | string>, limit = MAX_BODY_BYTES): Promise<string> {
  // room for the limit plus the line end that is stripped
  const keep = limit + 2
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of input) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    if (size < keep) chunks.push(bytes.subarray(0, keep - size))
    size += bytes.byteLength
    if (size > COUNT_AT_MOST) throw new BodyTooLargeError(tooLargeMessage(COUNT_AT_MOST, limit, true))
  }
  // past `keep`, the input is over the limit whatever line end it has
  if (size > keep) throw new BodyTooLargeError(tooLargeMessage(size, limit))
  let body = Buffer.concat(chunks)
  if (body.at(-1) === 0x0a) body = body.subarray(0, body.at(-2) === 0x0d ? -2 : -1)
  if (body.byteLength > limit) throw new BodyTooLargeError(tooLargeMessage(body.byteLength, limit))
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body)
  } catch {
    throw new BodyNotTextError('the message on stdin is not valid UTF-8 text; nothing was sent')
  }
}
