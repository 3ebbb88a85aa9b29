/**
 * The /parley/file/1.0.0 wire rules shared by the fetcher (./client.ts) and
 * the server (./server.ts): the protocol id, the bounds of the spec
 * (README.md §3–§5), the framing (protobuf messages behind an unsigned varint
 * length prefix, it-length-prefixed) and how chunks are hashed (§3).
 */
import { sha256 } from '@noble/hashes/sha2.js'
import * as lp from 'it-length-prefixed'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { Request, Response } from './pb/file.js'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export const FILE_PROTOCOL = '/parley/file/1.0.0'

/** Every chunk but the last is this long (spec §3): small enough that a few fit in a stock relay circuit (128 KiB). */
export const CHUNK_BYTES = 32_768

/** Bytes of one chunk hash (SHA-256). */
export const HASH_BYTES = 32

/** Largest file an offer may announce (spec §3): 4 GiB, 131,072 chunks, a 4 MiB hash list. */
export const MAX_FILE_BYTES = 4 * 1024 ** 3

/** Most chunks one CHUNKS request may ask for (spec §5.1). */
export const MAX_REQUEST_CHUNKS = 1_024

/** Most hashes one HASHES request may ask for (spec §5.2): one 64 KiB frame. */
export const MAX_REQUEST_HASHES = 2_048

/** Largest frame either side sends or accepts: a full chunk or hash page and the fields around it. */
export const MAX_FRAME_BYTES = CHUNK_BYTES * 2 + 512

/** Bytes of an offer id: a message id. */
export const OFFER_ID_BYTES = 16

/** Longest `Response.reason`, in bytes of UTF-8. */
export const MAX_REASON_BYTES = 256

/** How many chunks a file of `size` bytes has. */
export function chunkCount (size: number): number {
  return Math.ceil(size / CHUNK_BYTES)
}

/** The length of chunk `index` of a file of `size` bytes. */
export function chunkLength (size: number, index: number): number {
  return Math.min(CHUNK_BYTES, size - index * CHUNK_BYTES)
}

/** A SHA-256 function: @noble/hashes by default (browser-safe); a node may pass its platform's, which is faster. */
export type Sha256 = (data: Uint8Array) => Uint8Array

/** The SHA-256 of a chunk. */
export function hashChunk (data: Uint8Array): Uint8Array {
  return sha256(data)
}

/** The root of a hash list (spec §3): the SHA-256 of the chunk hashes, concatenated in order. */
export function hashListRoot (hashes: Uint8Array): Uint8Array {
  return sha256(hashes)
}

/** Whether `data` is chunk `index` according to the verified hash list `hashes`. */
export function chunkMatches (hashes: Uint8Array, index: number, data: Uint8Array, hash: Sha256 = hashChunk): boolean {
  return uint8ArrayEquals(hash(data), hashes.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES))
}

/** One frame with its varint length prefix, ready for `stream.send`. */
export function requestFrame (request: Partial<Request>): Uint8ArrayList {
  return lp.encode.single(Request.encode(request))
}

export function responseFrame (response: Partial<Response>): Uint8ArrayList {
  return lp.encode.single(Response.encode(response))
}

/**
 * The length-prefixed frames of a stream, still encoded. An oversized length
 * prefix is refused before anything is buffered (InvalidDataLengthError).
 */
export function readFrames (source: AsyncIterable<Uint8Array | Uint8ArrayList>): AsyncGenerator<Uint8ArrayList> {
  return lp.decode(source, { maxDataLength: MAX_FRAME_BYTES })
}

/** Sends one frame, waiting for the stream to drain when its buffer is full. */
export async function sendFrame (stream: Stream, data: Uint8ArrayList, options?: { signal?: AbortSignal }): Promise<void> {
  if (!stream.send(data)) await stream.onDrain(options)
}
