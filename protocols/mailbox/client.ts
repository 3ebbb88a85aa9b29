/**
 * What a node uses to talk to its mailbox hosts and its contacts' (spec §5–§6):
 * register its own mailbox, deposit sealed envelopes in someone's, and open its
 * own to receive what is stored and what arrives. Envelopes are opaque bytes
 * here (./envelope.ts seals and opens them).
 *
 * Everything read from a host is bounded and checked before use: frame size,
 * envelopes per push, id and envelope sizes, one answer per request.
 */
import { raceSignal } from 'race-signal'
import { Response } from './pb/mailbox.js'
import {
  MAILBOX_PROTOCOL, MAX_DELETE_IDS, MAX_ENVELOPE_BYTES, MAX_ID_BYTES, MAX_PUSH_ENVELOPES,
  readFrames, requestFrame, RESPONSE_LIMITS, sendFrame
} from './protocol.js'
import type { MailboxInfo, Request } from './pb/mailbox.js'
import type { AbortOptions, ComponentLogger, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export { MAILBOX_PROTOCOL } from './protocol.js'
export type { MailboxInfo } from './pb/mailbox.js'

/** The host refused a request, and said why. */
export class MailboxRefusedError extends Error {
  static override name = 'MailboxRefusedError'
  override name = 'MailboxRefusedError'
  readonly status: Response.Status
  readonly retryAfterMs?: number
  readonly reason?: string

  constructor (status: Response.Status, reason?: string, retryAfterMs?: number) {
    super(`mailbox host refused: ${status}${reason != null ? ` (${reason})` : ''}${retryAfterMs != null ? `, retry after ${retryAfterMs} ms` : ''}`)
    this.status = status
    this.reason = reason
    this.retryAfterMs = retryAfterMs
  }
}

/** The host broke the protocol: an oversized or undecodable frame, a missing answer, a malformed push. */
export class MailboxProtocolError extends Error {
  static override name = 'MailboxProtocolError'
  override name = 'MailboxProtocolError'
  /** The host closed the stream before answering: by the spec (§5) it acted on nothing unanswered. */
  readonly hostClosed: boolean

  constructor (message: string, options: { hostClosed?: boolean } = {}) {
    super(message)
    this.hostClosed = options.hostClosed ?? false
  }
}

/** What reading a frame threw, as the error the client reports. */
function readError (err: any): Error {
  if (err instanceof MailboxProtocolError) return err
  return err?.name === 'InvalidDataLengthError' ? new MailboxProtocolError(`the host sent an oversized frame: ${String(err.message)}`) : err
}

/** What opens streams to hosts: libp2p itself satisfies it. */
export interface MailboxDialer {
  dialProtocol (peer: PeerId, protocol: string, options?: AbortOptions): Promise<Stream>
}

/** One envelope pushed by the host. */
export interface StoredEnvelopeInfo {
  id: Uint8Array
  storedAt: number
  expiresAt: number
  envelope: Uint8Array
}

/**
 * An open mailbox: iterate it for batches of envelopes (the stored ones oldest
 * first, then new ones as they are deposited); delete each once it is durable.
 * The host pushes at most the window of envelopes not yet deleted. Leaving a
 * `for await` early does not end the session: `close` does.
 */
export interface MailboxSession extends AsyncIterable<StoredEnvelopeInfo[]> {
  readonly info: MailboxInfo
  delete (ids: Uint8Array[]): Promise<void>
  close (): Promise<void>
}

export interface MailboxClientComponents {
  dialer: MailboxDialer
  logger: ComponentLogger
}

/** A uint64 from the wire as a number of ms (far beyond any clock if it does not fit). */
function ms (value: bigint | undefined): number {
  if (value == null) return 0
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value)
}

function decodeResponse (buf: Uint8ArrayList): Response {
  try {
    return Response.decode(buf, RESPONSE_LIMITS)
  } catch (err: any) {
    throw new MailboxProtocolError(`undecodable response: ${String(err.message)}`)
  }
}

function refused (response: Response): MailboxRefusedError {
  return new MailboxRefusedError(response.status, response.reason, response.retryAfterMs)
}

