import { raceSignal } from 'race-signal'
import { Uint8ArrayList } from 'uint8arraylist'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { AckTimeoutError, ProtocolViolationError, StreamEndedError } from './errors.js'
import { FrameReader, decodeFrame, encodeFrame } from './frames.js'
import { WindowUpdateHold } from './window-update.js'
import type { Ack, ChatMessage, Frame } from './pb/im.js'
import { StreamCloseEvent } from '@libp2p/interface'
import type { AbortOptions, Logger, Stream, StreamMessageEvent } from '@libp2p/interface'

/** How many bytes of message frames `OutboundChannel` hands to the stream at most in one `send` (about 15 of 200 bytes). */
const WRITE_BATCH_BYTES = 4096

/**
 * Runs `fn` once the microtasks queued now, and the ones they queue in turn,
 * have all run: by then every send started together has appended its frame,
 * even one that reached `write` through more awaits than the first, or was
 * woken by a later ack of the same read. Node's `process.nextTick`, called
 * from a microtask (where `write` runs), waits exactly that long and no
 * longer. `queueMicrotask` would not: it runs before the microtasks queued
 * after it, and a full window woken one ack at a time would go out one frame
 * a write. Where there is no `process` (a browser) a task keeps the same
 * guarantee, a little later.
 */
const afterMicrotasks: (fn: () => void) => void = typeof globalThis.process?.nextTick === 'function'
  ? globalThis.process.nextTick
  : (fn) => { setTimeout(fn, 0) }

interface PendingAck {
  id: Uint8Array
  resolve(ack: Ack): void
  reject(err: Error): void
}

export interface OutboundChannelInit {
  /** Messages kept in flight (written, not yet acknowledged) at most. */
  maxUnacked: number
  ackTimeout: number
  idleTimeout: number
  log: Logger
  /** Told once, when the channel can take no more messages (failed or closed). */
  onEnd(): void
}

/**
 * One outbound /im stream to one connection: writes messages, keeps up to
 * `maxUnacked` of them in flight and matches the in-order acks to them. When the
 * stream fails every message still in flight is rejected, so the caller retries it.
 */
export class OutboundChannel {
  private readonly pending: PendingAck[] = []
  private readonly slotWaiters: Array<() => void> = []
  /** Sends woken for a slot that have not taken it yet (they resume on a later microtask). */
  private woken = 0
  private failure?: Error
  private ackWatchdog?: ReturnType<typeof setTimeout>
  /** When the oldest unacknowledged message started its clock: its send, or the last ack. */
  private ackClock = 0
  private idleTimer?: ReturnType<typeof setTimeout>
  /** The acks' frames, cut out of the stream's chunks as they come. */
  private readonly acks = new FrameReader()
  /** Each read's window update waits for the next turn, after the sends its acks woke (see `WindowUpdateHold`). */
  private readonly windowUpdate: WindowUpdateHold
  /** Frames written in this tick, not yet handed to the stream (see `write`). */
  private batch?: { frames: Uint8ArrayList, written: PromiseWithResolvers<void> }

  constructor (private readonly stream: Stream, private readonly init: OutboundChannelInit) {
    // nothing else pauses this stream; an update that cannot be written ends reading
    this.windowUpdate = new WindowUpdateHold(stream, { keepPaused: () => false, onError: (err) => { this.fail(err) } })
    // acks are read in the stream's message event, as the inbound side reads
    // messages: an ack settles its send within the muxer's read of it
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('remoteCloseWrite', this.onRemoteEnd)
    stream.addEventListener('close', this.onClose)
    this.startIdleTimer()
    // the remote may have closed its end (or the stream) before the channel listened
    if (stream.status !== 'open') this.onClose(new StreamCloseEvent(false))
    else if (stream.remoteWriteStatus === 'closed') this.onRemoteEnd()
  }

