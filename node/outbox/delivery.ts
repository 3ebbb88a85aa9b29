import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { Ack } from '../../protocols/im/index.js'
import { idFromString } from '../message-id.js'
import type { StatusChange } from '../types.js'
import type { Router } from '../network/router.js'
import type { OutboxEntry, Store } from '../store/index.js'
import type { Acknowledgement, ImService, OutboundMessage, Path } from '../../protocols/im/index.js'
import type { Connection, Logger, PeerId } from '@libp2p/interface'

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

export interface DeliveryEvents {
  'message:status': CustomEvent<StatusChange>
}

/** Most outbox messages one round puts on the wire (the protocol's window). */
const MAX_WINDOW = 64

/** Longest an ack's outcome waits to be written with others (ms). */
const RECORD_DELAY = 5

/**
 * Bounds on a recipient's RATE_LIMITED `retry_after_ms`: it comes from the
 * peer, so 0 must not make the outbox spin, nor 2^32-1 overflow a timer
 * (Node runs an over-large timeout after 1 ms) or park messages for weeks.
 */
export const MIN_RETRY_AFTER = 1_000
export const MAX_RETRY_AFTER = 60 * 60_000

/** A send and how it ended. */
interface Settled {
  entry: OutboxEntry
  result: PromiseSettledResult<Acknowledgement>
}

