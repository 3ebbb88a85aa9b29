import { TypedEventEmitter } from 'main-event'
import { systemClock, timeoutSignal } from '../../common/clock.js'
import { DEFAULT_CONTENT_TYPE } from '../../protocols/im/index.js'
import { idFromString } from '../message-id.js'
import { peerIdOf } from '../../common/peer-ids.js'
import { endsRound, OutboxMachine } from './machine.js'
import type { OutboxMachineInit, Sent, Transition } from './machine.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { Ack, Acknowledgement, ImService, OutboundMessage } from '../../protocols/im/index.js'
import type { Router } from '../network/router.js'
import type { NewOutbound, OutboxEntry, Store, StoredMessage } from '../store/index.js'
import type { StatusChange } from '../types.js'
import type { AbortOptions, ComponentLogger, Connection, Logger } from '@libp2p/interface'

export { CANCELLED_REASON, DEFAULT_MESSAGE_EXPIRY, EXPIRED_REASON_PREFIX, MAX_RETRY_AFTER, MIN_RETRY_AFTER } from './machine.js'

/** A dial still under way holds a deposit back this many times `mailboxAfter`. */
const SLOW_DIAL_FACTOR = 3

/** Longest a timer of the outbox is set for: Node runs a longer one after 1 ms; a wake-up with nothing due just sets the next. */
const MAX_TIMER = 2 ** 31 - 1

/** What `cancel` found: the message taken out of the outbox, one on the wire now, or none in the outbox. */
export type CancelOutcome = 'cancelled' | 'sending' | 'absent'

export interface DeliveryInit extends OutboxMachineInit {
  /**
   * How long finding and opening a connection to a peer may take, in ms; and
   * one deposit in its mailbox (finding its mailbox record, each host's answer).
   *
   * @default 30000
   */
  connectTimeout?: number

  /**
   * How long a peer may be unreachable, with a dial failed, before its
   * waiting messages are left in its mailbox, in ms (three times as long while
   * the first dial is still under way).
   *
   * @default 5000
   */
  mailboxAfter?: number

  /**
   * A message in a mailbox is left there anew this long before its host
   * would drop it, in ms.
   *
   * @default 86400000 (a day)
   */
  redepositBefore?: number
}

/**
 * Leaves messages sealed in their recipient's mailbox (node/mailbox): the
 * ones a host confirmed, with until when it keeps each. It throws, or
 * confirms none, when the recipient has no mailbox or no host took them.
 */
export interface Depositor {
  deposit(peer: string, entries: readonly OutboxEntry[], options: DepositOptions): Promise<Array<{ id: string, until: number }>>
}

export interface DepositOptions extends AbortOptions {
  /** When each entry expires undelivered (ms since epoch): a host need not keep it longer. */
  expiresAt: (entry: OutboxEntry) => number
}

/** A mailbox receipt's answer to one message. */
export interface ReceiptAnswer { id: string, status: Ack.Status }

/** What the engine uses of the store: the outbox's queries and writes. */
export type DeliveryStore = Pick<Store, 'enqueue' | 'afterCommit' | 'due' | 'outboxPeers' | 'nextAttempt' | 'retryNow' | 'record' | 'outboxSchedule' | 'outboxScheduleOf' | 'writtenBy' | 'outboxEntry' | 'undeposited' | 'outbound'>

export interface DeliveryComponents {
  store: DeliveryStore
  router: Pick<Router, 'openConnection' | 'connect'>
  im: Pick<ImService, 'send'> & Partial<Pick<ImService, 'sendAtOnce'>>
  logger: ComponentLogger
  /** Leaves messages for unreachable peers in their mailboxes. @default none: they wait in the outbox */
  mailbox?: Depositor
  /** @default systemClock */
  clock?: Clock
  /** The back-off's jitter. @default Math.random */
  random?: () => number
}

export interface DeliveryEvents {
  'message:status': CustomEvent<StatusChange>
}

/** A message put on the wire by `sendAtOnce`: on which connection, and its ack to come. */
interface OnWire {
  id: string
  connection: Connection
  ack: Promise<Acknowledgement>
}

