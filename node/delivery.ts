import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { parse as parseUuid } from 'uuid'
import { Ack } from '../protocols/im/index.js'
import type { Router } from './router.js'
import type { OutboxEntry, Store } from './store/index.js'
import type { ImService, OutboundMessage, Path } from '../protocols/im/index.js'
import type { Logger } from '@libp2p/interface'

export interface DeliveryInit {
  /**
   * First retry delay ceiling, in ms; it doubles with each attempt (full jitter).
   *
   * @default 1000
   */
  initialDelay?: number

  /**
   * Longest wait between two attempts, in ms.
   *
   * @default 300000
   */
  maxDelay?: number

  /**
   * How long finding and opening a connection to a peer may take, in ms.
   *
   * @default 30000
   */
  connectTimeout?: number
}

/** A change in an outbound message's state. */
export interface StatusChange {
  id: string
  peer: string
  status: 'queued' | 'sending' | 'delivered' | 'failed'
  seq: number
  path?: Path
  /** Why it failed, or why the last attempt did not get through. */
  reason?: string
  attempts?: number
}

export interface DeliveryEvents {
  'message:status': CustomEvent<StatusChange>
}

/** Most outbox messages one round puts on the wire (the protocol's window). */
const MAX_WINDOW = 64

function toOutbound (entry: OutboxEntry): OutboundMessage {
  return {
    id: new Uint8Array(parseUuid(entry.id)),
    seq: entry.seq,
    sentAt: entry.sentAt,
    body: entry.body,
    contentType: entry.contentType === 'text/plain' ? undefined : entry.contentType,
    replyTo: entry.replyTo == null ? undefined : new Uint8Array(parseUuid(entry.replyTo))
  }
}

/**
 * Owns the outbox state machine: queued → sending → delivered | failed.
 * Each peer's messages go out in seq order, pipelined on one stream; what is
 * not acknowledged is retried with exponential back-off and full jitter, and at
 * once when `wake` says a connection opened. Everything lives in the store, so
 * a restart resumes where the last run stopped.
 */
export class DeliveryEngine extends TypedEventEmitter<DeliveryEvents> {
  private readonly initialDelay: number
  private readonly maxDelay: number
  private readonly connectTimeout: number
  private readonly running = new Set<string>()
  private readonly again = new Set<string>()
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>()
  /**
   * Messages per round, per peer: halved when a round loses messages, doubled
   * when one gets through. A relayed circuit that is cut after a few KiB would
   * otherwise spend its whole budget on re-sending the same first messages.
   */
  private readonly windows = new Map<string, number>()
  private controller = new AbortController()
  private stopped = true

  constructor (
    private readonly store: Store,
    private readonly router: Router,
    private readonly im: () => ImService,
    private readonly log: Logger,
    init: DeliveryInit = {}
  ) {
    super()
    this.initialDelay = init.initialDelay ?? 1_000
    this.maxDelay = init.maxDelay ?? 5 * 60_000
    this.connectTimeout = init.connectTimeout ?? 30_000
  }

  start (): void {
    this.stopped = false
    this.controller = new AbortController()
    this.store.requeueSending()
    for (const { peer, nextAttemptAt } of this.store.outboxPeers()) {
      this.schedule(peer, nextAttemptAt)
    }
  }

  stop (): void {
    this.stopped = true
    this.controller.abort()
    for (const timer of this.timers.values()) clearTimeout(timer)
    this.timers.clear()
  }

  /** Something changed (a connection opened, our addresses changed): retry now. */
  wake (peer?: string): void {
    if (this.stopped) return
    this.store.retryNow(peer, Date.now())
    const peers = peer == null ? this.store.outboxPeers().map(p => p.peer) : [peer]
    for (const p of peers) this.run(p)
  }

  /** Runs the peer's outbox now (a new message was queued). */
  run (peer: string): void {
    if (this.stopped) return
    clearTimeout(this.timers.get(peer))
    this.timers.delete(peer)
    if (this.running.has(peer)) {
      this.again.add(peer)
      return
    }
    this.running.add(peer)
    this.drain(peer)
      .catch(err => { this.log.error('outbox of %s stopped unexpectedly - %e', peer, err) })
      .finally(() => {
        this.running.delete(peer)
        if (this.again.delete(peer)) {
          this.run(peer)
        } else {
          const next = this.store.outboxPeers().find(p => p.peer === peer)
          if (next != null) this.schedule(peer, next.nextAttemptAt)
        }
      })
  }

