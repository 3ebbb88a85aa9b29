import { serviceCapabilities, setMaxListeners } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import { raceSignal } from 'race-signal'
import { Uint8ArrayList } from 'uint8arraylist'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import {
  ACK_TIMEOUT_MS, DEFAULT_CONTENT_TYPE, IDLE_TIMEOUT_MS, MAX_FRAME_BYTES, MAX_INBOUND_STREAMS,
  MAX_OUTBOUND_STREAMS, MAX_UNACKED, PROTOCOL
} from './constants.js'
import { AckTimeoutError, ProtocolViolationError, ReceiverError, StreamEndedError } from './errors.js'
import { connectionPath } from './path.js'
import { Ack, Frame } from './pb/im.js'
import { refusalFor } from './validate.js'
import type { Acknowledgement, Admission, ImComponents, ImInit, ImService as ImServiceInterface, OutboundMessage, StoreResult } from './index.js'
import type { Path } from './path.js'
import type { ChatMessage } from './pb/im.js'
import type { AbortOptions, Connection, Logger, Startable, Stream } from '@libp2p/interface'

/** Encodes one frame with its varint length prefix, ready for `stream.send`. */
function encodeFrame (frame: Frame): Uint8ArrayList {
  return lp.encode.single(Frame.encode(frame))
}

/**
 * Decodes a frame and enforces "exactly one of message / ack" (spec section 2).
 * Throws only ProtocolViolationError. Exported for the tests.
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
 * Reads length-prefixed frames off a stream, refusing oversized prefixes before
 * buffering (it-length-prefixed's InvalidDataLengthError). A stream that ends
 * inside a frame is a ProtocolViolationError (it-length-prefixed reports it only
 * when some of the frame's bytes came, not when it ends right after the prefix).
 * Exported for the tests.
 */