/** Longest an ack's outcome waits to be written with others (ms). */
const RECORD_DELAY = 5

function toOutbound (entry: OutboxEntry): OutboundMessage {
  return {
    id: idFromString(entry.id),
    seq: entry.seq,
    sentAt: entry.sentAt,
    body: entry.body,
    contentType: entry.contentType === DEFAULT_CONTENT_TYPE ? undefined : entry.contentType,
    replyTo: entry.replyTo == null ? undefined : idFromString(entry.replyTo),
    ...(entry.group == null ? {} : { group: entry.group as Uint8Array<ArrayBuffer> })
  }
}

/**
 * Delivers the outbox: the I/O around the outbox's state machine
 * (`OutboxMachine`). Each peer's messages go out in seq order, pipelined on one
 * stream; what is not acknowledged is retried with back-off, and at once when
 * `wake` says a connection opened. Everything lives in the store, so a restart
 * resumes where the last run stopped.
 */
export class DeliveryEngine extends TypedEventEmitter<DeliveryEvents> {
  private readonly store: DeliveryStore
  private readonly router: Pick<Router, 'openConnection' | 'connect'>
  private readonly im: DeliveryComponents['im']
  private readonly log: Logger
  private readonly clock: Clock
  private readonly machine: OutboxMachine
  private readonly connectTimeout: number
  private readonly mailbox?: Depositor
  private readonly mailboxAfter: number
  private readonly redepositBefore: number
  /** Since when each peer has had no connection while its outbox wanted one: its messages go to its mailbox once that is `mailboxAfter` old. */
  private readonly unreachableSince = new Map<string, number>()
  /** Peers a dial to failed since they were last reached. */
  private readonly dialFailed = new Set<string>()
  private readonly depositTimers = new Map<string, ClockTimer>()
  private readonly depositing = new Set<string>()
  private readonly running = new Set<string>()
  private readonly again = new Set<string>()
  /** Peers whose outbox may have gained due messages since a round last looked (see `round`). */
  private readonly fresh = new Set<string>()
  private readonly timers = new Map<string, ClockTimer>()
  /** When each peer's oldest queued message expires, as last read (never later than it is): the expiry sweep runs only once it is past. */
  private readonly expiries = new Map<string, number>()
  /** Messages cancelled while their peer's outbox runs, which a round may still hold from before (see `deliver`). */
  private readonly withdrawn = new Map<string, Set<string>>()
  private controller = new AbortController()
  private stopped = true

  constructor (components: DeliveryComponents, init: DeliveryInit = {}) {
    super()
    this.store = components.store
    this.router = components.router
    this.im = components.im
    this.log = components.logger.forComponent('parley:delivery')
    this.clock = components.clock ?? systemClock
    this.machine = new OutboxMachine({ clock: this.clock, random: components.random }, init)
    this.connectTimeout = init.connectTimeout ?? 30_000
    this.mailbox = components.mailbox
    this.mailboxAfter = init.mailboxAfter ?? 5_000
    this.redepositBefore = init.redepositBefore ?? 24 * 60 * 60_000
  }

  start (): void {
    this.stopped = false
    this.controller = new AbortController()
    // what was on the wire when the last run stopped is queued again
    this.machine.reset()
    for (const { peer, nextAttemptAt, oldestAt } of this.store.outboxSchedule()) {
      const expiresAt = this.machine.expiresAt(oldestAt)
      this.expiries.set(peer, expiresAt)
      this.schedule(peer, Math.min(nextAttemptAt, expiresAt))
    }
  }

  stop (): void {
    this.stopped = true
    this.controller.abort()
    for (const timer of this.timers.values()) this.clock.clearTimeout(timer)
    this.timers.clear()
    for (const timer of this.depositTimers.values()) this.clock.clearTimeout(timer)
    this.depositTimers.clear()
    this.unreachableSince.clear()
    this.dialFailed.clear()
    this.expiries.clear()
    this.withdrawn.clear()
  }