function toOutbound (entry: OutboxEntry): OutboundMessage {
  return {
    id: idFromString(entry.id),
    seq: entry.seq,
    sentAt: entry.sentAt,
    body: entry.body,
    contentType: entry.contentType === 'text/plain' ? undefined : entry.contentType,
    replyTo: entry.replyTo == null ? undefined : idFromString(entry.replyTo)
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
  /** Peers whose outbox may have gained due messages since a round last looked (see `round`). */
  private readonly fresh = new Set<string>()
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>()
  /**
   * Messages per round, per peer: halved when a round loses messages, doubled
   * when one gets through. A relayed circuit that is cut after a few KiB would
   * otherwise spend its whole budget on re-sending the same first messages.
   */
  private readonly windows = new Map<string, number>()
  /** Parsed peer IDs (parsing one costs more than a send on an open connection). */
  private readonly peerIds = new Map<string, PeerId>()
  /** Peers that answered RATE_LIMITED, and until when they asked us to wait: a new connection does not cut that short. */
  private readonly notBefore = new Map<string, number>()
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
    const now = Date.now()
    for (const [p, until] of this.notBefore) {
      if (until <= now) this.notBefore.delete(p)
    }
    // a peer that asked us to wait is left waiting
    const peers = (peer == null ? this.store.outboxPeers().map(p => p.peer) : [peer]).filter(p => !this.notBefore.has(p))
    if (peers.length === 0) return
    this.store.transaction(() => { for (const p of peers) this.store.retryNow(p, now) })
    for (const p of peers) this.run(p)
  }

  /** Runs the peer's outbox now (a new message was queued). */
  run (peer: string): void {
    if (this.stopped) return
    this.fresh.add(peer)
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
          const next = this.store.nextAttempt(peer)
          if (next != null) this.schedule(peer, next)
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
    let peerId = this.peerIds.get(peer)
    if (peerId == null) {
      peerId = peerIdFromString(peer)
      this.peerIds.set(peer, peerId)
    }
    for (;;) {
      if (this.stopped) return
      const window = this.windows.get(peer) ?? MAX_WINDOW
      this.fresh.delete(peer)
      const due = this.store.due(peer, Date.now(), window)
      if (due.length === 0) return

      // an open connection is used as it is; only a dial needs a time limit
      let connection = this.router.openConnection(peerId)
      try {
        connection ??= await this.router.connect(peerId, { signal: AbortSignal.any([signal, AbortSignal.timeout(this.connectTimeout)]) })
      } catch (err: any) {
        if (this.stopped) return
        this.log('cannot reach %s, %d messages wait - %s', peer, due.length, err.message)
        this.retryLater(due, err.message)
        continue
      }

      const { lost, exhausted } = await this.round(peer, connection, due, window, signal)
      if (this.stopped) return
      this.windows.set(peer, lost ? Math.max(1, Math.floor(window / 2)) : Math.min(MAX_WINDOW, window * 2))
      // nothing was left when the round last looked, and nothing was queued since
      if (!lost && exhausted && !this.fresh.has(peer)) return
    }
  }

  /**
   * One round on one connection. `first` go out at once, in seq order; as
   * acks come back, the next due messages follow, so that up to `window` stay
   * unacknowledged without a pause between batches. Outcomes are written
   * several at a time in one transaction (one fsync): once a window's worth
   * is in hand, when nothing is left in flight, or `RECORD_DELAY` ms after the
   * oldest came in; each is reported once written. The round ends when
   * nothing is in flight and nothing more is due, or once a message is lost
   * (nothing more is sent; the caller halves the window). Resolves with
   * whether one was lost, and whether the outbox had nothing more due when
   * last looked at.
   */
  private async round (peer: string, connection: Connection, first: OutboxEntry[], window: number, signal: AbortSignal): Promise<{ lost: boolean, exhausted: boolean }> {
    const im = this.im()
    let inFlight = 0
    let lastSeq = 0
    /** Sends settled since the loop last looked. */
    let settled: Settled[] = []
    /** Outcomes not yet written, and since when the oldest waits. */
    let unwritten: Settled[] = []
    let waitingSince = 0
    let wake: (() => void) | undefined
    let lost = false
    // fewer were due than the window holds: only a new message (`run`) can add more
    let exhausted = first.length < window
    const settle = (entry: OutboxEntry, result: PromiseSettledResult<Acknowledgement>): void => {
      settled.push({ entry, result })
      wake?.()
      wake = undefined
    }
    /** Puts entries (already marked as sending) on the wire. */
    const start = (entries: OutboxEntry[]): void => {
      for (const entry of entries) {
        this.emit({ id: entry.id, peer, seq: entry.seq, status: 'sending', attempts: entry.attempts + 1 })
      }
      // all start in seq order at once: the channel writes them in that order
      for (const entry of entries) {
        inFlight++
        lastSeq = Math.max(lastSeq, entry.seq)
        im.send(connection, toOutbound(entry), { signal }).then(
          value => { settle(entry, { status: 'fulfilled', value }) },
          (reason: unknown) => { settle(entry, { status: 'rejected', reason }) }
        )
      }
    }

    this.store.markSending(first.map(e => e.id))
    start(first)
    while (inFlight > 0 || unwritten.length > 0) {
      if (settled.length === 0 && inFlight > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined
        await new Promise<void>(resolve => {
          wake = resolve
          if (unwritten.length > 0) timer = setTimeout(resolve, Math.max(0, waitingSince + RECORD_DELAY - Date.now()))
        })
        clearTimeout(timer)
      }
      // acks read together settle together (when more are still to come)
      if (inFlight > settled.length) await new Promise(resolve => setImmediate(resolve))
      const batch = settled
      settled = []
      inFlight -= batch.length
      if (unwritten.length === 0 && batch.length > 0) waitingSince = Date.now()
      unwritten.push(...batch)
      // a message not delivered (or the recipient asking to wait): nothing more goes out this round
      if (batch.some(({ result }) => result.status === 'rejected' || result.value.status === Ack.Status.RATE_LIMITED)) lost = true
      // the next messages (queued meanwhile; retries of earlier seqs wait for
      // the next round) go on the wire first, so that the recipient works on
      // them while this side waits for the disk
      if (!this.stopped && !lost && inFlight < window && (!exhausted || this.fresh.has(peer))) {
        this.fresh.delete(peer)
        const more = this.store.due(peer, Date.now(), window - inFlight, lastSeq)
        exhausted = more.length < window - inFlight
        if (more.length > 0) {
          this.store.markSending(more.map(e => e.id))
          start(more)
          await new Promise(resolve => setImmediate(resolve))
        }
      }
      if (unwritten.length > 0 && (unwritten.length >= window || inFlight === 0 || lost || this.stopped || Date.now() - waitingSince >= RECORD_DELAY)) {
        const outcomes = unwritten
        unwritten = []
        let changes: StatusChange[]
        try {
          // not waiting for the disk here is safe: the recipient already holds
          // these durably, and a mark lost to a power cut only means the message
          // goes once more after the restart and comes back DUPLICATE, then
          // delivered (a killed process loses nothing either way)
          changes = this.store.transaction(() => this.settle(peer, outcomes), { durable: false })
        } catch (err) {
          // the node stopped and closed its store meanwhile: these go again after a restart
          if (this.stopped) return { lost, exhausted }
          throw err
        }
        for (const change of changes) this.emit(change)
      }
      if (this.stopped) return { lost, exhausted }
    }
    return { lost, exhausted }
  }

  /** Records what became of each message (inside the caller's transaction); the changes to report. */
  private settle (peer: string, batch: Settled[]): StatusChange[] {
    const delivered: Array<{ id: string, path: Path }> = []
    const changes = batch.map(({ entry, result }) => {
      if (result.status === 'fulfilled' && (result.value.status === Ack.Status.OK || result.value.status === Ack.Status.DUPLICATE)) {
        delivered.push({ id: entry.id, path: result.value.path })
        return { id: entry.id, peer, seq: entry.seq, status: 'delivered' as const, path: result.value.path }
      }
      return this.outcome(peer, entry, result)
    })
    this.store.markDeliveredMany(delivered, Date.now())
    return changes
  }

  /** Records what became of one message (inside the caller's transaction); the change to report. */
  private outcome (peer: string, entry: OutboxEntry, result: PromiseSettledResult<Acknowledgement>): StatusChange {
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
        const wait = Math.min(MAX_RETRY_AFTER, Math.max(MIN_RETRY_AFTER, ack.retryAfterMs ?? this.backoff(entry.attempts)))
        const until = Date.now() + wait
        const reason = `rate limited by the recipient (retry in ${Math.ceil(wait / 1000)} s)`
        this.store.reschedule([entry.id], until, reason)
        // the later messages wait too, so the conversation stays in seq order
        this.store.deferPeer(peer, until, reason)
        this.notBefore.set(peer, Math.max(until, this.notBefore.get(peer) ?? 0))
        return { id: entry.id, peer, seq: entry.seq, status: 'queued', reason }
      }
      default: {
        const reason = `refused by the recipient: ${ack.status}`
        this.store.markFailed(entry.id, reason)
        return { id: entry.id, peer, seq: entry.seq, status: 'failed', reason, path: ack.path }
      }
    }
  }
}
