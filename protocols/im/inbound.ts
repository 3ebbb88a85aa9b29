import { setMaxListeners } from '@libp2p/interface'
import { raceSignal } from 'race-signal'
import { Uint8ArrayList } from 'uint8arraylist'
import { DEFAULT_CONTENT_TYPE, GROUP_PROTOCOL } from './constants.js'
import { ProtocolViolationError, ReceiverError } from './errors.js'
import { FrameReader, decodeFrame, encodeFrame } from './frames.js'
import { pathOf } from './path.js'
import { Ack } from './pb/im.js'
import { refusalFor } from './validate.js'
import { WindowUpdateHold } from './window-update.js'
import type { Admission, ImInit, InboundMessage, StoreResult } from './index.js'
import type { ChatMessage } from './pb/im.js'
import type { Connection, Logger, PeerId, Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

export interface InboundStreamInit {
  /** The service's callbacks (`store`, `admit`, `onRefused`), called as methods of it. */
  handlers: Pick<ImInit, 'store' | 'admit' | 'onRefused'>
  /** Messages read but not yet answered at most: the stream is paused beyond it. */
  maxUnacked: number
  /** Each message is answered within this many ms of being read, or the stream is aborted. */
  ackTimeout: number
  /** The stream is closed after this many ms with nothing to read or answer. */
  idleTimeout: number
  log: Logger
}

/** One inbound message's answer: `ack` once it is settled, or `error` when it cannot be acknowledged. */
interface InboundAnswer {
  /** When the message was read: it must be answered within the ack timeout of it. */
  readAt: number
  ack?: Ack
  error?: Error
}

const ACCEPT: Admission = { status: 'accept' }

function isPromise<T> (value: T | Promise<T>): value is Promise<T> {
  return typeof (value as any)?.then === 'function'
}

/**
 * Answers every message of one inbound /im stream, in order, once each is
 * settled.
 *
 * It reads in the stream's `message` event, synchronously: each frame of a
 * chunk goes to admission, the checks and `store` as it is cut out, and the
 * acks that are ready when the chunk is done leave in one write, before the
 * event returns. A `store` that answers at once (a store in memory) is thus
 * acknowledged within the muxer's own read of the frame, with no turn of the
 * event loop or promise in between; the read's window update follows in the
 * next turn (`WindowUpdateHold`). A `store`
 * that answers later (one that commits several messages in one fsync) is
 * acknowledged when it settles; the frames behind it are read and stored
 * meanwhile, up to `maxUnacked` unanswered, beyond which the stream is paused.
 * Answers leave in stream order.
 *
 * One clock serves the stream: answers leave in order, so the oldest
 * unanswered message is the first to run out of time (spec 4.4); when it
 * does, every store still running is given up and the stream aborted.
 */
export class InboundStream {
  private readonly frames = new FrameReader()
  /** Answers not yet written, in stream order. */
  private readonly unanswered: InboundAnswer[] = []
  /** Aborted when the oldest message is not settled in time: every store in flight listens to it. */
  private readonly deadline = new AbortController()
  private readonly finished = Promise.withResolvers<void>()
  /** When a whole frame was last read or an answer last written: the idle clock. */
  private lastActive = Date.now()
  private idleTimer?: ReturnType<typeof setTimeout>
  private ackWatchdog?: ReturnType<typeof setTimeout>
  /** Set once no more frames will be read: how reading ended. */
  private readEnd?: { error?: Error }
  /** Paused for flow control: `maxUnacked` unanswered, or an admission pending (see `keepPace`). */
  private paused = false
  /** Answers written so far. */
  private answered = 0
  /** The window update of a read answered at once waits for the next turn, after its acks (see `onMessage`). */
  private readonly windowUpdate: WindowUpdateHold
  /** A message's admission is being decided (an `admit` that answers later): the next frames wait for it. */
  private admitting = false
  /** The stream's write buffer is full: answers wait for it to drain. */
  private draining = false
  /** The stream is being closed, or is closed: nothing more is read or written. */
  private done = false
  private pumping = false
  private pumpAgain = false

  constructor (
    private readonly stream: Stream,
    private readonly connection: Connection,
    private readonly init: InboundStreamInit
  ) {
    // up to maxUnacked stores listen to the deadline at once
    setMaxListeners(Infinity, this.deadline.signal)
    // paused for flow control meanwhile: it stays so until keepPace resumes it
    this.windowUpdate = new WindowUpdateHold(stream, { keepPaused: () => this.paused || this.done, onError: (err) => { this.abort(err) } })
  }

  /** Serves the stream until it ends; never throws (a failed stream is aborted). */
  async run (): Promise<void> {
    this.stream.addEventListener('message', this.onMessage)
    this.stream.addEventListener('end', this.onEnd)
    this.stream.addEventListener('close', this.onClose)
    // the remote may have closed its end before this handler ran, with nothing to read
    if (this.stream.remoteWriteStatus === 'closed' && this.stream.readBufferLength === 0) this.onEnd()
    if (this.stream.status !== 'open') this.onClose()
    this.armIdleTimer()
    await this.finished.promise
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    if (this.readEnd != null || this.done) return
    // not activity yet: bytes that never finish a frame must not keep the stream (and its buffer) open
    this.frames.push(evt.data)
    const answered = this.answered
    this.pump()
    // answered within its read: the read's window update would follow the acks
    // out and land in the sender's read of them. A read whose answers wait
    // (for a batch's commit) lets it go as the muxer does: the sender's
    // window is what keeps its pipeline flowing meanwhile. A stream done with
    // (closing after its last answer) reads nothing more: nothing to hold
    if (this.answered > answered && !this.done) this.windowUpdate.hold()
  }

  private readonly onEnd = (): void => {
    // on a frame that carries the end and data both, the muxer reports the end first: read the data before it
    queueMicrotask(() => { this.pump() })
  }

  private readonly onDrain = (): void => {
    this.draining = false
    this.pump()
  }

  private readonly onClose = (evt?: StreamCloseEvent): void => {
    if (evt?.error != null) this.init.log('/im stream from %p closed - %e', this.connection.remotePeer, evt.error)
    this.finish()
  }

  /**
   * Reads what the stream has buffered and writes what is answered, until
   * neither makes progress; then closes the stream if everything is read and
   * answered. Called on every chunk, every settled answer, every drain.
   */
  private pump (): void {
    if (this.pumping) {
      this.pumpAgain = true
      return
    }
    this.pumping = true
    try {
      do {
        this.pumpAgain = false
        if (this.done) return
        this.readFrames()
        if (!this.writeAnswers()) return
        // resuming hands the stream's buffered chunks over at once, asking for another round
        if (!this.pumpAgain) this.keepPace()
      } while (this.pumpAgain)
    } catch (err: any) {
      this.abort(err)
    } finally {
      this.pumping = false
    }
  }

  /** Cuts out and starts answering the buffered frames, up to `maxUnacked` unanswered; notes the end of reading. */
  private readFrames (): void {
    try {
      while (this.readEnd == null && !this.admitting && this.unanswered.length < this.init.maxUnacked) {
        const buf = this.frames.next()
        if (buf == null) {
          // the remote closed its end and every byte it sent was read: nothing more comes. Its end
          // can come before its last bytes are handed over: a paused stream holding a frame that
          // carried data and FIN, or bytes multistream-select read past the protocol and gave back
          if (this.stream.remoteWriteStatus === 'closed' && this.stream.readBufferLength === 0) {
            this.readEnd = this.frames.inFrame ? { error: new ProtocolViolationError('the stream ended inside a frame') } : {}
          }
          return
        }
        this.lastActive = Date.now()
        const frame = decodeFrame(buf)
        if (frame.message == null) {
          throw new ProtocolViolationError('the initiator sent an ack frame; only messages may flow forward')
        }
        this.unanswered.push(this.answer(frame.message))
      }
    } catch (err: any) {
      // the messages read before the bad frame are still answered first
      this.readEnd = { error: err }
    }
  }

  /**
   * Writes the settled answers at the head, in one write. Returns false when
   * the stream is done with: an answer that failed (no ack: the sender
   * retries), a bad frame reached, or everything read and answered.
   */
  private writeAnswers (): boolean {
    if (this.draining) return true
    const out = new Uint8ArrayList()
    let written = 0
    let failure: Error | undefined
    for (const answer of this.unanswered) {
      if (answer.error != null) {
        failure = answer.error
        break
      }
      if (answer.ack == null) break
      out.append(encodeFrame({ ack: answer.ack }))
      written++
    }
    this.unanswered.splice(0, written)
    this.answered += written
    if (written > 0) {
      this.lastActive = Date.now()
      this.pumpAgain = true
      // one buffer, not a list of frames (see encodeFrame)
      if (!this.stream.send(out.subarray())) {
        // the event, not `onDrain()`: @libp2p/utils 7.4 keeps the promise of
        // the first drain, so every later `onDrain()` resolves at once, and a
        // peer that never reads its acks would fill the write buffer for good
        this.draining = true
        this.stream.addEventListener('drain', this.onDrain, { once: true })
      }
    }
    if (failure != null) {
      this.abort(failure)
      return false
    }
    if (this.readEnd != null && this.unanswered.length === 0 && !this.draining) {
      if (this.readEnd.error != null) this.abort(this.readEnd.error)
      else this.close()
      return false
    }
    return true
  }

  /**
   * Pauses the stream while `maxUnacked` are unanswered, or while a message
   * waits for its admission (nothing is read meanwhile, so nothing more may
   * pile up), and resumes it after; keeps a timer on the oldest.
   */
  private keepPace (): void {
    const full = this.unanswered.length >= this.init.maxUnacked || this.admitting
    if (full && !this.paused && this.readEnd == null) {
      const status = this.stream.readStatus
      // paused already: held for its window update, and kept so as the hold ends
      if (status === 'readable' || status === 'paused') this.paused = true
      if (status === 'readable') this.stream.pause()
    } else if (!full && this.paused) {
      this.paused = false
      // a hold under way resumes it as it ends
      if (!this.windowUpdate.active && this.stream.readStatus === 'paused') this.stream.resume()
    }
    this.watchOldest()
  }

  private close (): void {
    this.done = true
    this.stream.close({ signal: AbortSignal.timeout(this.init.ackTimeout) }).then(() => { this.finish() }, (err: any) => { this.abort(err) })
  }

  private abort (err: Error): void {
    if (this.stream.status === 'open') {
      this.init.log('aborting /im stream from %p - %e', this.connection.remotePeer, err)
      this.stream.abort(err)
    }
    this.finish()
  }

  private finish (): void {
    this.done = true
    clearTimeout(this.idleTimer)
    clearTimeout(this.ackWatchdog)
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('end', this.onEnd)
    this.stream.removeEventListener('close', this.onClose)
    this.stream.removeEventListener('drain', this.onDrain)
    this.finished.resolve()
  }

  /** Keeps a timer on the oldest unanswered message; aborts the deadline when it runs out. */
  private watchOldest (): void {
    const head = this.unanswered[0]
    if (this.ackWatchdog != null || head == null || this.done) return
    this.ackWatchdog = setTimeout(() => {
      this.ackWatchdog = undefined
      const oldest = this.unanswered[0]
      if (oldest == null || this.done) return
      if (Date.now() - oldest.readAt >= this.init.ackTimeout) {
        // not answered in time: its store (if it still runs) is given up, and
        // so is the stream, whether the answer was late or could not be written
        const late = new DOMException(`message not answered within ${this.init.ackTimeout} ms`, 'TimeoutError')
        this.deadline.abort(late)
        this.abort(late)
      } else {
        this.watchOldest()
      }
    }, Math.max(0, head.readAt + this.init.ackTimeout - Date.now()))
  }

  /** Closes the stream once nothing was read or answered for `idleTimeout` (one timer, moved on only when it fires). */
  private armIdleTimer (): void {
    if (this.done) return
    this.idleTimer = setTimeout(() => {
      if (this.done) return
      // a message still waiting for its answer is the ack watchdog's to time out
      if (this.unanswered.length > 0 || Date.now() - this.lastActive < this.init.idleTimeout) {
        this.armIdleTimer()
        return
      }
      // with a deadline: acks the peer never reads would hold the close (and the stream) forever
      this.close()
    }, Math.max(0, this.lastActive + this.init.idleTimeout - Date.now()))
    // a Node timer would keep the process alive; a browser's has no unref
    this.idleTimer.unref?.()
  }

  /**
   * Starts answering one message: admission, then the limits, then `store`,
   * which is called before this returns (so stores happen in stream order).
   * The answer has its ack at once when all of them answer at once, or once
   * the one that answers later settles.
   */
  private answer (message: ChatMessage): InboundAnswer {
    const answer: InboundAnswer = { readAt: this.lastActive }
    let outcome: Ack | Promise<Ack>
    try {
      outcome = this.decide(message)
    } catch (err: any) {
      answer.error = new ReceiverError(`could not store message: ${err.message}`)
      return answer
    }
    if (!isPromise(outcome)) {
      answer.ack = outcome
      return answer
    }
    raceSignal(outcome, this.deadline.signal).then(ack => {
      answer.ack = ack
    }, (err: any) => {
      // no ack: the sender treats the message as not delivered and retries it
      answer.error = new ReceiverError(`could not store message: ${err.message}`)
    }).finally(() => { this.pump() })
    return answer
  }

  /** The message's ack: the peer's admission, then the frame's checks, then `store`'s result. */
  private decide (message: ChatMessage): Ack | Promise<Ack> {
    const admission = this.init.handlers.admit == null ? ACCEPT : this.init.handlers.admit(this.connection.remotePeer, { signal: this.deadline.signal })
    if (!isPromise(admission)) return this.admitted(message, admission)
    // the frames behind it wait until it is admitted (and stored), so that stores happen in stream order
    this.admitting = true
    const decided = admission.then(a => {
      try {
        return { outcome: this.admitted(message, a) }
      } finally {
        this.admitting = false
      }
    })
    decided.then(() => { this.pump() }, () => {
      this.admitting = false
      this.pump()
    })
    return decided.then(({ outcome }) => outcome)
  }

  private admitted (message: ChatMessage, admission: Admission): Ack | Promise<Ack> {
    if (admission.status === 'rate-limit') {
      return { id: message.id, status: Ack.Status.RATE_LIMITED, retryAfterMs: admission.retryAfterMs }
    }
    const from = this.connection.remotePeer
    const refusal = admission.status === 'block' ? Ack.Status.BLOCKED : refusalFor(message, { groups: this.stream.protocol === GROUP_PROTOCOL })
    if (refusal != null) {
      this.init.handlers.onRefused?.({ from, seq: message.seq, id: message.id, status: refusal })
      return { id: message.id, status: refusal }
    }
    const stored = this.init.handlers.store(inboundMessage(message, from, pathOf(this.connection), this.connection), { signal: this.deadline.signal })
    return isPromise(stored) ? stored.then(result => ackFor(message, result)) : ackFor(message, stored)
  }
}

/** A message read off the wire, as `store` is given it: the sender is whoever the caller authenticated (the connection's peer, a sealed envelope's signer). */
export function inboundMessage (message: ChatMessage, from: PeerId, path: InboundMessage['path'], connection?: Connection): InboundMessage {
  return {
    id: message.id,
    from,
    seq: Number(message.seq),
    sentAt: Number(message.sentAt),
    body: message.body,
    contentType: message.contentType ?? DEFAULT_CONTENT_TYPE,
    replyTo: message.replyTo,
    ...(message.group == null ? {} : { group: message.group }),
    path,
    ...(connection == null ? {} : { connection })
  }
}

function ackFor (message: ChatMessage, result: StoreResult): Ack {
  return typeof result === 'object'
    ? { id: message.id, status: Ack.Status.RATE_LIMITED, retryAfterMs: result.retryAfterMs }
    : { id: message.id, status: result === 'duplicate' ? Ack.Status.DUPLICATE : Ack.Status.OK }
}