  /**
   * Writes a new message to the outbox, reports it queued, and sends it.
   * Alone in the outbox of a peer with an open /im stream, it goes on the wire
   * as soon as its rows are written, and their commit overlaps its round trip
   * (a crash before the commit means the caller never got an answer; a
   * commit that fails throws, and the recipient may show that message: in
   * both cases its seq is given again to the next one, which it shows too);
   * otherwise the rows are committed first. `durable: false` leaves the wait
   * for the disk to the caller (`Store.sync`), which then overlaps the round
   * trip too. Called inside a store transaction, the message is reported and
   * sent once that commits, never if it rolls back.
   */
  queue (message: NewOutbound, options: { durable?: boolean } = {}): StoredMessage {
    // rows enter the outbox only here (and were read at start): a peer with no
    // expiry kept and no run under way has an empty outbox
    const alone = !this.expiries.has(message.peer) && !this.running.has(message.peer)
    let onWire: OnWire | undefined
    let stored: OutboxEntry
    try {
      stored = this.store.enqueue(message, {
        ...options,
        beforeCommit: alone ? entry => { onWire = this.sendAtOnce(entry) } : undefined
      })
    } catch (err) {
      // as after a crash at that point: the recipient may show it, and its seq is given again
      if (onWire != null) this.log.error('message %s went out before its commit failed - %e', message.id, err)
      throw err
    }
    // inside a caller's transaction, once that commits: a message rolled back
    // with it is neither reported nor sent
    this.store.afterCommit(() => { this.committed(stored, alone, onWire) })
    return stored
  }

  /** A message just committed to the outbox: reported queued (and sending, if `onWire`), then sent. */
  private committed (stored: OutboxEntry, alone: boolean, onWire?: OnWire): void {
    const peer = stored.peer
    // an earlier message of the peer, if any, expires no later than this one
    if (!this.expiries.has(peer)) this.expiries.set(peer, this.machine.expiresAt(stored.createdAt))
    const sending = onWire == null ? [] : this.machine.sending([stored])
    const wasRunning = this.running.has(peer)
    // the outbox is claimed before anything is reported: what a listener does
    // (queue, wake, cancel) finds it running, and the message sending if it is
    const claimed = this.claim(peer)
    this.emit(this.machine.queued(stored))
    if (!this.stopped) for (const change of sending) this.emit(change)
    // a peer unreachable for a while, with a dial under way now: to its
    // mailbox as the others (at once when it is time), not after that dial ends
    if (wasRunning && this.unreachableSince.has(peer)) this.depositLater(peer)
    // alone in the outbox and due, or on the wire already: it is all a run
    // would read back, so it goes out without that query
    if (claimed) this.drain(peer, onWire != null || (alone && stored.nextAttemptAt <= this.clock.now()) ? stored : undefined, onWire)
  }

  /**
   * Puts a message alone in its peer's outbox on the wire within this call,
   * if it is due and the peer's connection has an open /im stream that takes
   * it now; the run that `queue` starts takes its ack as of any send.
   */
  private sendAtOnce (entry: OutboxEntry): OnWire | undefined {
    if (this.stopped || this.im.sendAtOnce == null || entry.nextAttemptAt > this.clock.now()) return undefined
    const connection = this.router.openConnection(peerIdOf(entry.peer))
    if (connection == null) return undefined
    const ack = this.im.sendAtOnce(connection, toOutbound(entry), { signal: this.controller.signal })
    if (ack == null) return undefined
    // settled by the run; one whose rows were not committed after all has none
    ack.catch(() => {})
    return { id: entry.id, connection, ack }
  }

  /** A message as the user sees it: `sending` while on the wire (the store's rows say `queued`). */
  overlay<T extends StoredMessage> (message: T): T {
    return this.machine.overlay(message)
  }

