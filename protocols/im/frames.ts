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

/** Encodes one frame with its varint length prefix, ready for `stream.send`. */
export function encodeFrame (frame: Frame): Uint8ArrayList {
  return lp.encode.single(Frame.encode(frame))
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

/**
 * The length-prefixed frames of `source` (a stream), still encoded, refusing
 * an oversized prefix before buffering it (it-length-prefixed's
 * InvalidDataLengthError). A source that ends inside a frame is a
 * ProtocolViolationError (it-length-prefixed reports it only when some of the
 * frame's bytes came, not when it ends right after the prefix).
 */
export function readFrames (source: AsyncIterable<Uint8Array | Uint8ArrayList>): AsyncGenerator<Uint8ArrayList> {
  let inFrame = false
  // the decoder asks for the next chunk only once it has handed out every frame
  // of the ones before: when the source is done, its state is final
  async function * chunks (): AsyncGenerator<Uint8Array | Uint8ArrayList> {
    yield * source
    if (inFrame) throw new ProtocolViolationError('the stream ended inside a frame')
  }
  return lp.decode(chunks(), {
    maxDataLength: MAX_FRAME_BYTES,
    onLength: () => { inFrame = true },
    onData: () => { inFrame = false }
  })
}

/** The longest varint a frame's length can take (it-length-prefixed's limit). */
const MAX_PREFIX_BYTES = 8

/**
 * Cuts a stream's frames out of its chunks as they come, synchronously: a
 * reader that answers from inside the stream's `message` event (no promise
 * between the bytes and the answer) feeds it each chunk and takes the whole
 * frames. The same rules as `readFrames`: an oversized length is refused
 * before its frame is buffered (ProtocolViolationError), and `inFrame` tells
 * whether the stream stopped inside a frame. it-length-prefixed decodes only
 * from an iterator it pulls, which cannot wait for the next chunk
 * synchronously; the varint is uint8-varint's, as in it-length-prefixed.
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
      if (this.buffer.byteLength === 0) return undefined
      let length: number
      try {
        length = varint.decode(this.buffer)
      } catch (err: any) {
        if (!(err instanceof RangeError)) throw new ProtocolViolationError(`bad frame length: ${err.message}`)
        if (this.buffer.byteLength >= MAX_PREFIX_BYTES) throw new ProtocolViolationError('frame length prefix too long')
        return undefined
      }
      if (length > MAX_FRAME_BYTES) throw new ProtocolViolationError(`frame of ${length} bytes is over the ${MAX_FRAME_BYTES}-byte limit`)
      this.buffer.consume(varint.encodingLength(length))
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