export function readFrames (): (source: AsyncIterable<Uint8Array | Uint8ArrayList>) => AsyncGenerator<Uint8ArrayList> {
  return (source) => {
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
}

/** How many bytes of message frames `OutboundChannel` hands to the stream at most in one `send` (about 15 of 200 bytes). */
const WRITE_BATCH_BYTES = 4096

interface PendingAck {
  id: Uint8Array
  resolve(ack: Ack): void
  reject(err: Error): void
}

/**
 * One outbound /im stream to one connection: writes messages, keeps up to
 * `maxUnacked` of them in flight and matches the in-order acks to them. When the
 * stream fails every message still in flight is rejected, so the caller retries it.
 */
class OutboundChannel {
  private readonly pending: PendingAck[] = []
  private readonly slotWaiters: Array<() => void> = []
  private failure?: Error
  private ackWatchdog?: ReturnType<typeof setTimeout>
  /** When the oldest unacknowledged message started its clock: its send, or the last ack. */
  private ackClock = 0
  private idleTimer?: ReturnType<typeof setTimeout>
  /** Frames written in this tick, not yet handed to the stream (see `write`). */
  private batch?: { frames: Uint8ArrayList, written: PromiseWithResolvers<void> }

  constructor (
    private readonly stream: Stream,
    private readonly init: { maxUnacked: number, ackTimeout: number, idleTimeout: number, log: Logger, onEnd(): void }
  ) {
    pipe(stream, readFrames(), async (frames) => {
      for await (const buf of frames) {
        this.onAck(decodeFrame(buf))
      }
    })
      .then(() => { this.fail(new StreamEndedError('the recipient closed the stream before acknowledging every message')) })
      .catch((err: Error) => { this.fail(err) })
    this.startIdleTimer()
  }

  get open (): boolean {
    return this.failure == null
  }

  async send (message: ChatMessage, options: AbortOptions): Promise<Ack> {
    while (this.failure == null && this.pending.length >= this.init.maxUnacked) {
      const slot = Promise.withResolvers<void>()
      this.slotWaiters.push(slot.resolve)
      try {
        await raceSignal(slot.promise, options.signal)
      } catch (err) {
        // an aborted waiter gives up its place; if a slot was already handed to
        // it, pass that slot on so that no live sender is left waiting
        const index = this.slotWaiters.indexOf(slot.resolve)
        if (index >= 0) {
          this.slotWaiters.splice(index, 1)
        } else {
          this.slotWaiters.shift()?.()
        }
        throw err
      }
    }
    if (this.failure != null) {
      throw this.failure
    }

    const acked = Promise.withResolvers<Ack>()
    // the ack is awaited by this caller or nobody; never leave a rejection unhandled
    acked.promise.catch(() => {})
    this.pending.push({ id: message.id, resolve: acked.resolve, reject: acked.reject })
    clearTimeout(this.idleTimer)
    if (this.pending.length === 1) {
      this.armAckWatchdog()
    }

    try {
      await raceSignal(this.write(message), options.signal)
    } catch (err: any) {
      if (options.signal?.aborted !== true) this.fail(err)
      throw err
    }
    return raceSignal(acked.promise, options.signal)
  }

  /**
   * Queues a message frame; the frames of every send made in the same tick
   * (a window of pipelined messages) go to the stream in one `send`, so that
   * they cost one yamux frame, one Noise message and one socket write between
   * them instead of one each (up to WRITE_BATCH_BYTES a batch). Resolves once
   * they are handed over (after a drain, if the stream's buffer was full).
   */
  private async write (message: ChatMessage): Promise<void> {
    if (this.batch == null) {
      const batch = { frames: new Uint8ArrayList(), written: Promise.withResolvers<void>() }
      // a sender that gave up (its signal) no longer awaits the write
      batch.written.promise.catch(() => {})
      this.batch = batch
      // after the microtasks now queued: the sends started together have all appended by then
      process.nextTick(() => { this.flush(batch) })
    }
    const batch = this.batch
    batch.frames.append(encodeFrame({ message }))
    // a full batch goes at once: the recipient starts on it while the rest of the
    // window is encoded (one batch per window measured slower on one conversation)
    if (batch.frames.byteLength >= WRITE_BATCH_BYTES) this.flush(batch)
    return batch.written.promise
  }

  private flush (batch: NonNullable<OutboundChannel['batch']>): void {
    if (this.batch !== batch) return
    this.batch = undefined
    try {
      if (this.stream.send(batch.frames)) {
        batch.written.resolve()
      } else {
        this.stream.onDrain().then(batch.written.resolve, batch.written.reject)
      }
    } catch (err: any) {
      batch.written.reject(err)
    }
  }

  close (): void {
    if (this.failure != null) {
      return
    }
    this.fail(new StreamEndedError('the stream was closed locally'), false)
    this.stream.close().catch((err) => { this.stream.abort(err) })
  }

  private onAck (frame: Frame): void {
    const ack = frame.ack
    if (ack == null) {
      throw new ProtocolViolationError('the responder sent a message frame; only acks may flow back')
    }
    const head = this.pending[0]
    if (head == null || !uint8ArrayEquals(head.id, ack.id)) {
      // head stays pending, so fail() rejects it with the rest
      throw new ProtocolViolationError('ack does not answer the oldest unacknowledged message')
    }
    this.pending.shift()
    head.resolve(ack)
    this.slotWaiters.shift()?.()
    if (this.pending.length > 0) {
      // the next message's clock starts now; the running timer finds out when it fires
      this.ackClock = Date.now()
    } else {
      clearTimeout(this.ackWatchdog)
      this.ackWatchdog = undefined
      this.startIdleTimer()
    }
  }

  /**
   * Acks come in order, so only the oldest message needs a clock (spec 4.4).
   * One timer serves every message: when it fires early (an ack came since
   * it was set) it waits for the rest of the current clock.
   */
  private armAckWatchdog (): void {
    this.ackClock = Date.now()
    clearTimeout(this.ackWatchdog)
    const check = (): void => {
      const left = this.ackClock + this.init.ackTimeout - Date.now()
      if (left > 0) {
        this.ackWatchdog = setTimeout(check, left)
        return
      }
      this.fail(new AckTimeoutError(`no ack within ${this.init.ackTimeout} ms`))
    }
    this.ackWatchdog = setTimeout(check, this.init.ackTimeout)
  }

  private startIdleTimer (): void {
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => { this.close() }, this.init.idleTimeout)
    this.idleTimer.unref?.()
  }

  private fail (err: Error, abort = true): void {
    if (this.failure != null) {
      return
    }
    this.failure = err
    clearTimeout(this.ackWatchdog)
    clearTimeout(this.idleTimer)
    if (abort && this.stream.status === 'open') {
      this.init.log('outbound stream failed - %e', err)
      this.stream.abort(err)
    }
    for (const entry of this.pending.splice(0)) {
      entry.reject(err)
    }
    for (const wake of this.slotWaiters.splice(0)) {
      wake()
    }
    this.init.onEnd()
  }
}