  /**
   * Takes a queued message out of the outbox: it fails as cancelled by the
   * sender. One on the wire now is left to its outcome (the recipient may
   * already hold it): 'sending'. 'absent' when it is not in the outbox
   * (delivered, failed, or no such message).
   */
  cancel (id: string): CancelOutcome {
    const entry = this.store.outboxEntry(id)
    if (entry == null) return 'absent'
    if (this.machine.isSending(id)) return 'sending'
    this.apply(this.machine.cancel(entry))
    // a round waiting for a dial may hold it from before: it must not go out
    if (this.running.has(entry.peer)) {
      let ids = this.withdrawn.get(entry.peer)
      if (ids == null) this.withdrawn.set(entry.peer, ids = new Set())
      ids.add(id)
    }
    return 'cancelled'
  }

  /**
   * The recipient's receipt for messages of ours that it took from its
   * mailbox (the receipt came sealed and signed by `peer`): each answered
   * message of that conversation is delivered, failed, or queued again.
   */
  receipt (peer: string, answers: readonly ReceiptAnswer[]): void {
    const answered = []
    for (const { id, status } of answers) {
      const message = this.store.outbound(peer, id)
      if (message != null) answered.push({ message, status })
    }
    const transition = this.machine.receipt(answered)
    if (transition.changes.length === 0) return
    this.apply(transition)
    // the mailbox emptied the peer's outbox: what was learnt of its reachability
    // is old news by the next message, which tries a dial first
    if (this.store.outboxScheduleOf(peer) == null) this.reached(peer)
    if (transition.writes.unstored != null && transition.writes.unstored.length > 0) this.run(peer)
  }

  /** Something changed (a connection opened, our addresses changed): retry now. */
  wake (peer?: string): void {
    if (this.stopped) return
    const peers = this.machine.wakeable(peer == null ? this.store.outboxPeers().map(p => p.peer) : [peer])
    if (peers.length === 0) return
    this.store.retryNow(peers, this.clock.now())
    for (const p of peers) this.run(p)
  }

  /** Runs the peer's outbox now (a message was answered, a connection opened, a timer fired). */
  run (peer: string): void {
    if (this.claim(peer)) this.drain(peer)
  }

  /**
   * Takes the peer's outbox for a run: false when stopped, or when a run is
   * under way already (it goes round again once it ends: `again`).
   */
  private claim (peer: string): boolean {
    if (this.stopped) return false
    this.fresh.add(peer)
    this.clock.clearTimeout(this.timers.get(peer))
    this.timers.delete(peer)
    if (this.running.has(peer)) {
      this.again.add(peer)
      return false
    }
    this.running.add(peer)
    return true
  }

  /**
   * Runs the claimed outbox (`deliver`), then gives it up: again if asked
   * meanwhile, else with a timer for its next due message, or forgotten
   * once empty. `only`: the one entry due in it, known without reading the
   * store; `onWire`: that entry, already sent (`sendAtOnce`).
   */
  private drain (peer: string, only?: OutboxEntry, onWire?: OnWire): void {
    this.deliver(peer, only, onWire)
      .catch(err => {
        this.log.error('outbox of %s stopped unexpectedly - %e', peer, err)
        return false
      })
      .then(emptied => {
        this.running.delete(peer)
        if (this.again.delete(peer)) {
          this.run(peer)
          return
        }
        this.withdrawn.delete(peer)
        if (this.stopped) return
        // known empty: no need to ask the store (a lone message's run, the common case)
        const next = emptied ? undefined : this.store.outboxScheduleOf(peer)
        if (next != null) {
          const expiresAt = this.machine.expiresAt(next.oldestAt)
          this.expiries.set(peer, expiresAt)
          // the outbox wakes when its oldest message expires even if the peer is never reachable
          this.schedule(peer, Math.min(next.nextAttemptAt, expiresAt))
        } else {
          this.expiries.delete(peer)
          this.forget(peer)
        }
      })
  }

  private schedule (peer: string, at: number): void {
    if (this.stopped) return
    this.clock.clearTimeout(this.timers.get(peer))
    const timer = this.clock.setTimeout(() => {
      this.timers.delete(peer)
      this.run(peer)
    }, Math.min(MAX_TIMER, Math.max(0, at - this.clock.now())))
    this.timers.set(peer, timer)
  }

