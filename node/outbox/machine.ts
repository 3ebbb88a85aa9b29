/**
 * The outbox's state machine, without I/O, in the spirit of js-waku's
 * `@waku/sds`: no SQL, no libp2p, no timers. Time comes from an injected
 * clock and jitter from an injected `random`; what a transition changes comes
 * back as data (the writes for the store, the changes to report), so that the
 * delivery engine only carries it out.
 *
 * An outbound message is `queued` (its row says so, durably), `sending` while
 * on the wire (kept here in memory only: a restart queues every message on the
 * wire again anyway, so no row ever says `sending`), then `delivered` (OK or
 * DUPLICATE) or `failed` (refused for good). A send that gets no ack puts it
 * back in the queue with exponential back-off and full jitter; RATE_LIMITED
 * puts the whole peer back until the time it asked for. Per peer, the machine
 * keeps how many messages a round may keep unacknowledged (halved when a round
 * loses one, doubled when one gets through) and until when the peer asked us
 * to wait.
 */
import { backoff } from '../../common/backoff.js'
import { Ack, MAX_UNACKED } from '../../protocols/im/index.js'
import type { Clock } from '../../common/clock.js'
import type { Acknowledgement } from '../../protocols/im/index.js'
import type { OutboxEntry, OutboxWrites, StoredMessage } from '../store/index.js'
import type { StatusChange } from '../types.js'

/**
 * Bounds on a recipient's RATE_LIMITED `retry_after_ms`: it comes from the
 * peer, so 0 must not make the outbox spin, nor 2^32-1 overflow a timer
 * (Node runs an over-large timeout after 1 ms) or park messages for weeks.
 */
export const MIN_RETRY_AFTER = 1_000
export const MAX_RETRY_AFTER = 60 * 60_000

/** How one send ended: the recipient's ack, or the error that came instead. */
export type SendResult = PromiseSettledResult<Pick<Acknowledgement, 'status' | 'retryAfterMs' | 'path'>>

/** What the machine needs of an outbox entry (its status: whether a mailbox holds it). */
export type Entry = Pick<OutboxEntry, 'id' | 'peer' | 'seq' | 'attempts'> & Partial<Pick<OutboxEntry, 'status'>>

/** A message a mailbox receipt answers. */
export type Answered = Pick<StoredMessage, 'id' | 'peer' | 'seq' | 'status' | 'reason'>

/** What the machine needs to tell whether an entry expired: when this node wrote it. */
export type AgedEntry = Entry & Pick<OutboxEntry, 'createdAt'>

/** The reason a message cancelled by its sender fails with. */
export const CANCELLED_REASON = 'cancelled by the sender'

/** How the reason of a message failed as expired begins. */
export const EXPIRED_REASON_PREFIX = 'expired:'

/** How long an undelivered message is tried before it fails as expired, by default: a week (ms). */
export const DEFAULT_MESSAGE_EXPIRY = 7 * 24 * 60 * 60_000

