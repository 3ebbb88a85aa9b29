/**
 * The /im/1.0.0 framing (spec section 2): protobuf `Frame`s, each behind an
 * unsigned varint length prefix, at most MAX_FRAME_BYTES each.
 */
import * as lp from 'it-length-prefixed'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { MAX_FRAME_BYTES } from './constants.js'
import { ProtocolViolationError } from './errors.js'
import { Frame } from './pb/im.js'

/**
 * Encodes one frame with its varint length prefix, in one buffer, ready for
 * `stream.send`. One buffer, not a list of prefix and body: below the muxer,
 * Noise runs one cipher update per buffer of a list and TCP one socket write
 * per buffer of its output, so a batch of 16 frames as a list cost 33
 * updates and 36 writes where one buffer costs 2 and 4 (BENCHMARKS.md).
 */
export function encodeFrame (frame: Frame): Uint8Array {
  return lp.encode.single(Frame.encode(frame)).subarray()
}

/**
 * Decodes a frame and enforces "exactly one of message / ack" (spec section 2).
 * Throws only ProtocolViolationError.
 */
export function decodeFrame (buf: Uint8Array | Uint8ArrayList): Frame {
  let frame: Frame
  try {
    frame = Frame.decode(buf)
  } catch (err: any) {
    throw new ProtocolViolationError(`undecodable frame: ${err.message}`)
  }
  if ((frame.message == null) === (frame.ack == null)) {
    throw new ProtocolViolationError('a frame must carry exactly one of message and ack')
  }
  return frame
}

/** The longest varint a frame's length can take (it-length-prefixed's limit). */
const MAX_PREFIX_BYTES = 8

/**
 * Cuts a stream's frames out of its chunks as they come, synchronously: a
 * reader that answers from inside the stream's `message` event (no promise
 * between the bytes and the answer) feeds it each chunk and takes the whole
 * frames. An oversized length is refused before its frame is buffered, as
 * is a length prefix that is too long or not minimally encoded
 * (ProtocolViolationError), and `inFrame` tells whether the stream stopped
 * inside a frame. it-length-prefixed decodes only from an iterator it pulls,
 * which cannot wait for the next chunk synchronously; the varint is
 * uint8-varint's, as in it-length-prefixed.
 */
export class FrameReader {
  private readonly buffer = new Uint8ArrayList()
  /** The length of the frame being read, once its prefix is in; -1 before. */
  private length = -1

  push (chunk: Uint8Array | Uint8ArrayList): void {
    this.buffer.append(chunk)
  }

  /** The next whole frame, still encoded, or undefined until more bytes come. Throws only ProtocolViolationError. */
  next (): Uint8ArrayList | undefined {
    if (this.length < 0) {
      // the prefix ends at the first byte without the continuation bit
      let prefix = 0
      while (prefix < this.buffer.byteLength && (this.buffer.get(prefix) & 0x80) !== 0) prefix++
      if (prefix >= MAX_PREFIX_BYTES) throw new ProtocolViolationError('frame length prefix too long')
      if (prefix === this.buffer.byteLength) return undefined
      prefix++
      const length = varint.decode(this.buffer)
      // unsigned-varint's rule: a length has one encoding; another would cut the stream in a different place
      if (varint.encodingLength(length) !== prefix) throw new ProtocolViolationError('frame length prefix not minimally encoded')
      if (length > MAX_FRAME_BYTES) throw new ProtocolViolationError(`frame of ${length} bytes is over the ${MAX_FRAME_BYTES}-byte limit`)
      this.buffer.consume(prefix)
      this.length = length
    }
    if (this.buffer.byteLength < this.length) return undefined
    const frame = this.buffer.sublist(0, this.length)
    this.buffer.consume(this.length)
    this.length = -1
    return frame
  }

  /** Whether bytes of an unfinished frame (or of its length) are buffered. */
  get inFrame (): boolean {
    return this.length >= 0 || this.buffer.byteLength > 0
  }
}