  /** The peer's outbox is empty and nothing is under way for it: what is kept about it goes, so that a long-running node does not pile it up. */
  private forget (peer: string): void {
    if (this.timers.has(peer) || this.running.has(peer)) return
    this.unreachableSince.delete(peer)
    this.dialFailed.delete(peer)
    this.clock.clearTimeout(this.depositTimers.get(peer))
    this.depositTimers.delete(peer)
    this.fresh.delete(peer)
    this.machine.forget(peer)
  }

  private emit (change: StatusChange): void {
    this.dispatchEvent(new CustomEvent('message:status', { detail: change }))
  }

  /** Writes a transition (one transaction) and reports its changes. */
  private apply (transition: Transition, options?: { durable: boolean, defer?: boolean }): void {
    this.store.record(transition.writes, options)
    for (const change of transition.changes) this.emit(change)
  }

  /**
   * Sends the peer's due messages, round after round, until none is left or
   * one is lost. Resolves with whether the outbox is known to be empty now
   * without asking the store: the run began with `only`, the peer's one
   * outbox entry, and it was delivered or failed with nothing queued since.
   * `onWire`: `only`, already sent on that connection.
   */
  private async deliver (peer: string, only?: OutboxEntry, onWire?: OnWire): Promise<boolean> {
    const signal = this.controller.signal
    const peerId = peerIdOf(peer)
    const alone = only != null
    for (let rounds = 0; ; rounds++) {
      // sent already: the first round's one message only
      const sent = onWire
      onWire = undefined
      if (this.stopped) return false
      this.sweep(peer)
      const window = this.machine.window(peer)
      this.fresh.delete(peer)
      // `only` cancelled meanwhile (by a listener of its 'queued') stays off the wire
      const found = only == null ? this.store.due(peer, this.clock.now(), window) : this.notWithdrawn(peer, [only])
      only = undefined
      if (found.length === 0) return false
      // one due but expired since the sweep fails here, without a query of its own
      const { live, transition } = this.machine.expire(found)
      if (transition.changes.length > 0) this.apply(transition)
      let due = live
      if (due.length === 0) continue

      // an open connection is used as it is; only a dial needs a time limit
      let connection = sent?.connection ?? this.router.openConnection(peerId)
      if (connection == null) {
        // a dial that fails, or takes long, sends the messages to the mailbox meanwhile
        this.depositLater(peer)
        const timeout = timeoutSignal(this.clock, this.connectTimeout)
        try {
          connection = await this.router.connect(peerId, { signal: AbortSignal.any([signal, timeout.signal]) })
        } catch (err: any) {
          if (this.stopped) return false
          due = this.notWithdrawn(peer, due)
          this.log('cannot reach %s, %d messages wait - %s', peer, due.length, err.message)
          this.apply(this.machine.unreachable(due, err.message))
          this.depositLater(peer, true)
          continue
        } finally {
          timeout.clear()
        }
        due = this.notWithdrawn(peer, due)
        if (due.length === 0) continue
      }
      this.reached(peer)

      const { lost, exhausted, sent: count } = await this.round(peer, connection, due, window, signal, sent)
      if (this.stopped) return false
      this.machine.roundEnded(peer, lost)
      // nothing was left when the round last looked, and nothing was queued since
      if (!lost && exhausted && !this.fresh.has(peer)) return alone && rounds === 0 && count === 1
    }
  }

  /** A connection to the peer is open: its mailbox is not needed now. */
  private reached (peer: string): void {
    this.unreachableSince.delete(peer)
    this.dialFailed.delete(peer)
    this.clock.clearTimeout(this.depositTimers.get(peer))
    this.depositTimers.delete(peer)
  }

