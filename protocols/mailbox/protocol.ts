/**
 * The /parley/mailbox/1.0.0 wire rules shared by the client (./client.ts) and
 * a host (relay/mailbox/service.ts): the protocol id, the bounds of the spec
 * (README.md §5–§6) and the framing: protobuf messages behind an unsigned
 * varint length prefix (it-length-prefixed), each at most MAX_FRAME_BYTES.
 */
import * as lp from 'it-length-prefixed'
import { Request, Response } from './pb/mailbox.js'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export const MAILBOX_PROTOCOL = '/parley/mailbox/1.0.0'

/** Largest frame either side sends or accepts (spec §5): 1 MiB, room for 15 envelopes of the maximum size. */
export const MAX_FRAME_BYTES = 1_048_576

/** Largest envelope a host may accept and a client may deposit or receive (spec §6.2). */
export const MAX_ENVELOPE_BYTES = 65_536

/** Longest envelope id a host may give (spec §6.3). */
export const MAX_ID_BYTES = 32

/** Longest `Deposit.mailbox` (a peer ID's multihash: 38 bytes for Ed25519, far less than this). */
export const MAX_PEER_ID_BYTES = 128

/** Most envelopes in one pushed `Response` (spec §6.3). */
export const MAX_PUSH_ENVELOPES = 64

/** Most ids in one `Delete` (spec §6.4). */
export const MAX_DELETE_IDS = 1_000

/** The window a host uses when `Open.window` is 0, and the largest it grants (spec §6.3). */
export const DEFAULT_WINDOW = 64
export const MAX_WINDOW = 256

/** The decode limits of a Request: no repeated field may grow past what the spec allows. */
export const REQUEST_LIMITS = { limits: { delete: { ids: MAX_DELETE_IDS } } }

/** The decode limits of a Response. */
export const RESPONSE_LIMITS = { limits: { envelopes: MAX_PUSH_ENVELOPES } }

/** One frame with its varint length prefix, ready for `stream.send`. */
export function frame (bytes: Uint8Array): Uint8ArrayList {
  return lp.encode.single(bytes)
}

/** Encodes a request as one frame. */
export function requestFrame (request: Partial<Request>): Uint8ArrayList {
  return frame(Request.encode(request))
}

/** Encodes a response as one frame. */
export function responseFrame (response: Partial<Response>): Uint8ArrayList {
  return frame(Response.encode(response))
}

/**
 * The length-prefixed frames of a stream, still encoded. An oversized length
 * prefix is refused before anything is buffered (it-length-prefixed's
 * InvalidDataLengthError); a stream that ends inside a frame is an error too.
 */
export function readFrames (source: AsyncIterable<Uint8Array | Uint8ArrayList>): AsyncGenerator<Uint8ArrayList> {
  return lp.decode(source, { maxDataLength: MAX_FRAME_BYTES })
}

/** Sends one frame, waiting for the stream to drain when its buffer is full. */
export async function sendFrame (stream: Stream, data: Uint8ArrayList, options?: { signal?: AbortSignal }): Promise<void> {
  if (!stream.send(data)) await stream.onDrain(options)
}