/** Checks a pushed batch against the spec's bounds. */
function checkPush (response: Response): StoredEnvelopeInfo[] {
  if (response.status !== Response.Status.OK) throw refused(response)
  if (response.envelopes.length === 0 || response.envelopes.length > MAX_PUSH_ENVELOPES) {
    throw new MailboxProtocolError(`a push must carry 1 to ${MAX_PUSH_ENVELOPES} envelopes, got ${response.envelopes.length}`)
  }
  return response.envelopes.map(e => {
    if (e.id.byteLength === 0 || e.id.byteLength > MAX_ID_BYTES) throw new MailboxProtocolError(`an envelope id must be 1 to ${MAX_ID_BYTES} bytes, got ${e.id.byteLength}`)
    if (e.envelope.byteLength === 0 || e.envelope.byteLength > MAX_ENVELOPE_BYTES) throw new MailboxProtocolError(`a pushed envelope must be 1 to ${MAX_ENVELOPE_BYTES} bytes, got ${e.envelope.byteLength}`)
    return { id: e.id, storedAt: ms(e.storedAt), expiresAt: ms(e.expiresAt), envelope: e.envelope }
  })
}

/** The Open exchange and the session's reads, on a stream of their own. */
class Exchange {
  private readonly frames: AsyncIterator<Uint8ArrayList>

  constructor (readonly stream: Stream) {
    this.frames = readFrames(stream)[Symbol.asyncIterator]()
  }

  async request (request: Partial<Request>, options: AbortOptions): Promise<Response> {
    await sendFrame(this.stream, requestFrame(request), options)
    return this.read(options)
  }

  /** The next response; the stream ending first is a protocol error (every request is answered). */
  async read (options: AbortOptions = {}): Promise<Response> {
    const next = await this.next(options)
    if (next == null) throw new MailboxProtocolError('the host closed the stream without answering')
    return next
  }

  /** The next response, or undefined when the host ended the stream. */
  async next (options: AbortOptions = {}): Promise<Response | undefined> {
    options.signal?.throwIfAborted()
    const onAbort = (): void => { this.stream.abort(options.signal?.reason ?? new Error('aborted')) }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const next = await this.frames.next()
      if (next.done === true) return undefined
      return decodeResponse(next.value)
    } catch (err: any) {
      if (options.signal?.aborted === true) throw options.signal.reason
      throw readError(err)
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
  }
}

interface Waiting {
  resolve(response: Response): void
  reject(err: Error): void
}

/**
 * One stream to a host carrying Register and Deposit requests one after
 * another, pipelined: each is written at once and the answers come back in
 * order (spec §6.1), so that many deposits share one stream instead of
 * running into the host's bound on streams per connection.
 */
class RequestChannel {
  private readonly waiting: Waiting[] = []
  private ended = false

  constructor (private readonly stream: Stream, private readonly onEnd: () => void) {
    this.read().catch(() => {})
  }

  /** False once the stream has ended or our side of it is closed. */
  get usable (): boolean {
    return !this.ended && this.stream.writeStatus === 'writable'
  }

  async request (request: Partial<Request>, options: AbortOptions): Promise<Response> {
    options.signal?.throwIfAborted()
    if (this.stream.writableNeedsDrain) await this.stream.onDrain(options)
    if (!this.usable) throw new MailboxProtocolError('the stream to the host has ended', { hostClosed: true })
    const answer = new Promise<Response>((resolve, reject) => { this.waiting.push({ resolve, reject }) })
    // a caller that gave up leaves its place in the queue: its answer still comes, to no one
    answer.catch(() => {})
    try {
      this.stream.send(requestFrame(request))
    } catch (err: any) {
      // ours is the last place: nothing else ran since it was taken
      this.waiting.pop()
      throw err
    }
    return raceSignal(answer, options.signal)
  }

  close (): void {
    this.end(new MailboxProtocolError('the client closed the stream'), true)
  }

  private async read (): Promise<void> {
    try {
      for await (const buf of readFrames(this.stream)) {
        const response = decodeResponse(buf)
        const head = this.waiting.shift()
        if (head == null) throw new MailboxProtocolError('the host sent an answer to no request')
        head.resolve(response)
      }
      this.end(new MailboxProtocolError('the host closed the stream without answering', { hostClosed: true }), true)
    } catch (err: any) {
      this.end(readError(err), false)
    }
  }