  /**
   * Deposits the peer's waiting messages in its mailbox once it has been
   * unreachable for `mailboxAfter` with a dial failed (a dial still under way
   * is given three times as long: a slow connection is not a missing peer),
   * at once when that is past. `failed`: a dial to it just failed.
   */
  private depositLater (peer: string, failed = false): void {
    if (this.mailbox == null) return
    const now = this.clock.now()
    let since = this.unreachableSince.get(peer)
    if (since == null) this.unreachableSince.set(peer, since = now)
    if (failed && !this.dialFailed.has(peer)) {
      this.dialFailed.add(peer)
      // sooner than the timer set while the dial was under way
      this.clock.clearTimeout(this.depositTimers.get(peer))
      this.depositTimers.delete(peer)
    }
    if (this.depositTimers.has(peer)) return
    const deposit = (): void => {
      this.deposit(peer).catch(err => { this.log.error('depositing for %s failed unexpectedly - %e', peer, err) })
    }
    const wait = since + (this.dialFailed.has(peer) ? 1 : SLOW_DIAL_FACTOR) * this.mailboxAfter - now
    if (wait <= 0) {
      deposit()
      return
    }
    this.depositTimers.set(peer, this.clock.setTimeout(() => {
      this.depositTimers.delete(peer)
      if (this.unreachableSince.has(peer)) deposit()
    }, wait))
  }

  /**
   * Seals and leaves the peer's messages that no mailbox holds (or holds not
   * much longer) in its mailbox; again while messages queued meanwhile wait
   * and the peer is still unreachable.
   */
  private async deposit (peer: string): Promise<void> {
    if (this.mailbox == null || this.stopped || this.depositing.has(peer)) return
    this.depositing.add(peer)
    try {
      const tried = new Set<string>()
      while (!this.stopped && this.unreachableSince.has(peer)) {
        // what a host refused this time waits for the next failed round
        const entries = this.store.undeposited(peer, this.clock.now() + this.redepositBefore).filter(e => !this.machine.isSending(e.id) && !tried.has(e.id))
        if (entries.length === 0) return
        for (const entry of entries) tried.add(entry.id)
        let stored: Array<{ id: string, until: number }>
        const started = this.clock.now()
        // bounded: a DHT query or a host that never answers must not hold
        // this peer's deposits (`depositing`) for good
        const timeout = timeoutSignal(this.clock, this.connectTimeout)
        try {
          stored = await this.mailbox.deposit(peer, entries, { signal: AbortSignal.any([this.controller.signal, timeout.signal]), expiresAt: entry => this.machine.expiresAt(entry.createdAt) })
          this.log('%d of %d messages for %s left in its mailbox in %d ms', stored.length, entries.length, peer, this.clock.now() - started)
        } catch (err: any) {
          if (this.stopped) return
          this.log('no mailbox of %s took %d messages - %s', peer, entries.length, err.message)
          return
        } finally {
          timeout.clear()
        }
        if (this.stopped) return
        const byId = new Map(entries.map(e => [e.id, e]))
        const deposits = stored.flatMap(({ id, until }) => {
          const entry = byId.get(id)
          return entry == null ? [] : [{ entry, until }]
        })
        if (deposits.length > 0) this.apply(this.machine.stored(deposits))
      }
    } finally {
      this.depositing.delete(peer)
    }
  }

  /** The entries less those cancelled while a dial was under way. */
  private notWithdrawn (peer: string, entries: OutboxEntry[]): OutboxEntry[] {
    const withdrawn = this.withdrawn.get(peer)
    return withdrawn == null ? entries : entries.filter(entry => !withdrawn.has(entry.id))
  }

  /**
   * Fails the peer's expired messages in one transaction, due or not, once
   * the oldest one's expiry (as last read) is past: one indexed query at most
   * per run of the outbox, none while nothing has expired.
   */
  private sweep (peer: string): void {
    const expiresAt = this.expiries.get(peer)
    if (expiresAt == null || expiresAt > this.clock.now()) return
    // the next expiry is read again when this run ends
    this.expiries.delete(peer)
    const { transition } = this.machine.expire(this.store.writtenBy(peer, this.machine.expiredBy()))
    if (transition.changes.length > 0) this.apply(transition)
  }