/**
 * The /im/1.0.0 service: answers inbound message streams with acks and sends
 * messages on a reused, pipelined outbound stream per connection.
 */
export class DefaultImService implements Startable, ImServiceInterface {
  readonly protocol = PROTOCOL
  private readonly log: Logger
  private readonly channels = new Map<string, Promise<OutboundChannel>>()
  private readonly maxUnacked: number
  private readonly ackTimeout: number
  private readonly idleTimeout: number
  private readonly maxInboundStreams: number
  private readonly maxOutboundStreams: number
  private readonly runOnLimitedConnection: boolean
  private started = false

  constructor (private readonly components: ImComponents, private readonly init: ImInit) {
    this.log = components.logger.forComponent('parley:im')
    this.maxUnacked = init.maxUnacked ?? MAX_UNACKED
    this.ackTimeout = init.ackTimeout ?? ACK_TIMEOUT_MS
    this.idleTimeout = init.idleTimeout ?? IDLE_TIMEOUT_MS
    this.maxInboundStreams = init.maxInboundStreams ?? MAX_INBOUND_STREAMS
    this.maxOutboundStreams = init.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS
    this.runOnLimitedConnection = init.runOnLimitedConnection ?? true
    this.handleStream = this.handleStream.bind(this)
  }

  readonly [Symbol.toStringTag] = 'parley/im'

  readonly [serviceCapabilities]: string[] = ['parley/im']

