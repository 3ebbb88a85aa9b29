/**
 * The fetching side of /parley/file/1.0.0 (spec §5): one stream to the
 * offering node carrying HASHES, CHUNKS and FINISH requests one after another.
 *
 * Everything read is bounded and checked before use: frame size (before
 * buffering), the hash page's length, each chunk's index, length and hash
 * against the verified hash list. A chunk that does not match is refused
 * (CorruptChunkError) and nothing after it is read from that stream.
 */
import { Request, Response } from './pb/file.js'
import { chunkLength, chunkMatches, HASH_BYTES, MAX_REQUEST_CHUNKS, MAX_REQUEST_HASHES, readFrames, requestFrame, sendFrame } from './protocol.js'
import type { Sha256 } from './protocol.js'
import type { AbortOptions, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

/** The server refused a request, and said why. */
export class FileRefusedError extends Error {
  static override name = 'FileRefusedError'
  override name = 'FileRefusedError'
  readonly status: Response.Status
  readonly reason: string
  readonly retryAfterMs?: number

  constructor (status: Response.Status, reason: string, retryAfterMs?: number) {
    super(`the sender refused: ${status}${reason === '' ? '' : ` (${reason})`}`)
    this.status = status
    this.reason = reason
    this.retryAfterMs = retryAfterMs
  }
}

/** The server broke the protocol: an oversized or undecodable frame, a wrong index or length, a missing answer. */
export class FileProtocolError extends Error {
  static override name = 'FileProtocolError'
  override name = 'FileProtocolError'
}

/** A chunk's bytes do not match its hash: refused, to be fetched again. */
export class CorruptChunkError extends FileProtocolError {
  static override name = 'CorruptChunkError'
  override name = 'CorruptChunkError'
  constructor (readonly index: number) {
    super(`chunk ${index} does not match its hash`)
  }
}

/** One verified chunk. */
export interface FetchedChunk {
  index: number
  data: Uint8Array
}

function decodeResponse (buf: Uint8ArrayList): Response {
  try {
    return Response.decode(buf)
  } catch (err: any) {
    throw new FileProtocolError(`undecodable response: ${String(err.message)}`)
  }
}

/** A fetcher's stream to the offering node. Not for concurrent use: one request at a time. */
export class FileFetchStream {
  private readonly frames: AsyncIterator<Uint8ArrayList>
  private readonly hash?: Sha256

  constructor (readonly stream: Stream, options: { hash?: Sha256 } = {}) {
    this.frames = readFrames(stream)[Symbol.asyncIterator]()
    this.hash = options.hash
  }

  /** The hashes `first .. first+count-1` of the offer's list (not verified: the caller checks the root). */
  async hashes (offer: Uint8Array<ArrayBuffer>, first: number, count: number, options: AbortOptions = {}): Promise<Uint8Array> {
    if (count < 1 || count > MAX_REQUEST_HASHES) throw new RangeError(`ask for 1 to ${MAX_REQUEST_HASHES} hashes`)
    await sendFrame(this.stream, requestFrame({ offer, kind: Request.Kind.HASHES, first, count }), options)
    const response = await this.read(options)
    if (response.index !== first || response.data.byteLength !== count * HASH_BYTES) {
      throw new FileProtocolError(`asked for ${count} hashes from ${first}, got ${response.data.byteLength} bytes from ${response.index}`)
    }
    return response.data
  }

  /**
   * Chunks `first .. first+count-1` of a file of `size` bytes, each checked
   * against `hashes` (the verified list) before it is yielded. Leaving the
   * loop early leaves the stream unusable: close it.
   */
  async * chunks (offer: Uint8Array<ArrayBuffer>, size: number, hashes: Uint8Array, first: number, count: number, options: AbortOptions = {}): AsyncGenerator<FetchedChunk> {
    if (count < 1 || count > MAX_REQUEST_CHUNKS) throw new RangeError(`ask for 1 to ${MAX_REQUEST_CHUNKS} chunks`)
    await sendFrame(this.stream, requestFrame({ offer, kind: Request.Kind.CHUNKS, first, count }), options)
    for (let index = first; index < first + count; index++) {
      const response = await this.read(options)
      if (response.index !== index || response.data.byteLength !== chunkLength(size, index)) {
        throw new FileProtocolError(`expected chunk ${index} of ${chunkLength(size, index)} bytes, got chunk ${response.index} of ${response.data.byteLength}`)
      }
      if (!chunkMatches(hashes, index, response.data, this.hash)) throw new CorruptChunkError(index)
      yield { index, data: response.data }
    }
  }

  /** Tells the server the fetcher is done with the offer. */
  async finish (offer: Uint8Array<ArrayBuffer>, outcome: 'complete' | 'refused', options: AbortOptions = {}): Promise<void> {
    await sendFrame(this.stream, requestFrame({ offer, kind: Request.Kind.FINISH, outcome: outcome === 'refused' ? Request.Outcome.REFUSED : Request.Outcome.COMPLETE }), options)
    await this.read(options)
  }

  async close (): Promise<void> {
    await this.stream.close().catch(err => { this.stream.abort(err) })
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  /** The next OK response; a refusal throws FileRefusedError, the stream ending first FileProtocolError. */
  private async read (options: AbortOptions): Promise<Response> {
    options.signal?.throwIfAborted()
    const onAbort = (): void => { this.stream.abort(options.signal?.reason ?? new Error('aborted')) }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    let next: IteratorResult<Uint8ArrayList>
    try {
      next = await this.frames.next()
    } catch (err: any) {
      if (options.signal?.aborted === true) throw options.signal.reason
      if (err?.name === 'InvalidDataLengthError') throw new FileProtocolError(`the sender sent an oversized frame: ${String(err.message)}`)
      throw err
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
    if (next.done === true) throw new FileProtocolError('the sender closed the stream without answering')
    const response = decodeResponse(next.value)
    if (response.status !== Response.Status.OK) throw new FileRefusedError(response.status, response.reason, response.status === Response.Status.RATE_LIMITED ? response.retryAfterMs : undefined)
    return response
  }
}
