import { TypedEventEmitter } from 'main-event'
import { systemClock } from '../../common/clock.js'
import { idToString } from '../message-id.js'
import { isOrderedSeq, untilGapExpires } from './ordering.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { InboundStep, ReceiveResult, Store, StoredMessage } from '../store/index.js'
import type { InboundMessage, Refusal } from '../../protocols/im/index.js'

/** A gap in a conversation's seqs is given up after this long (spec section 6). */
export const GAP_TIMEOUT = 60_000

/** Held messages presented in one go when a gap is given up: the rest follow on the next turns of the event loop. */
export const RELEASE_PAGE = 256

/** What the Inbox needs of the store: it stores, orders and releases in SQL (see `node/inbox/ordering.ts` for the rules). */
export type InboxStore = Pick<Store, 'inboundBatch' | 'releaseGaps' | 'oldestGap'>

export interface InboxComponents {
  store: InboxStore
  /** For the gap timer and the messages' `receivedAt`. @default systemClock */
  clock?: Clock
}

export interface InboxInit {
  /**
   * How long a gap in a conversation's seqs stays open before its held
   * messages are presented anyway, in ms.
   *
   * @default 60000
   */
  gapTimeout?: number

  /**
   * Commit every message as it comes, not only one that comes alone (see
   * `Inbox`): for a store in memory, where a commit waits for no disk, so
   * sharing one saves little and the wait for the turn is most of a
   * message's time to its ack.
   *
   * @default false
   */
  commitAtOnce?: boolean
}

export interface InboxEvents {
  /** Messages now presentable, in each conversation's seq order (emitted before the acks of the batch that let them through leave). */
  presented: CustomEvent<StoredMessage[]>
}

interface Pending {
  step: InboundStep
  done?: PromiseWithResolvers<ReceiveResult['result']>
}

export interface ReceiveOptions {
  /** A stranger's message: kept as a message request. */
  request?: boolean
  /** Refuse it (`held-full`) when it would be held and the sender has this many held already. */
  maxHeld?: number
}

/**
 * Receives messages for the /im service: dedups on (sender, id) in the store
 * before the ack, and presents each conversation in seq order, holding later
 * messages while an earlier seq is missing (never dropping them).
 *
 * Messages that arrive together (a pipelined stream, several streams at once)
 * are stored in one transaction, so one fsync covers them all (group commit);
 * each `receive` resolves only once that transaction is on disk. A message
 * that comes alone (the last batch was one message, and nothing was
 * committed yet in this turn of the event loop) is committed as it comes,
 * and `receive` answers it with no promise: its ack leaves within the read of
 * its frame rather than a turn later. The first of a burst goes so, the rest
 * of the burst together, and every batch after it while they come together.
 *
 * Needs only the store: it can be built before libp2p and the node, which
 * listen for `presented`.
 */
export class Inbox extends TypedEventEmitter<InboxEvents> {
  private readonly store: InboxStore
  private readonly clock: Clock
  private readonly gapTimeout: number
  private readonly commitAtOnce: boolean
  private gapTimer?: ClockTimer
  private stopped = false
  private pending: Pending[] = []
  private flushing?: ReturnType<typeof setImmediate>
  private releasing?: ReturnType<typeof setImmediate>
  /** The last batch was one message: the next that finds nothing waiting is committed at once. */
  private lone = true
  /** A message was committed at once in this turn: the rest of the turn's go in one batch. */
  private committedThisTurn?: ReturnType<typeof setImmediate>

  constructor (components: InboxComponents, init: InboxInit = {}) {
    super()
    this.store = components.store
    this.clock = components.clock ?? systemClock
    this.gapTimeout = init.gapTimeout ?? GAP_TIMEOUT
    this.commitAtOnce = init.commitAtOnce ?? false
  }

  start (): void {
    this.stopped = false
    this.releaseExpiredGaps()
  }

  stop (): void {
    this.stopped = true
    this.clock.clearTimeout(this.gapTimer)
    clearImmediate(this.flushing)
    clearImmediate(this.releasing)
    clearImmediate(this.committedThisTurn)
    this.flushing = undefined
    this.committedThisTurn = undefined
    // not stored: no ack goes out, and the sender retries
    for (const { done } of this.pending.splice(0)) done?.reject(new Error('the node is stopping'))
  }

  /**
   * Stores an inbound message: resolves once it is durable in SQLite (or known
   * to be a duplicate, or refused as `held-full`). One committed as it comes
   * (with `commitAtOnce`, or alone: see the class) is stored before this
   * returns, and its result is returned as it is, or the commit's error thrown.
   */
  receive (message: InboundMessage, options: ReceiveOptions = {}): ReceiveResult['result'] | Promise<ReceiveResult['result']> {
    const step: InboundStep = {
      kind: 'receive',
      maxHeld: options.maxHeld,
      message: {
        peer: message.from.toString(),
        id: idToString(message.id),
        seq: message.seq,
        body: message.body,
        contentType: message.contentType,
        replyTo: message.replyTo == null ? undefined : idToString(message.replyTo),
        sentAt: message.sentAt,
        receivedAt: this.clock.now(),
        path: message.path,
        request: options.request === true,
        ...(message.group == null ? {} : { group: message.group })
      }
    }
    if (this.atOnce) {
      const [result] = this.commitNow(step)
      if (result instanceof Error) throw result
      return (result as ReceiveResult).result
    }
    const done = Promise.withResolvers<ReceiveResult['result']>()
    this.enqueue({ step, done })
    return done.promise
  }