  async start (): Promise<void> {
    await this.components.registrar.handle(PROTOCOL, this.handleStream, {
      maxInboundStreams: this.maxInboundStreams,
      maxOutboundStreams: this.maxOutboundStreams,
      runOnLimitedConnection: this.runOnLimitedConnection
    })
    this.started = true
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(PROTOCOL)
    for (const channel of this.channels.values()) {
      channel.then(c => { c.close() }, () => {})
    }
    this.channels.clear()
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  async send (connection: Connection, message: OutboundMessage, options: AbortOptions = {}): Promise<Acknowledgement> {
    const channel = await this.channelFor(connection, options)
    const ack = await channel.send({
      id: message.id,
      seq: BigInt(message.seq),
      sentAt: BigInt(message.sentAt),
      body: message.body,
      contentType: message.contentType,
      replyTo: message.replyTo
    }, options)
    return { id: ack.id, status: ack.status, retryAfterMs: ack.retryAfterMs, path: pathOf(connection), connection }
  }

  /** Reuses the connection's open stream, or opens one; concurrent callers share it. */
  private async channelFor (connection: Connection, options: AbortOptions): Promise<OutboundChannel> {
    const existing = this.channels.get(connection.id)
    if (existing != null) {
      const channel = await existing.catch(() => undefined)
      if (channel?.open === true) {
        return channel
      }
      if (this.channels.get(connection.id) === existing) {
        this.channels.delete(connection.id)
      }
    }

    const opening = connection.newStream(PROTOCOL, {
      ...options,
      runOnLimitedConnection: this.runOnLimitedConnection
    }).then(stream => {
      const channel: OutboundChannel = new OutboundChannel(stream, {
        maxUnacked: this.maxUnacked,
        ackTimeout: this.ackTimeout,
        idleTimeout: this.idleTimeout,
        log: this.log,
        onEnd: () => {
          if (this.channels.get(connection.id) === opening) {
            this.channels.delete(connection.id)
          }
        }
      })
      return channel
    })
    this.channels.set(connection.id, opening)
    opening.catch(() => {
      if (this.channels.get(connection.id) === opening) {
        this.channels.delete(connection.id)
      }
    })
    return opening
  }

  /**
   * Answers every message of an inbound stream, in order, once each is settled.
   * Messages are handed to `store` as they are read (in stream order, up to
   * `maxUnacked` unanswered), without waiting for the earlier ones to be on
   * disk, so that a store that commits several messages at once can; each ack
   * still leaves only once its own message is settled, and in order. Acks that
   * are ready together go out in one write.
   */
  private async handleStream (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer
    let idle: ReturnType<typeof setTimeout> | undefined
    const resetIdle = (): void => {
      clearTimeout(idle)
      idle = setTimeout(() => {
        stream.close().catch(err => { stream.abort(err) })
      }, this.idleTimeout)
      idle.unref?.()
    }

    /** Answers not yet written, in stream order. */
    const unanswered: InboundAnswer[] = []
    // one clock for the whole stream: answers are written in order, so the
    // oldest unanswered message is the first to run out of time (spec 4.4);
    // when it does, every store still running is given up and the stream aborted
    const deadline = new AbortController()
    // every store in flight on the stream (up to maxUnacked) listens to it
    setMaxListeners(Infinity, deadline.signal)
    let watchdog: ReturnType<typeof setTimeout> | undefined
    const watch = (): void => {
      const head = unanswered[0]
      if (watchdog != null || head == null) return
      watchdog = setTimeout(() => {
        watchdog = undefined
        const oldest = unanswered[0]
        if (oldest == null) return
        if (Date.now() - oldest.readAt >= this.ackTimeout) {
          deadline.abort(new DOMException(`message not settled within ${this.ackTimeout} ms`, 'TimeoutError'))
        } else {
          watch()
        }
      }, Math.max(0, head.readAt + this.ackTimeout - Date.now()))
    }
    let readEnd: { error?: Error } | undefined
    /** Set when the stream failed: the reader stops. */
    const failed: { error?: Error } = {}
    let wakeWriter: (() => void) | undefined
    let wakeReader: (() => void) | undefined
    const wake = (): void => {
      wakeWriter?.()
      wakeWriter = undefined
    }

    const read = async (): Promise<void> => {
      try {
        await pipe(stream, readFrames(), async (frames) => {
          for await (const buf of frames) {
            clearTimeout(idle)
            const frame = decodeFrame(buf)
            if (frame.message == null) {
              throw new ProtocolViolationError('the initiator sent an ack frame; only messages may flow forward')
            }
            unanswered.push(await this.answer(frame.message, connection, { signal: deadline.signal }))
            watch()
            wake()
            while (failed.error == null && unanswered.length >= this.maxUnacked) {
              await new Promise<void>(resolve => { wakeReader = resolve })
            }
            if (failed.error != null) return
          }
        })
        readEnd = {}
      } catch (err: any) {
        // the messages read before the bad frame are still answered first
        readEnd = { error: err }
      }
      wake()
    }

    const write = async (): Promise<void> => {
      for (;;) {
        const head = unanswered[0]
        if (head == null) {
          if (readEnd != null) return
          await new Promise<void>(resolve => { wakeWriter = resolve })
          continue
        }
        await head.settled
        if (head.error != null) throw head.error
        // the head and every answer right behind it that is settled too: one write
        let n = 1
        while (n < unanswered.length && unanswered[n].ack != null) n++
        const acks = unanswered.splice(0, n)
        wakeReader?.()
        wakeReader = undefined
        const out = new Uint8ArrayList()
        for (const answer of acks) out.append(encodeFrame({ ack: answer.ack as Ack }))
        if (!stream.send(out)) {
          await stream.onDrain({ signal: deadline.signal })
        }
        if (unanswered.length === 0 && readEnd == null) resetIdle()
      }
    }

    try {
      resetIdle()
      const reading = read()
      try {
        await write()
      } catch (err: any) {
        // a message could not be acknowledged: end the stream (and with it the reader) now
        failed.error = err
        this.log('aborting /im stream from %p - %e', from, err)
        stream.abort(err)
        wakeReader?.()
        await reading
        return
      }
      await reading
      clearTimeout(idle)
      if (readEnd?.error != null) throw readEnd.error
      await stream.close({ signal: AbortSignal.timeout(this.ackTimeout) })
    } catch (err: any) {
      this.log('aborting /im stream from %p - %e', from, err)
      stream.abort(err)
    } finally {
      clearTimeout(idle)
      clearTimeout(watchdog)
    }
  }

  /**
   * Starts answering one message: admission, then the limits, then `store`,
   * which is called before this returns (so stores happen in stream order).
   * The answer settles with the ack once the message is stored or refused.
   */
  private async answer (message: ChatMessage, connection: Connection, options: AbortOptions & { signal: AbortSignal }): Promise<InboundAnswer> {
    const from = connection.remotePeer
    const admission = this.init.admit == null ? ACCEPT : await this.init.admit(from, options)
    if (admission.status === 'rate-limit') {
      return answered({ id: message.id, status: Ack.Status.RATE_LIMITED, retryAfterMs: admission.retryAfterMs })
    }

    const refusal = admission.status === 'block' ? Ack.Status.BLOCKED : refusalFor(message)
    if (refusal != null) {
      this.init.onRefused?.({ from, seq: message.seq, id: message.id, status: refusal })
      return answered({ id: message.id, status: refusal })
    }

    let stored: Promise<StoreResult>
    try {
      stored = this.init.store({
        id: message.id,
        from,
        seq: Number(message.seq),
        sentAt: Number(message.sentAt),
        body: message.body,
        contentType: message.contentType ?? DEFAULT_CONTENT_TYPE,
        replyTo: message.replyTo,
        path: pathOf(connection),
        connection
      }, options)
    } catch (err: any) {
      stored = Promise.reject(err)
    }
    const answer: InboundAnswer = { readAt: Date.now(), settled: Promise.resolve() }
    answer.settled = raceSignal(stored, options.signal).then(result => {
      answer.ack = typeof result === 'object'
        ? { id: message.id, status: Ack.Status.RATE_LIMITED, retryAfterMs: result.retryAfterMs }
        : { id: message.id, status: result === 'duplicate' ? Ack.Status.DUPLICATE : Ack.Status.OK }
    }, (err: any) => {
      // no ack: the sender treats the message as not delivered and retries it
      answer.error = new ReceiverError(`could not store message: ${err.message}`)
    })
    return answer
  }
}

const ACCEPT: Admission = { status: 'accept' }

/** A connection's path never changes: worked out once per connection, not per message. */
const paths = new WeakMap<Connection, Path>()
function pathOf (connection: Connection): Path {
  let path = paths.get(connection)
  if (path == null) {
    path = connectionPath(connection)
    paths.set(connection, path)
  }
  return path
}

/** One inbound message's answer: `ack` once settled, or `error` when it cannot be acknowledged. */
interface InboundAnswer {
  /** When the message was read: it must be answered within the ack timeout of it. */
  readAt: number
  settled: Promise<void>
  ack?: Ack
  error?: Error
}

function answered (ack: Ack): InboundAnswer {
  return { readAt: Date.now(), settled: Promise.resolve(), ack }
}