  private schedule (peer: string, at: number): void {
    if (this.stopped) return
    clearTimeout(this.timers.get(peer))
    const timer = setTimeout(() => {
      this.timers.delete(peer)
      this.run(peer)
    }, Math.max(0, at - Date.now()))
    this.timers.set(peer, timer)
  }

  private backoff (attempts: number): number {
    return Math.random() * Math.min(this.maxDelay, this.initialDelay * 2 ** attempts)
  }

  private emit (change: StatusChange): void {
    this.dispatchEvent(new CustomEvent('message:status', { detail: change }))
  }

  private retryLater (entries: OutboxEntry[], error: string): void {
    const changes = this.store.transaction(() => entries.map(entry => this.rescheduleOne(entry, error)))
    for (const change of changes) this.emit(change)
  }

  /** Puts an entry back in the queue with back-off (inside the caller's transaction); the change to report. */
  private rescheduleOne (entry: OutboxEntry, error: string): StatusChange {
    this.store.reschedule([entry.id], Date.now() + this.backoff(entry.attempts), error)
    return { id: entry.id, peer: entry.peer, seq: entry.seq, status: 'queued', reason: error, attempts: entry.attempts + 1 }
  }

  private async drain (peer: string): Promise<void> {
    const signal = this.controller.signal
    const peerId = peerIdFromString(peer)
    for (;;) {
      if (this.stopped) return
      const window = this.windows.get(peer) ?? MAX_WINDOW
      const due = this.store.due(peer, Date.now(), window)
      if (due.length === 0) return

      let connection
      try {
        connection = await this.router.connect(peerId, { signal: AbortSignal.any([signal, AbortSignal.timeout(this.connectTimeout)]) })
      } catch (err: any) {
        if (this.stopped) return
        this.log('cannot reach %s, %d messages wait - %s', peer, due.length, err.message)
        this.retryLater(due, err.message)
        continue
      }

      this.store.markSending(due.map(e => e.id))
      for (const entry of due) {
        this.emit({ id: entry.id, peer, seq: entry.seq, status: 'sending', attempts: entry.attempts + 1 })
      }
      const im = this.im()
      // all sends start in seq order at once: the channel writes them in that order, 64 in flight
      const results = await Promise.allSettled(due.map(async entry => im.send(connection, toOutbound(entry), { signal })))
      if (this.stopped) return

      const lost = results.some(r => r.status === 'rejected')
      this.windows.set(peer, lost ? Math.max(1, Math.floor(window / 2)) : Math.min(MAX_WINDOW, window * 2))

      // the whole round's outcome in one transaction (one fsync), then the events
      const changes = this.store.transaction(() => results.map((result, i): StatusChange => {
        const entry = due[i]
        if (result.status === 'rejected') {
          return this.rescheduleOne(entry, result.reason?.message ?? String(result.reason))
        }
        const ack = result.value
        switch (ack.status) {
          case Ack.Status.OK:
          case Ack.Status.DUPLICATE: {
            this.store.markDelivered(entry.id, ack.path, Date.now())
            return { id: entry.id, peer, seq: entry.seq, status: 'delivered', path: ack.path }
          }
          case Ack.Status.RATE_LIMITED: {
            const wait = ack.retryAfterMs ?? this.backoff(entry.attempts)
            this.store.reschedule([entry.id], Date.now() + wait, 'rate limited by the recipient')
            return { id: entry.id, peer, seq: entry.seq, status: 'queued', reason: 'rate limited by the recipient' }
          }
          default: {
            const reason = `refused by the recipient: ${ack.status}`
            this.store.markFailed(entry.id, reason)
            return { id: entry.id, peer, seq: entry.seq, status: 'failed', reason, path: ack.path }
          }
        }
      }))
      for (const change of changes) this.emit(change)
    }
  }
}