  /** The protocol id the stream was negotiated as (which /im version the peer speaks). */
  get protocol (): string {
    return this.stream.protocol
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
          this.woken--
          this.wakeOne()
        }
        throw err
      }
      this.woken--
    }
    if (this.failure != null) {
      throw this.failure
    }

    const acked = this.expectAck(message)
    try {
      await raceSignal(this.write(message), options.signal)
    } catch (err: any) {
      if (options.signal?.aborted !== true) this.fail(err)
      throw err
    }
    return raceSignal(acked, options.signal)
  }

  /**
   * Sends one message within this call, its frame handed to the stream before
   * it returns, when the channel is open, has room in its window and no
   * message waiting to be written, which this one would overtake (a frame of
   * this tick, a send woken for the room an ack made; one still waiting for
   * room means the window is full); otherwise `undefined`, and nothing is
   * sent. Resolves with its ack, as `send`.
   */
  sendNow (message: ChatMessage, options: AbortOptions): Promise<Ack> | undefined {
    if (this.failure != null || this.batch != null || this.woken > 0 || this.pending.length >= this.init.maxUnacked || options.signal?.aborted === true) {
      return undefined
    }
    const acked = this.expectAck(message)
    try {
      // a full buffer still took the frame: the window, not the buffer, bounds what is in flight
      this.stream.send(encodeFrame({ message }))
    } catch (err: any) {
      this.fail(err)
    }
    return raceSignal(acked, options.signal)
  }

  /** Puts the message in line for its ack (acks come in order) and starts its clock if it is the oldest. */
  private expectAck (message: ChatMessage): Promise<Ack> {
    const acked = Promise.withResolvers<Ack>()
    // the ack is awaited by its caller or nobody; never leave a rejection unhandled
    acked.promise.catch(() => {})
    this.pending.push({ id: message.id, resolve: acked.resolve, reject: acked.reject })
    clearTimeout(this.idleTimer)
    if (this.pending.length === 1) {
      this.armAckWatchdog()
    }
    return acked.promise
  }

  close (): void {
    if (this.failure != null) {
      return
    }
    this.fail(new StreamEndedError('the stream was closed locally'), false)
    this.stream.close().catch((err) => { this.stream.abort(err) })
  }

  /**
   * Queues a message frame; the frames of every send made in the same tick
   * (a window of pipelined messages) go to the stream in one `send`, as one
   * buffer, so that they cost one yamux frame and one Noise message between
   * them instead of one each (up to WRITE_BATCH_BYTES a batch; why one
   * buffer: `encodeFrame`). Resolves once they are handed over (after a
   * drain, if the stream's buffer was full).
   */
  private async write (message: ChatMessage): Promise<void> {
    if (this.batch == null) {
      const batch = { frames: new Uint8ArrayList(), written: Promise.withResolvers<void>() }
      // a sender that gave up (its signal) no longer awaits the write
      batch.written.promise.catch(() => {})
      this.batch = batch
      afterMicrotasks(() => { this.flush(batch) })
    }
    const batch = this.batch
    batch.frames.append(encodeFrame({ message }))
    // a full batch goes at once: the recipient starts on it while the rest of
    // the window is encoded, which is faster than one batch per window
    if (batch.frames.byteLength >= WRITE_BATCH_BYTES) this.flush(batch)
    return batch.written.promise
  }

  private flush (batch: NonNullable<OutboundChannel['batch']>): void {
    if (this.batch !== batch) return
    this.batch = undefined
    try {
      if (this.stream.send(batch.frames.subarray())) {
        batch.written.resolve()
      } else {
        this.stream.onDrain().then(batch.written.resolve, batch.written.reject)
      }
    } catch (err: any) {
      batch.written.reject(err)
    }
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    if (this.failure != null) return
    try {
      this.acks.push(evt.data)
      for (let buf = this.acks.next(); buf != null; buf = this.acks.next()) this.onAck(decodeFrame(buf))
      this.windowUpdate.hold()
    } catch (err: any) {
      this.fail(err)
    }
  }

  private readonly onRemoteEnd = (): void => {
    // on a frame that carries the end and data both, the muxer reports the end first: read the data before it
    queueMicrotask(() => {
      this.fail(this.acks.inFrame
        ? new ProtocolViolationError('the stream ended inside a frame')
        : new StreamEndedError('the recipient closed the stream before acknowledging every message'))
    })
  }

  private readonly onClose = (evt: StreamCloseEvent): void => {
    this.fail(evt.error ?? new StreamEndedError('the recipient closed the stream before acknowledging every message'))
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
    this.wakeOne()
    if (this.pending.length > 0) {
      // the next message's clock starts now; the running timer finds out when it fires
      this.ackClock = Date.now()
    } else {
      clearTimeout(this.ackWatchdog)
      this.ackWatchdog = undefined
      this.startIdleTimer()
    }
  }

  /** Hands the slot an ack freed to the send that waited longest for one. */
  private wakeOne (): void {
    const wake = this.slotWaiters.shift()
    if (wake == null) return
    this.woken++
    wake()
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
    // a Node timer would keep the process alive; a browser's has no unref
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
      this.woken++
      wake()
    }
    this.init.onEnd()
  }
}