  private end (err: Error, graceful: boolean): void {
    if (this.ended) return
    this.ended = true
    this.onEnd()
    for (const waiting of this.waiting.splice(0)) waiting.reject(err)
    if (graceful) this.stream.close().catch(e => { this.stream.abort(e) })
    else this.stream.abort(err)
  }
}

export class MailboxClient {
  private readonly dialer: MailboxDialer
  private readonly log: Logger
  /** The request stream to each host (by peer ID), shared by concurrent callers. */
  private readonly channels = new Map<string, Promise<RequestChannel>>()

  constructor (components: MailboxClientComponents) {
    this.dialer = components.dialer
    this.log = components.logger.forComponent('parley:mailbox:client')
  }

  /** Closes the request streams to every host (open sessions are closed by their owners). */
  async close (): Promise<void> {
    const channels = [...this.channels.values()]
    this.channels.clear()
    for (const channel of await Promise.allSettled(channels)) {
      if (channel.status === 'fulfilled') channel.value.close()
    }
  }

  /** Creates or renews this node's mailbox on `host`; resolves with its fill level and lease. */
  async register (host: PeerId, options: AbortOptions = {}): Promise<MailboxInfo> {
    const response = await this.once(host, { register: {} }, options)
    if (response.status !== Response.Status.OK) throw refused(response)
    if (response.info == null) throw new MailboxProtocolError('a Register answer without info')
    return response.info
  }

  /**
   * Deposits a sealed envelope in `mailbox`'s mailbox on `host`; resolves with
   * the host's id for it and when the host will drop it. Throws
   * MailboxRefusedError with the host's status.
   */
  async deposit (host: PeerId, mailbox: PeerId, envelope: Uint8Array, options: AbortOptions & { ttlMs?: number } = {}): Promise<{ id: Uint8Array, expiresAt: number }> {
    if (envelope.byteLength > MAX_ENVELOPE_BYTES) throw new MailboxRefusedError(Response.Status.TOO_LARGE, `the envelope is ${envelope.byteLength} bytes, over the protocol's ${MAX_ENVELOPE_BYTES}`)
    const ttlMs = BigInt(Math.max(0, Math.floor(options.ttlMs ?? 0)))
    const response = await this.once(host, { deposit: { mailbox: mailbox.toMultihash().bytes, envelope: envelope as Uint8Array<ArrayBuffer>, ttlMs } }, options)
    if (response.status !== Response.Status.OK) throw refused(response)
    if (response.id == null || response.id.byteLength === 0 || response.id.byteLength > MAX_ID_BYTES || response.expiresAt == null) {
      throw new MailboxProtocolError('a Deposit answer without a valid id and expiry')
    }
    return { id: response.id, expiresAt: ms(response.expiresAt) }
  }

  /**
   * Opens this node's mailbox on `host`. Iteration yields pushed batches and
   * ends when the host closes the stream (it stops, or a newer session of this
   * node replaced this one) or the session is closed; it throws when the
   * stream is reset (the connection went) or the host breaks the protocol
   * (MailboxProtocolError). Throws MailboxRefusedError when the host refuses
   * the Open (NO_SUCH_MAILBOX: register first).
   */
  async open (host: PeerId, options: AbortOptions & { window?: number } = {}): Promise<MailboxSession> {
    const stream = await this.dialer.dialProtocol(host, MAILBOX_PROTOCOL, options)
    const exchange = new Exchange(stream)
    let response: Response
    try {
      response = await exchange.request({ open: { window: Math.max(0, Math.floor(options.window ?? 0)) } }, options)
      if (response.status !== Response.Status.OK) throw refused(response)
      if (response.info == null) throw new MailboxProtocolError('an Open answer without info')
      if (response.envelopes.length > 0) throw new MailboxProtocolError('an Open answer must carry no envelopes')
    } catch (err: any) {
      if (err instanceof MailboxRefusedError) await stream.close().catch(() => { stream.abort(err) })
      else stream.abort(err)
      throw err
    }
    return new OpenSession(exchange, response.info, this.log)
  }

