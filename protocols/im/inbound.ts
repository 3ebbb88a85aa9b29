import { setMaxListeners } from '@libp2p/interface'
import { raceSignal } from 'race-signal'
import { Uint8ArrayList } from 'uint8arraylist'
import { DEFAULT_CONTENT_TYPE, GROUP_PROTOCOL } from './constants.js'
import { ProtocolViolationError, ReceiverError } from './errors.js'
import { decodeFrame, encodeFrame, readFrames } from './frames.js'
import { pathOf } from './path.js'
import { Ack } from './pb/im.js'
import { refusalFor } from './validate.js'
import type { Admission, ImInit, StoreResult } from './index.js'
import type { ChatMessage } from './pb/im.js'
import type { Connection, Logger, Stream } from '@libp2p/interface'

export interface InboundStreamInit {
  /** The service's callbacks (`store`, `admit`, `onRefused`), called as methods of it. */
  handlers: Pick<ImInit, 'store' | 'admit' | 'onRefused'>
  /** Messages read but not yet answered at most: the reader waits beyond it. */
  maxUnacked: number
  /** Each message is answered within this many ms of being read, or the stream is aborted. */
  ackTimeout: number
  /** The stream is closed after this many ms with nothing to read or answer. */
  idleTimeout: number
  log: Logger
}

/** One inbound message's answer: `ack` once settled, or `error` when it cannot be acknowledged. */
interface InboundAnswer {
  /** When the message was read: it must be answered within the ack timeout of it. */
  readAt: number
  settled: Promise<void>
  ack?: Ack
  error?: Error
}

const ACCEPT: Admission = { status: 'accept' }

function answered (ack: Ack): InboundAnswer {
  return { readAt: Date.now(), settled: Promise.resolve(), ack }
}

/**
 * Answers every message of one inbound /im stream, in order, once each is
 * settled. Two loops share the stream:
 *
 * - the reader hands each message to `store` as soon as it is read (in stream
 *   order, up to `maxUnacked` unanswered), without waiting for the earlier
 *   ones to be on disk, so that a store that commits several messages at once
 *   can;
 * - the writer sends each ack once its own message is settled, in order; acks
 *   that are ready together go out in one write.
 *
 * One clock serves the stream: answers leave in order, so the oldest
 * unanswered message is the first to run out of time (spec 4.4); when it
 * does, every store still running is given up and the stream aborted.
 */
export class InboundStream {
  /** Answers not yet written, in stream order. */
  private readonly unanswered: InboundAnswer[] = []
  /** Aborted when the oldest message is not settled in time: every store in flight listens to it. */
  private readonly deadline = new AbortController()
  private idleTimer?: ReturnType<typeof setTimeout>
  private ackWatchdog?: ReturnType<typeof setTimeout>
  /** Set once the reader is done: how it ended. */
  private readEnd?: { error?: Error }
  /** Set when an answer could not be written: the reader stops. */
  private writeFailure?: Error
  private wakeWriter?: () => void
  private wakeReader?: () => void

  constructor (
    private readonly stream: Stream,
    private readonly connection: Connection,
    private readonly init: InboundStreamInit
  ) {
    // up to maxUnacked stores listen to the deadline at once
    setMaxListeners(Infinity, this.deadline.signal)
  }

  /** Serves the stream until it ends; never throws (a failed stream is aborted). */
  async run (): Promise<void> {
    try {
      this.resetIdleTimer()
      const reading = this.readMessages()
      try {
        await this.writeAcks()
      } catch (err: any) {
        // a message could not be acknowledged: end the stream (and with it the reader) now
        this.writeFailure = err
        this.abort(err)
        this.wakeReader?.()
        await reading
        return
      }
      await reading
      clearTimeout(this.idleTimer)
      if (this.readEnd?.error != null) throw this.readEnd.error
      await this.stream.close({ signal: AbortSignal.timeout(this.init.ackTimeout) })
    } catch (err: any) {
      this.abort(err)
    } finally {
      clearTimeout(this.idleTimer)
      clearTimeout(this.ackWatchdog)
    }
  }

  private abort (err: Error): void {
    this.init.log('aborting /im stream from %p - %e', this.connection.remotePeer, err)
    this.stream.abort(err)
  }

