/**
 * The /im/1.0.0 framing (spec section 2): protobuf `Frame`s, each behind an
 * unsigned varint length prefix, at most MAX_FRAME_BYTES each.
 */
import * as lp from 'it-length-prefixed'
import { MAX_FRAME_BYTES } from './constants.js'
import { ProtocolViolationError } from './errors.js'
import { Frame } from './pb/im.js'
import type { Uint8ArrayList } from 'uint8arraylist'

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
