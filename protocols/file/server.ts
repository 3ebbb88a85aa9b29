/**
 * The serving side of /parley/file/1.0.0 (spec §5): answers a fetcher's
 * HASHES, CHUNKS and FINISH requests for the offers the node made to that
 * fetcher, one request at a time per stream.
 *
 * Every chunk is hashed before it leaves and compared with the hash list made
 * when the file was offered: a file changed since then is never served, the
 * fetcher is told CHANGED and the node withdraws the offer. Streams are
 * bounded per peer and in total, an idle stream is closed, and a fetcher that
 * stops reading is cut off after the same timeout.
 */
import { serviceCapabilities } from '@libp2p/interface'
import { systemClock, timeoutSignal } from '../../common/clock.js'
import { Request, Response } from './pb/file.js'
import {
  chunkCount, chunkLength, chunkMatches, FILE_PROTOCOL, HASH_BYTES, MAX_REASON_BYTES, MAX_REQUEST_CHUNKS, MAX_REQUEST_HASHES,
  OFFER_ID_BYTES, readFrames, responseFrame, sendFrame
} from './protocol.js'
import type { Sha256 } from './protocol.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { ComponentLogger, Connection, Logger, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'

/** What the server reads one offered file's chunks with, for one stream. */
export interface ChunkReader {
  /** The bytes at chunk `index` as they are on disk now (`length` of them, or fewer if the file shrank). */
  read(index: number, length: number): Promise<Uint8Array<ArrayBuffer>>
  close(): Promise<void>
}

/** An offer as the node made it: what the server checks and serves. */
export interface OfferedFile {
  size: number
  /** The chunk hashes computed when the file was offered, concatenated. */
  hashes: Uint8Array<ArrayBuffer>
  open(): Promise<ChunkReader>
}

/** What the node tells the server, and what the server tells it back. */
export interface FileServerInit {
  /** The offer `offer` (its 16-byte id, hex) made to `peer`, while it stands; undefined otherwise. */
  lookup(offer: string, peer: PeerId): OfferedFile | undefined
  /** Chunks of `offer` were sent to `peer`: `bytes` more. */
  onServed?(offer: string, peer: PeerId, bytes: number): void
  /** The fetcher finished with the offer. */
  onFinish?(offer: string, peer: PeerId, outcome: 'complete' | 'refused'): void
  /** The file changed since it was offered, or cannot be read. */
  onUnservable?(offer: string, peer: PeerId, reason: string, changed: boolean): void
  /** Streams one peer may hold open at once (spec §5: RATE_LIMITED over it). @default 4 */
  maxStreamsPerPeer?: number
  /** Streams all peers together may hold open at once. @default 64 */
  maxStreams?: number
  /** ms a stream may wait for a request, or for the fetcher to read an answer. @default 30_000 */
  idleTimeout?: number
  /** How long a RATE_LIMITED fetcher is told to wait. @default 1_000 */
  retryAfter?: number
  /** The SHA-256 chunks are checked with (default @noble/hashes). */
  hash?: Sha256
  clock?: Clock
}

export interface FileServerComponents {
  registrar: Registrar
  logger: ComponentLogger
}

export const FILE_SERVER_DEFAULTS = {
  maxStreamsPerPeer: 4,
  maxStreams: 64,
  idleTimeout: 30_000,
  retryAfter: 1_000
}

function toHex (bytes: Uint8Array): string {
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}

/** A reason cut to the spec's bound (on a character boundary). */
function reasonOf (text: string): string {
  const bytes = new TextEncoder().encode(text)
  if (bytes.byteLength <= MAX_REASON_BYTES) return text
  return new TextDecoder().decode(bytes.subarray(0, MAX_REASON_BYTES - 3)).replace(/\uFFFD$/, '') + '…'
}

function refusal (status: Response.Status, reason: string, retryAfterMs?: number): Partial<Response> {
  return { status, reason: reasonOf(reason), ...(retryAfterMs == null ? {} : { retryAfterMs }) }
}

/** The /parley/file/1.0.0 server as a libp2p service. */
export class FileServer implements Startable {
  readonly protocol = FILE_PROTOCOL
  private readonly log: Logger
  private readonly limits: typeof FILE_SERVER_DEFAULTS
  private readonly clock: Clock
  private readonly streamsByPeer = new Map<string, number>()
  private streams = 0
  private started = false

  constructor (private readonly components: FileServerComponents, private readonly init: FileServerInit) {
    this.log = components.logger.forComponent('parley:file:server')
    this.limits = {
      maxStreamsPerPeer: init.maxStreamsPerPeer ?? FILE_SERVER_DEFAULTS.maxStreamsPerPeer,
      maxStreams: init.maxStreams ?? FILE_SERVER_DEFAULTS.maxStreams,
      idleTimeout: init.idleTimeout ?? FILE_SERVER_DEFAULTS.idleTimeout,
      retryAfter: init.retryAfter ?? FILE_SERVER_DEFAULTS.retryAfter
    }
    this.clock = init.clock ?? systemClock
    this.handleStream = this.handleStream.bind(this)
  }

  readonly [Symbol.toStringTag] = 'parley/file'

  readonly [serviceCapabilities]: string[] = ['parley/file']