  /** Reads messages and starts answering each, until the stream ends or the writer failed. */
  private async readMessages (): Promise<void> {
    try {
      for await (const buf of readFrames(this.stream)) {
        clearTimeout(this.idleTimer)
        const frame = decodeFrame(buf)
        if (frame.message == null) {
          throw new ProtocolViolationError('the initiator sent an ack frame; only messages may flow forward')
        }
        this.unanswered.push(await this.answer(frame.message))
        this.watchOldest()
        this.notifyWriter()
        while (this.writeFailure == null && this.unanswered.length >= this.init.maxUnacked) {
          await new Promise<void>(resolve => { this.wakeReader = resolve })
        }
        if (this.writeFailure != null) break
      }
      this.readEnd = {}
    } catch (err: any) {
      // the messages read before the bad frame are still answered first
      this.readEnd = { error: err }
    }
    this.notifyWriter()
  }

  /** Writes the answers in order as they settle; returns once the reader is done and all are written. */
  private async writeAcks (): Promise<void> {
    for (;;) {
      const head = this.unanswered[0]
      if (head == null) {
        if (this.readEnd != null) return
        await new Promise<void>(resolve => { this.wakeWriter = resolve })
        continue
      }
      await head.settled
      if (head.error != null) throw head.error
      // the head and every answer right behind it that is settled too: one write
      let ready = 1
      while (ready < this.unanswered.length && this.unanswered[ready].ack != null) ready++
      const answers = this.unanswered.splice(0, ready)
      this.wakeReader?.()
      this.wakeReader = undefined
      const out = new Uint8ArrayList()
      for (const answer of answers) out.append(encodeFrame({ ack: answer.ack as Ack }))
      if (!this.stream.send(out)) {
        await this.stream.onDrain({ signal: this.deadline.signal })
      }
      if (this.unanswered.length === 0 && this.readEnd == null) this.resetIdleTimer()
    }
  }

  private notifyWriter (): void {
    this.wakeWriter?.()
    this.wakeWriter = undefined
  }

  /** Keeps a timer on the oldest unanswered message; aborts the deadline when it runs out. */
  private watchOldest (): void {
    const head = this.unanswered[0]
    if (this.ackWatchdog != null || head == null) return
    this.ackWatchdog = setTimeout(() => {
      this.ackWatchdog = undefined
      const oldest = this.unanswered[0]
      if (oldest == null) return
      if (Date.now() - oldest.readAt >= this.init.ackTimeout) {
        this.deadline.abort(new DOMException(`message not settled within ${this.init.ackTimeout} ms`, 'TimeoutError'))
      } else {
        this.watchOldest()
      }
    }, Math.max(0, head.readAt + this.init.ackTimeout - Date.now()))
  }

  private resetIdleTimer (): void {
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => {
      this.stream.close().catch(err => { this.stream.abort(err) })
    }, this.init.idleTimeout)
    // a Node timer would keep the process alive; a browser's has no unref
    this.idleTimer.unref?.()
  }

  /**
   * Starts answering one message: admission, then the limits, then `store`,
   * which is called before this returns (so stores happen in stream order).
   * The answer settles with the ack once the message is stored or refused.
   */
  private async answer (message: ChatMessage): Promise<InboundAnswer> {
    const from = this.connection.remotePeer
    const options = { signal: this.deadline.signal }
    const admission = this.init.handlers.admit == null ? ACCEPT : await this.init.handlers.admit(from, options)
    if (admission.status === 'rate-limit') {
      return answered({ id: message.id, status: Ack.Status.RATE_LIMITED, retryAfterMs: admission.retryAfterMs })
    }

    const refusal = admission.status === 'block' ? Ack.Status.BLOCKED : refusalFor(message, { groups: this.stream.protocol === GROUP_PROTOCOL })
    if (refusal != null) {
      this.init.handlers.onRefused?.({ from, seq: message.seq, id: message.id, status: refusal })
      return answered({ id: message.id, status: refusal })
    }

    let stored: Promise<StoreResult>
    try {
      stored = this.init.handlers.store({
        id: message.id,
        from,
        seq: Number(message.seq),
        sentAt: Number(message.sentAt),
        body: message.body,
        contentType: message.contentType ?? DEFAULT_CONTENT_TYPE,
        replyTo: message.replyTo,
        ...(message.group == null ? {} : { group: message.group }),
        path: pathOf(this.connection),
        connection: this.connection
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