  /**
   * Deposits several envelopes in `mailbox`'s mailbox on `host`, pipelined on
   * the host's request stream (answered in order, §6.1): one result per
   * envelope, in order, each the host's id and expiry or the
   * MailboxRefusedError it answered. Throws when the host cannot be reached
   * or breaks the protocol.
   */
  async depositMany (host: PeerId, mailbox: PeerId, envelopes: ReadonlyArray<{ envelope: Uint8Array, ttlMs?: number }>, options: AbortOptions = {}): Promise<Array<{ id: Uint8Array, expiresAt: number } | MailboxRefusedError>> {
    return Promise.all(envelopes.map(async ({ envelope, ttlMs }) => {
      try {
        return await this.deposit(host, mailbox, envelope, { ...options, ttlMs })
      } catch (err: any) {
        if (err instanceof MailboxRefusedError) return err
        throw err
      }
    }))
  }

  /**
   * Sends a Register or Deposit on the host's request stream and resolves with
   * its answer. A stream the host closed (idle) before answering is replaced
   * once: the host acted on nothing it did not answer.
   */
  private async once (host: PeerId, request: Partial<Request>, options: AbortOptions): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      const channel = await this.channelTo(host, options)
      try {
        return await channel.request(request, options)
      } catch (err: any) {
        if (attempt === 1 && err instanceof MailboxProtocolError && err.hostClosed) {
          this.log('mailbox request stream to %p ended before an answer; once more on a new one', host)
          continue
        }
        throw err
      }
    }
  }

  private async channelTo (host: PeerId, options: AbortOptions): Promise<RequestChannel> {
    const key = host.toString()
    const existing = this.channels.get(key)
    if (existing != null) {
      const channel = await existing.catch(() => undefined)
      if (channel?.usable === true) return channel
      if (this.channels.get(key) === existing) this.channels.delete(key)
    }
    const forget = (): void => {
      if (this.channels.get(key) === opening) this.channels.delete(key)
    }
    const opening: Promise<RequestChannel> = this.dialer.dialProtocol(host, MAILBOX_PROTOCOL, options)
      .then(stream => new RequestChannel(stream, forget))
    this.channels.set(key, opening)
    opening.catch(forget)
    return opening
  }
}

class OpenSession implements MailboxSession {
  private closed = false
  /** Aborted by `close` once our side is flushed: ends a read still waiting for the host. */
  private readonly stopped = new AbortController()

  constructor (private readonly exchange: Exchange, readonly info: MailboxInfo, private readonly log: Logger) {}

  async * [Symbol.asyncIterator] (): AsyncGenerator<StoredEnvelopeInfo[]> {
    while (!this.closed) {
      let response: Response | undefined
      try {
        response = await this.exchange.next({ signal: this.stopped.signal })
      } catch (err: any) {
        if (this.closed) return
        this.exchange.stream.abort(err)
        throw err
      }
      if (this.closed) return
      if (response == null) {
        // the host ended the session: end ours too, so the stream goes
        this.closed = true
        await this.exchange.stream.close().catch(err => { this.exchange.stream.abort(err) })
        return
      }
      let batch: StoredEnvelopeInfo[]
      try {
        batch = checkPush(response)
      } catch (err: any) {
        this.log('mailbox host broke the protocol - %e', err)
        this.closed = true
        this.exchange.stream.abort(err)
        throw err
      }
      yield batch
    }
  }

  async delete (ids: Uint8Array[]): Promise<void> {
    for (let i = 0; i < ids.length; i += MAX_DELETE_IDS) {
      await sendFrame(this.exchange.stream, requestFrame({ delete: { ids: ids.slice(i, i + MAX_DELETE_IDS) as Array<Uint8Array<ArrayBuffer>> } }))
    }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    // the host ends the session when our side closes; what it still pushes is dropped
    try {
      await this.exchange.stream.close({ signal: AbortSignal.timeout(5_000) })
    } catch (err: any) {
      this.exchange.stream.abort(err)
    }
    this.stopped.abort(new DOMException('the mailbox session was closed', 'AbortError'))
  }
}