  async start (): Promise<void> {
    await this.components.registrar.handle(FILE_PROTOCOL, this.handleStream, {
      // the registrar's own bound, per connection; ours (per peer, in total) answers RATE_LIMITED first
      maxInboundStreams: this.limits.maxStreamsPerPeer * 2,
      // a relayed-only pair makes progress within each circuit's limits (spec §6)
      runOnLimitedConnection: true
    })
    this.started = true
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(FILE_PROTOCOL)
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  /** Streams open now, for tests and status. */
  get openStreams (): number {
    return this.streams
  }

  /** Serves one stream: requests in order until the fetcher ends it, idles out or breaks the protocol. */
  async handleStream (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer
    const key = peer.toString()
    const held = this.streamsByPeer.get(key) ?? 0
    const busy = held >= this.limits.maxStreamsPerPeer || this.streams >= this.limits.maxStreams
    this.streams++
    this.streamsByPeer.set(key, held + 1)
    let idle: ClockTimer | undefined
    const armIdle = (): void => {
      this.clock.clearTimeout(idle)
      idle = this.clock.setTimeout(() => {
        stream.abort(new DOMException(`no request within ${this.limits.idleTimeout} ms`, 'TimeoutError'))
      }, this.limits.idleTimeout)
    }
    try {
      if (busy) {
        // answered without reading anything: the fetcher asks again later
        await sendFrame(stream, responseFrame(refusal(Response.Status.RATE_LIMITED, 'too many transfers at once', this.limits.retryAfter)))
        await stream.close()
        return
      }
      const frames = readFrames(stream)[Symbol.asyncIterator]()
      for (;;) {
        armIdle()
        const next = await frames.next()
        if (next.done === true) break
        this.clock.clearTimeout(idle)
        let request: Request
        try {
          request = Request.decode(next.value)
        } catch (err: any) {
          await sendFrame(stream, responseFrame(refusal(Response.Status.INVALID, `undecodable request: ${String(err.message)}`)))
          break
        }
        const keepGoing = await this.answer(stream, peer, request)
        if (!keepGoing) break
      }
      await stream.close()
    } catch (err: any) {
      this.log('file stream from %p ended - %e', peer, err)
      stream.abort(err)
    } finally {
      this.clock.clearTimeout(idle)
      this.streams--
      const left = (this.streamsByPeer.get(key) ?? 1) - 1
      if (left <= 0) this.streamsByPeer.delete(key)
      else this.streamsByPeer.set(key, left)
    }
  }

  /** Answers one request; false when the stream should end after it. */
  private async answer (stream: Stream, peer: PeerId, request: Request): Promise<boolean> {
    if (request.offer.byteLength !== OFFER_ID_BYTES) {
      await sendFrame(stream, responseFrame(refusal(Response.Status.INVALID, `an offer id is ${OFFER_ID_BYTES} bytes`)))
      return false
    }
    const id = toHex(request.offer)
    const offer = this.init.lookup(id, peer)
    if (offer == null) {
      // the same answer whether the offer never existed or was made to someone else
      await sendFrame(stream, responseFrame(refusal(Response.Status.NOT_FOUND, 'no such offer')))
      return true
    }
    const chunks = chunkCount(offer.size)
    if (request.kind === Request.Kind.FINISH) {
      this.init.onFinish?.(id, peer, request.outcome === Request.Outcome.REFUSED ? 'refused' : 'complete')
      await sendFrame(stream, responseFrame({ status: Response.Status.OK }))
      return true
    }
    const bound = request.kind === Request.Kind.HASHES ? MAX_REQUEST_HASHES : MAX_REQUEST_CHUNKS
    if (request.count === 0 || request.count > bound || request.first + request.count > chunks) {
      await sendFrame(stream, responseFrame(refusal(Response.Status.INVALID, `ask for 1 to ${bound} of the ${chunks} chunks`)))
      return true
    }
    if (request.kind === Request.Kind.HASHES) {
      const data = offer.hashes.subarray(request.first * HASH_BYTES, (request.first + request.count) * HASH_BYTES)
      await this.send(stream, { status: Response.Status.OK, index: request.first, data })
      return true
    }
    if (request.kind !== Request.Kind.CHUNKS) {
      await sendFrame(stream, responseFrame(refusal(Response.Status.INVALID, 'unknown request kind')))
      return false
    }
    let reader: ChunkReader
    try {
      reader = await offer.open()
    } catch (err: any) {
      return this.unservable(stream, id, peer, `the file cannot be read: ${String(err.code ?? err.message)}`, false)
    }
    try {
      for (let index = request.first; index < request.first + request.count; index++) {
        const length = chunkLength(offer.size, index)
        let data: Uint8Array<ArrayBuffer>
        try {
          data = await reader.read(index, length)
        } catch (err: any) {
          return await this.unservable(stream, id, peer, `the file cannot be read: ${String(err.code ?? err.message)}`, false)
        }
        if (data.byteLength !== length || !chunkMatches(offer.hashes, index, data, this.init.hash)) {
          return await this.unservable(stream, id, peer, 'the file changed since it was offered', true)
        }
        await this.send(stream, { status: Response.Status.OK, index, data })
        this.init.onServed?.(id, peer, length)
      }
    } finally {
      await reader.close().catch(() => {})
    }
    return true
  }

  private async unservable (stream: Stream, id: string, peer: PeerId, reason: string, changed: boolean): Promise<boolean> {
    this.init.onUnservable?.(id, peer, reason, changed)
    await sendFrame(stream, responseFrame(refusal(changed ? Response.Status.CHANGED : Response.Status.UNAVAILABLE, reason)))
    return false
  }

  /** Sends one frame; a fetcher that does not read it within the idle timeout is cut off. */
  private async send (stream: Stream, response: Partial<Response>): Promise<void> {
    if (stream.send(responseFrame(response))) return
    const { signal, clear } = timeoutSignal(this.clock, this.limits.idleTimeout)
    try {
      await stream.onDrain({ signal })
    } finally {
      clear()
    }
  }
}

export function fileServer (init: FileServerInit): (components: FileServerComponents) => FileServer {
  return (components) => new FileServer(components, init)
}