  /** The /im `onRefused` hook: a refused message still fills its seq (in turn with the messages around it). */
  refused (refusal: Refusal): void {
    const seq = Number(refusal.seq)
    if (!isOrderedSeq(seq)) return
    const step: InboundStep = { kind: 'refuse', peer: refusal.from.toString(), seq, now: this.clock.now() }
    if (this.atOnce) {
      // nobody waits for it: a failure is dropped, as in a batch (the seq stays a gap, given up in time)
      try {
        this.commitNow(step)
      } catch {}
      return
    }
    this.enqueue({ step })
  }

  /**
   * Whether a step is committed as it comes: none is waiting for a batch ahead
   * of it, and either the store has no disk (`commitAtOnce`) or the step comes
   * alone (see the class).
   */
  private get atOnce (): boolean {
    if (this.stopped || this.pending.length > 0) return false
    return this.commitAtOnce || (this.lone && this.committedThisTurn == null)
  }

  /** Commits one step as it comes; on a disk, the turn's next steps then wait for a batch. */
  private commitNow (step: InboundStep): Array<ReceiveResult | StoredMessage[] | Error> {
    if (!this.commitAtOnce) this.committedThisTurn = setImmediate(() => { this.committedThisTurn = undefined })
    return this.commit([step])
  }

  /** Everything that arrives before the event loop turns goes into one transaction. */
  private enqueue (entry: Pending): void {
    if (this.stopped) {
      entry.done?.reject(new Error('the node is stopped'))
      return
    }
    this.pending.push(entry)
    if (this.flushing == null) {
      // a turn that began with a message committed at once did not bring one alone either
      const afterOne = this.committedThisTurn != null
      this.flushing = setImmediate(() => { this.flush(afterOne) })
    }
  }

  private flush (afterOne = false): void {
    this.flushing = undefined
    const batch = this.pending
    this.pending = []
    if (batch.length === 0) return
    this.lone = batch.length === 1 && !afterOne
    let results: Array<ReceiveResult | StoredMessage[] | Error>
    try {
      results = this.commit(batch.map(p => p.step))
    } catch (err: any) {
      for (const { done } of batch) done?.reject(err)
      return
    }
    batch.forEach(({ done }, i) => {
      const result = results[i]
      if (done == null) return
      if (result instanceof Error) done.reject(result)
      else if (!Array.isArray(result)) done.resolve(result.result)
    })
  }

  /** Stores the steps in one transaction and presents what they let through (before their acks leave). */
  private commit (steps: InboundStep[]): Array<ReceiveResult | StoredMessage[] | Error> {
    const results = this.store.inboundBatch(steps)
    const presented: StoredMessage[] = []
    // whether a gap may have opened: a seq refused, or a message stored and not shown (held)
    let gapMayOpen = false
    results.forEach((result, i) => {
      if (steps[i].kind === 'refuse') gapMayOpen = true
      if (Array.isArray(result)) presented.push(...result)
      else if (!(result instanceof Error)) {
        presented.push(...result.presented)
        if (result.result === 'stored' && result.presented.length === 0) gapMayOpen = true
      }
    })
    // shown before the acks leave, as when each message had its own transaction
    this.present(presented)
    // no gap was open (no timer armed, no release under way) and none opened:
    // the oldest gap need not be asked for, as it would be for every batch
    if (gapMayOpen || this.gapTimer != null || this.releasing != null) this.armGapTimer()
    return results
  }

  private present (messages: StoredMessage[]): void {
    if (messages.length > 0) this.safeDispatchEvent('presented', { detail: messages })
  }

  private after (presented: StoredMessage[]): void {
    this.present(presented)
    this.armGapTimer()
  }

  private armGapTimer (): void {
    this.clock.clearTimeout(this.gapTimer)
    this.gapTimer = undefined
    // a release under way re-arms the timer when it is done
    if (this.releasing != null || this.stopped) return
    const oldest = this.store.oldestGap()
    if (oldest == null) return
    this.gapTimer = this.clock.setTimeout(() => { this.releaseExpiredGaps() }, untilGapExpires(oldest, this.gapTimeout, this.clock.now()))
  }

  /** Presents what expired gaps hold, a page at a time, so that a flood of held messages is never all in memory at once. */
  private releaseExpiredGaps (): void {
    this.releasing = undefined
    if (this.stopped) return
    const { presented, more } = this.store.releaseGaps(this.clock.now(), this.gapTimeout, RELEASE_PAGE)
    if (more) {
      this.present(presented)
      this.releasing = setImmediate(() => { this.releaseExpiredGaps() })
      return
    }
    this.after(presented)
  }
}