  /**
   * One round on one connection. `first` go out at once, in seq order; as
   * acks come back, the next due messages follow, so that up to `window` stay
   * unacknowledged without a pause between batches. Outcomes are written
   * several at a time in one transaction (one fsync): once a window's worth
   * is in hand, when nothing is left in flight, or `RECORD_DELAY` ms after the
   * oldest came in; each is reported once written. The round ends when
   * nothing is in flight and nothing more is due, or once a message is lost
   * (nothing more is sent; the window is then halved). Resolves with whether
   * one was lost, whether the outbox had nothing more due when last looked
   * at, and how many messages it sent.
   */
  private async round (peer: string, connection: Connection, first: OutboxEntry[], window: number, signal: AbortSignal, onWire?: OnWire): Promise<{ lost: boolean, exhausted: boolean, sent: number }> {
    let inFlight = 0
    let sent = 0
    let lastSeq = 0
    /** Sends settled since the loop last looked. */
    let settled: Sent[] = []
    /** Outcomes not yet written, and since when the oldest waits. */
    let unwritten: Sent[] = []
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
    /** Puts entries on the wire. */
    const start = (entries: OutboxEntry[]): void => {
      // one sent at once was reported sending when it was queued
      for (const change of this.machine.sending(onWire == null ? entries : entries.filter(entry => entry.id !== onWire.id))) this.emit(change)
      // all start in seq order at once: the channel writes them in that order
      for (const entry of entries) {
        inFlight++
        sent++
        lastSeq = Math.max(lastSeq, entry.seq)
        const ack = onWire?.id === entry.id ? onWire.ack : this.im.send(connection, toOutbound(entry), { signal })
        ack.then(
          value => { settle(entry, { status: 'fulfilled', value }) },
          (reason: unknown) => { settle(entry, { status: 'rejected', reason }) }
        )
      }
    }

    start(first)
    while (inFlight > 0 || unwritten.length > 0) {
      if (settled.length === 0 && inFlight > 0) {
        let timer: ClockTimer | undefined
        await new Promise<void>(resolve => {
          wake = resolve
          if (unwritten.length > 0) timer = this.clock.setTimeout(resolve, Math.max(0, waitingSince + RECORD_DELAY - this.clock.now()))
        })
        this.clock.clearTimeout(timer)
      }
      // acks read together settle together (when more are still to come)
      if (inFlight > settled.length) await new Promise(resolve => setImmediate(resolve))
      const batch = settled
      settled = []
      inFlight -= batch.length
      if (unwritten.length === 0 && batch.length > 0) waitingSince = this.clock.now()
      unwritten.push(...batch)
      // a message not delivered (or the recipient asking to wait): nothing more goes out this round
      if (batch.some(({ result }) => endsRound(result))) lost = true
      // the next messages (queued meanwhile; retries of earlier seqs wait for
      // the next round) go on the wire first, so that the recipient works on
      // them while this side waits for the disk
      if (!this.stopped && !lost && inFlight < window && (!exhausted || this.fresh.has(peer))) {
        this.fresh.delete(peer)
        const more = this.store.due(peer, this.clock.now(), window - inFlight, lastSeq)
        exhausted = more.length < window - inFlight
        if (more.length > 0) {
          start(more)
          await new Promise(resolve => setImmediate(resolve))
        }
      }
      if (unwritten.length > 0 && (unwritten.length >= window || inFlight === 0 || lost || this.stopped || this.clock.now() - waitingSince >= RECORD_DELAY)) {
        const outcomes = unwritten
        unwritten = []
        try {
          // not waiting for the disk here is safe: the recipient already holds
          // these durably, and a mark lost to a power cut (or, deferred to the
          // next commit, to a crash) only means the message goes once more
          // after the restart and comes back DUPLICATE, then delivered
          this.apply(this.machine.settle(outcomes), { durable: false, defer: true })
        } catch (err) {
          // the node stopped and closed its store meanwhile: these go again after a restart
          if (this.stopped) return { lost, exhausted, sent }
          throw err
        }
      }
      if (this.stopped) return { lost, exhausted, sent }
    }
    return { lost, exhausted, sent }
  }
}