/** A duration for people: whole days, hours, minutes or seconds where it is one. */
export function humanDuration (ms: number): string {
  const units: Array<[number, string]> = [[86_400_000, 'day'], [3_600_000, 'hour'], [60_000, 'minute'], [1_000, 'second']]
  for (const [size, name] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${name}${ms === size ? '' : 's'}`
  }
  return `${ms} ms`
}

/** A send and how it ended. */
export interface Sent {
  entry: Entry
  result: SendResult
}

/** What a transition does: the writes for the store (one transaction), and the changes to report once they are written. */
export interface Transition {
  writes: OutboxWrites
  changes: StatusChange[]
}

export interface OutboxMachineInit {
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
   * Longest wait between two attempts of a message that no mailbox holds, in
   * ms: such a message reaches its recipient only through this node, so a
   * peer back online (or reachable again through its relay) gets it within
   * about this long, however many attempts failed before.
   *
   * @default 30000 (or maxDelay, if shorter)
   */
  maxDelayUnstored?: number

  /**
   * How long after it was written an undelivered message fails as expired, in ms.
   *
   * @default DEFAULT_MESSAGE_EXPIRY (7 days)
   */
  messageExpiry?: number
}

export interface OutboxMachineComponents {
  clock: Pick<Clock, 'now'>
  /** @default Math.random */
  random?: () => number
}

/** Whether a send's result ends the round: the message was lost, or the recipient asked to wait (nothing more goes out). */
export function endsRound (result: SendResult): boolean {
  return result.status === 'rejected' || result.value.status === Ack.Status.RATE_LIMITED
}

function errorMessage (reason: unknown): string {
  return (reason as Error | undefined)?.message ?? String(reason)
}

export class OutboxMachine {
  private readonly initialDelay: number
  private readonly maxDelay: number
  private readonly maxDelayUnstored: number
  private readonly messageExpiry: number
  private readonly clock: Pick<Clock, 'now'>
  private readonly random: () => number
  /** Messages on the wire now: their rows say `queued`, their status is `sending`. */
  private readonly onWire = new Set<string>()
  /**
   * Messages per round, per peer, where it is below the protocol's window. A
   * relayed circuit that is cut after a few KiB would otherwise spend its whole
   * budget on re-sending the same first messages.
   */
  private readonly windows = new Map<string, number>()
  /** Peers that answered RATE_LIMITED, and until when they asked us to wait: a new connection does not cut that short. */
  private readonly notBefore = new Map<string, number>()

  constructor (components: OutboxMachineComponents, init: OutboxMachineInit = {}) {
    this.clock = components.clock
    this.random = components.random ?? Math.random
    this.initialDelay = init.initialDelay ?? 1_000
    this.maxDelay = init.maxDelay ?? 5 * 60_000
    this.maxDelayUnstored = Math.min(this.maxDelay, init.maxDelayUnstored ?? 30_000)
    this.messageExpiry = init.messageExpiry ?? DEFAULT_MESSAGE_EXPIRY
  }

  /** When an entry written at `createdAt` expires if still undelivered. */
  expiresAt (createdAt: number): number {
    return createdAt + this.messageExpiry
  }

  /** Entries written at or before this time have expired. */
  expiredBy (): number {
    return this.clock.now() - this.messageExpiry
  }

  /** The entries, less those that expired: those fail (in the transition) with a reason that says after how long. */
  expire<T extends AgedEntry> (entries: readonly T[]): { live: T[], transition: Transition } {
    const now = this.clock.now()
    const transition = empty(now)
    const live: T[] = []
    for (const entry of entries) {
      if (this.expiresAt(entry.createdAt) > now || this.onWire.has(entry.id)) {
        live.push(entry)
        continue
      }
      const reason = `${EXPIRED_REASON_PREFIX} not delivered within ${humanDuration(this.messageExpiry)}`
      transition.writes.failed.push({ id: entry.id, reason })
      transition.changes.push({ id: entry.id, peer: entry.peer, seq: entry.seq, status: 'failed', reason })
    }
    return { live, transition }
  }

  /** Whether an entry is on the wire now: its outcome is up to the recipient, so it cannot be cancelled. */
  isSending (id: string): boolean {
    return this.onWire.has(id)
  }

  /** The sender takes a queued entry back: it fails as cancelled. Throws if it is on the wire. */
  cancel (entry: Entry): Transition {
    if (this.onWire.has(entry.id)) throw new Error(`message ${entry.id} is on the wire`)
    const transition = empty(this.clock.now())
    transition.writes.failed.push({ id: entry.id, reason: CANCELLED_REASON })
    transition.changes.push({ id: entry.id, peer: entry.peer, seq: entry.seq, status: 'failed', reason: CANCELLED_REASON })
    return transition
  }

  /** The change to report for a message just written to the outbox. */
  queued (message: Pick<StoredMessage, 'id' | 'peer' | 'seq'>): StatusChange {
    return { id: message.id, peer: message.peer, seq: message.seq, status: 'queued' }
  }

  /**
   * Puts entries on the wire; the changes to report. One a mailbox holds
   * stays `stored` for the user while direct delivery is tried again: it has
   * left the sender's hands, and only the recipient's ack changes that.
   */
  sending (entries: readonly Entry[]): StatusChange[] {
    const changes: StatusChange[] = []
    for (const entry of entries) {
      this.onWire.add(entry.id)
      if (entry.status !== 'stored') changes.push({ id: entry.id, peer: entry.peer, seq: entry.seq, status: 'sending', attempts: entry.attempts + 1 })
    }
    return changes
  }

  /** Entries sealed and left in the recipient's mailbox, until when the host keeps each. */
  stored (deposits: ReadonlyArray<{ entry: Entry, until: number }>): Transition {
    const transition = empty(this.clock.now())
    for (const { entry, until } of deposits) {
      (transition.writes.stored ??= []).push({ id: entry.id, until })
      if (entry.status !== 'stored') transition.changes.push({ id: entry.id, peer: entry.peer, seq: entry.seq, status: 'stored', path: 'mailbox' })
    }
    return transition
  }

  /**
   * The recipient's receipt for messages that reached it through its mailbox:
   * OK or DUPLICATE is `delivered` (path `mailbox`); RATE_LIMITED puts the
   * message back in the queue, to be deposited anew; any other status fails it.
   * Messages already delivered or failed are left as they are.
   */
  receipt (answers: ReadonlyArray<{ message: Answered, status: Ack.Status }>): Transition {
    const transition = empty(this.clock.now())
    const { writes, changes } = transition
    for (const { message, status } of answers) {
      // a message failed as expired may still have been in the mailbox: the recipient's word settles it
      const expired = message.status === 'failed' && message.reason?.startsWith(EXPIRED_REASON_PREFIX) === true
      if (message.status === 'delivered' || (message.status === 'failed' && !(expired && (status === Ack.Status.OK || status === Ack.Status.DUPLICATE)))) continue
      const change = { id: message.id, peer: message.peer, seq: message.seq }
      switch (status) {
        case Ack.Status.OK:
        case Ack.Status.DUPLICATE:
          writes.delivered.push({ id: message.id, path: 'mailbox' })
          changes.push({ ...change, status: 'delivered', path: 'mailbox' })
          break
        case Ack.Status.RATE_LIMITED:
          (writes.unstored ??= []).push(message.id)
          changes.push({ ...change, status: 'queued', reason: 'the recipient\'s node asked to wait; it will be left in the mailbox again' })
          break
        default: {
          const reason = `refused by the recipient: ${Ack.Status[status] ?? status}`
          writes.failed.push({ id: message.id, reason })
          changes.push({ ...change, status: 'failed', reason, path: 'mailbox' })
        }
      }
    }
    return transition
  }

  /** A message as the user sees it: `sending` while it is on the wire (its row says `queued`). */
  overlay<T extends Pick<StoredMessage, 'id' | 'direction' | 'status'>> (message: T): T {
    return message.direction === 'out' && message.status === 'queued' && this.onWire.has(message.id) ? { ...message, status: 'sending' } : message
  }

  /** After a restart: nothing is on the wire. */
  reset (): void {
    this.onWire.clear()
  }

  /** How many messages the next round to `peer` may keep unacknowledged. */
  window (peer: string): number {
    return this.windows.get(peer) ?? MAX_UNACKED
  }

  /** A round to `peer` ended: its window is halved if it lost a message, doubled otherwise. */
  roundEnded (peer: string, lost: boolean): void {
    const window = this.window(peer)
    const next = lost ? Math.max(1, Math.floor(window / 2)) : Math.min(MAX_UNACKED, window * 2)
    if (next < MAX_UNACKED) this.windows.set(peer, next)
    else this.windows.delete(peer)
  }

  /** The peers among `peers` that may be tried again at once: one that asked us to wait is left waiting. */
  wakeable (peers: readonly string[]): string[] {
    const now = this.clock.now()
    for (const [peer, until] of this.notBefore) {
      if (until <= now) this.notBefore.delete(peer)
    }
    return peers.filter(peer => !this.notBefore.has(peer))
  }

  /** Forgets what is kept about `peer` (its outbox is empty): its window, and its wait once over. */
  forget (peer: string): void {
    this.windows.delete(peer)
    if ((this.notBefore.get(peer) ?? 0) <= this.clock.now()) this.notBefore.delete(peer)
  }

  /** How many peers something is kept about (what `forget` prunes). */
  get trackedPeers (): number {
    return new Set([...this.windows.keys(), ...this.notBefore.keys()]).size
  }

  /** The peer could not be reached: each entry is tried again after its back-off. */
  unreachable (entries: readonly Entry[], reason: string): Transition {
    const transition = empty(this.clock.now())
    for (const entry of entries) this.report(transition.changes, entry, this.retry(transition.writes, entry, reason))
    return transition
  }

  /** A change for the user, but none while a mailbox holds the message (it stays `stored`). */
  private report (changes: StatusChange[], entry: Entry, change: StatusChange): void {
    if (change.status !== 'queued' || entry.status !== 'stored') changes.push(change)
  }

  /** What became of sends, in the order given. */
  settle (sent: readonly Sent[]): Transition {
    const now = this.clock.now()
    const transition = empty(now)
    const { writes, changes } = transition
    for (const { entry, result } of sent) {
      this.onWire.delete(entry.id)
      if (result.status === 'rejected') {
        this.report(changes, entry, this.retry(writes, entry, errorMessage(result.reason)))
        continue
      }
      const ack = result.value
      switch (ack.status) {
        case Ack.Status.OK:
        case Ack.Status.DUPLICATE:
          writes.delivered.push({ id: entry.id, path: ack.path })
          changes.push({ id: entry.id, peer: entry.peer, seq: entry.seq, status: 'delivered', path: ack.path })
          break
        case Ack.Status.RATE_LIMITED: {
          const wait = Math.min(MAX_RETRY_AFTER, Math.max(MIN_RETRY_AFTER, ack.retryAfterMs ?? this.backoff(entry.attempts)))
          const until = now + wait
          const reason = `rate limited by the recipient (retry in ${Math.ceil(wait / 1000)} s)`
          writes.retried.push({ id: entry.id, at: until, reason })
          // the later messages wait too, so the conversation stays in seq order
          if (writes.deferred == null || until >= writes.deferred.until) writes.deferred = { peer: entry.peer, until, reason }
          this.notBefore.set(entry.peer, Math.max(until, this.notBefore.get(entry.peer) ?? 0))
          this.report(changes, entry, { id: entry.id, peer: entry.peer, seq: entry.seq, status: 'queued', reason })
          break
        }
        default: {
          const reason = `refused by the recipient: ${ack.status}`
          writes.failed.push({ id: entry.id, reason })
          changes.push({ id: entry.id, peer: entry.peer, seq: entry.seq, status: 'failed', reason, path: ack.path })
        }
      }
    }
    return transition
  }

  /** Back in the queue after its back-off (and no earlier than its peer asked us to wait); the change to report. */
  private retry (writes: OutboxWrites, entry: Entry, reason: string): StatusChange {
    this.onWire.delete(entry.id)
    const at = Math.max(writes.at + this.backoff(entry.attempts, entry.status === 'stored' ? this.maxDelay : this.maxDelayUnstored), this.notBefore.get(entry.peer) ?? 0)
    writes.retried.push({ id: entry.id, at, reason })
    return { id: entry.id, peer: entry.peer, seq: entry.seq, status: 'queued', reason, attempts: entry.attempts + 1 }
  }

  /** The delay before the next attempt of an entry tried `attempts` times before this failure, at most `max`. */
  private backoff (attempts: number, max = this.maxDelay): number {
    return backoff(attempts + 1, { first: this.initialDelay, max, jitter: 'full' }, this.random)
  }
}

function empty (at: number): Transition {
  return { writes: { at, delivered: [], retried: [], failed: [] }, changes: [] }
}
