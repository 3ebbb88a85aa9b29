/**
 * Drains this node's mailboxes: on start and whenever a connection to one of
 * its mailbox hosts opens, it registers there and opens a session; the host
 * sends what it holds, then what arrives while the session lasts. Each
 * envelope is opened (authenticated, bound to this node), its message goes
 * through the same reception as one from an /im stream (admission, limits,
 * dedup on (sender, id), seq order), and only once the message is durable is
 * the envelope deleted on the host. The sender then gets a receipt through
 * its own mailbox. Envelopes that do not open are deleted unread: nobody can
 * show them.
 */
import { TypedEventEmitter } from 'main-event'
import { backoff } from '../../common/backoff.js'
import { systemClock } from '../../common/clock.js'
import { Ack, ID_BYTES, inboundMessage, refusalFor } from '../../protocols/im/index.js'
import { idToString } from '../message-id.js'
import type { MailboxDirectory } from './directory.js'
import type { MailboxDepositor, MailboxHost } from './depositor.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { ChatMessage } from '../../protocols/im/pb/im.js'
import type { DeliveryEngine } from '../outbox/delivery.js'
import type { Reception } from '../reception.js'
import type { AbortOptions, ComponentLogger, Logger, PeerId } from '@libp2p/interface'

/** A mailbox's fill level, as its host reports it. */
export interface MailboxFill {
  envelopes: number
  bytes: number
  maxEnvelopes: number
  maxBytes: number
  /** When the host drops the mailbox unless this node registers again (ms since epoch). */
  expiresAt: number
}

/** An envelope as a session hands it over. */
export interface SessionEnvelope { id: Uint8Array, envelope: Uint8Array }

/** An open session with a host: batches of envelopes, until it ends. */
export interface ReceiveSession extends AsyncIterable<SessionEnvelope[]> {
  readonly info: MailboxFill
  delete(ids: Uint8Array[]): Promise<void>
  close(): Promise<void>
}

/** What the receiver needs of the mailbox protocol's client. */
export interface ReceiveTransport {
  register(host: MailboxHost, options: AbortOptions): Promise<MailboxFill>
  open(host: MailboxHost, options: AbortOptions): Promise<ReceiveSession>
}

/** An envelope opened: its authenticated sender and what it carries. */
export interface OpenedMail {
  sender: PeerId
  message?: ChatMessage
  receipt?: Array<{ id: Uint8Array, status: number }>
  replyRecord?: Uint8Array
}

export interface MailboxReceiverComponents {
  transport: ReceiveTransport
  /** Opens (decrypts, authenticates) an envelope for this node; throws when it does not open. */
  open: (envelope: Uint8Array) => Promise<OpenedMail>
  reception: Pick<Reception, 'admit' | 'store' | 'onRefused'>
  engine: Pick<DeliveryEngine, 'receipt'>
  directory: Pick<MailboxDirectory, 'learn'>
  depositor: Pick<MailboxDepositor, 'depositReceipt'>
  /** Whether this node trusts the peer (a contact, or accepted): a stranger gets receipts for stored messages only. */
  trusts: (peer: string) => boolean
  logger: ComponentLogger
  /** @default systemClock */
  clock?: Clock
  /** The reconnection back-off's jitter. @default Math.random */
  random?: () => number
}

/** A mailbox host of this node and how its mailbox stands, for `status`. */
export interface MailboxStatus {
  /** The host's peer ID. */
  host: string
  /** A session is open now: what arrives is fetched at once. */
  connected: boolean
  /** As the host last reported it (at the session's start). */
  fill?: MailboxFill
  /** Envelopes fetched in this run of the node. */
  received: number
  lastError?: string
}

export interface MailboxReceiverEvents {
  /** A mailbox's state changed (a session opened or ended, envelopes arrived). */
  change: CustomEvent<MailboxStatus>
}

interface HostState {
  host: MailboxHost
  status: MailboxStatus
  session?: ReceiveSession
  connecting: boolean
  failures: number
  timer?: ClockTimer
  /** The first session since start took what waited on the host, or the first attempt failed. */
  settled: boolean
}

/** What became of one envelope: whether to delete it on the host, and the receipt its sender gets. */
interface Handled {
  remove: boolean
  answer?: { sender: string, id: Uint8Array, status: Ack.Status }
}

/** The /im Ack.Status values by their wire numbers (protocols/im/README.md §3): receipts carry the numbers. */
const ACK_STATUSES = [Ack.Status.OK, Ack.Status.DUPLICATE, Ack.Status.TOO_LARGE, Ack.Status.INVALID, Ack.Status.BLOCKED, Ack.Status.RATE_LIMITED]

/** An Ack.Status as its wire number. */
export function ackStatusNumber (status: Ack.Status): number {
  return ACK_STATUSES.indexOf(status)
}

/** A wire number as an Ack.Status; undefined for a number the /im spec does not define. */
export function ackStatusOf (value: number): Ack.Status | undefined {
  return ACK_STATUSES[value]
}

/** Receipt entries per sealed receipt: one receipt answers a whole batch of a sender. */
const MAX_RECEIPT_ENTRIES = 256

export class MailboxReceiver extends TypedEventEmitter<MailboxReceiverEvents> {
  private readonly components: MailboxReceiverComponents
  private readonly log: Logger
  private readonly clock: Clock
  private readonly random: () => number
  private readonly hosts = new Map<string, HostState>()
  private stopped = true
  private controller = new AbortController()
  private readonly settledWaiters = new Set<() => void>()

  constructor (components: MailboxReceiverComponents, init: { hosts: MailboxHost[] }) {
    super()
    this.components = components
    this.log = components.logger.forComponent('parley:mailbox:receive')
    this.clock = components.clock ?? systemClock
    this.random = components.random ?? Math.random
    for (const host of init.hosts) {
      this.hosts.set(host.peerId.toString(), { host, status: { host: host.peerId.toString(), connected: false, received: 0 }, connecting: false, failures: 0, settled: false })
    }
  }

  start (): void {
    this.stopped = false
    this.controller = new AbortController()
    for (const state of this.hosts.values()) this.connect(state)
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.controller.abort()
    for (const resolve of this.settledWaiters) resolve()
    this.settledWaiters.clear()
    await Promise.all([...this.hosts.values()].map(async state => {
      this.clock.clearTimeout(state.timer)
      state.timer = undefined
      await state.session?.close().catch(() => {})
    }))
  }

  /** This node's hosts changed: new ones are registered on and drained, sessions with ones gone are closed. */
  async setHosts (hosts: MailboxHost[]): Promise<void> {
    const wanted = new Map(hosts.map(host => [host.peerId.toString(), host]))
    for (const [key, state] of this.hosts) {
      if (wanted.has(key)) continue
      this.hosts.delete(key)
      this.clock.clearTimeout(state.timer)
      state.timer = undefined
      await state.session?.close().catch(() => {})
    }
    for (const [key, host] of wanted) {
      if (this.hosts.has(key)) continue
      const state: HostState = { host, status: { host: key, connected: false, received: 0 }, connecting: false, failures: 0, settled: false }
      this.hosts.set(key, state)
      if (!this.stopped) this.connect(state)
    }
  }

  /** Registers again on every host with an open session (the host's lease on the mailbox runs from the last Register or Open). */
  renew (): void {
    for (const state of this.hosts.values()) {
      if (state.session == null) continue
      this.components.transport.register(state.host, { signal: this.controller.signal })
        .then(fill => { state.status.fill = fill })
        .catch(err => { this.log('renewing the mailbox on %p failed - %s', state.host.peerId, err.message) })
    }
  }

  /**
   * Resolves once every mailbox has been drained of what waited on it when
   * this node started (or could not be reached on a first try): what others
   * left while this node was away is then in the store.
   */
  async caughtUp (): Promise<void> {
    if (this.allSettled()) return
    await new Promise<void>(resolve => { this.settledWaiters.add(resolve) })
  }

  private allSettled (): boolean {
    return [...this.hosts.values()].every(state => state.settled)
  }

  private settle (state: HostState): void {
    if (state.settled) return
    state.settled = true
    if (!this.allSettled()) return
    for (const resolve of this.settledWaiters) resolve()
    this.settledWaiters.clear()
  }

  /** The mailboxes of this node and how each stands. */
  status (): MailboxStatus[] {
    return [...this.hosts.values()].map(state => ({ ...state.status }))
  }

  /** A connection to `peer` opened: if it is a host without a session, open one now. */
  connected (peer: PeerId | string): void {
    const state = this.hosts.get(peer.toString())
    if (state == null || this.stopped) return
    state.failures = 0
    this.connect(state)
  }

  private connect (state: HostState): void {
    if (this.stopped || state.connecting || state.session != null) return
    this.clock.clearTimeout(state.timer)
    state.timer = undefined
    state.connecting = true
    this.drain(state)
      .catch(err => {
        state.failures++
        // unreachable now: nothing waits on it any longer
        this.settle(state)
        state.status.lastError = err.message
        this.log('mailbox on %p: %s', state.host.peerId, err.message)
      })
      .finally(() => {
        state.connecting = false
        state.session = undefined
        state.status.connected = false
        this.changed(state)
        if (this.stopped || this.hosts.get(state.status.host) !== state) return
        // the session ended (the host went, or refused): again after a back-off, or at once on the next connection to it
        const wait = backoff(Math.max(1, state.failures), { first: 1_000, max: 60_000, jitter: 'full' }, this.random)
        state.timer = this.clock.setTimeout(() => {
          state.timer = undefined
          this.connect(state)
        }, wait)
      })
  }

  private async drain (state: HostState): Promise<void> {
    const signal = this.controller.signal
    await this.components.transport.register(state.host, { signal })
    const session = await this.components.transport.open(state.host, { signal })
    if (this.stopped) {
      await session.close()
      return
    }
    state.session = session
    state.failures = 0
    state.status = { ...state.status, connected: true, fill: session.info, lastError: undefined }
    this.changed(state)
    this.log('mailbox on %p open: %d envelopes wait', state.host.peerId, session.info.envelopes)
    let waiting = session.info.envelopes
    if (waiting <= 0) this.settle(state)
    for await (const batch of session) {
      if (this.stopped) return
      this.log('%d envelopes from %p', batch.length, state.host.peerId)
      await this.handleBatch(batch, session)
      state.status.received += batch.length
      waiting -= batch.length
      if (waiting <= 0) this.settle(state)
      this.changed(state)
    }
    // the session ended (the host closed it): whatever it held is as taken as it will be
    this.settle(state)
  }

  private async handleBatch (batch: SessionEnvelope[], session: ReceiveSession): Promise<void> {
    // stored concurrently (the inbox commits them together), in the order they came
    const handled = await Promise.all(batch.map(async item => this.handle(item.envelope)))
    const answers = new Map<string, Array<{ id: Uint8Array, status: number }>>()
    for (const { answer } of handled) {
      if (answer == null) continue
      let list = answers.get(answer.sender)
      if (list == null) answers.set(answer.sender, list = [])
      list.push({ id: answer.id, status: ackStatusNumber(answer.status) })
    }
    // the receipts leave before the envelopes are deleted: a node stopped in
    // between fetches them again, finds them stored (DUPLICATE) and answers again
    const receipts: Array<Promise<void>> = []
    for (const [sender, list] of answers) {
      for (let i = 0; i < list.length; i += MAX_RECEIPT_ENTRIES) {
        const part = list.slice(i, i + MAX_RECEIPT_ENTRIES)
        receipts.push(this.components.depositor.depositReceipt(sender, part, { signal: this.controller.signal })
          .then(() => { this.log('receipt for %d messages left for %s', part.length, sender) })
          // the sender's direct retries get their answer anyway: a receipt that cannot be left is no reason to keep the envelopes
          .catch(err => { this.log('no receipt for %s - %s', sender, err.message) }))
      }
    }
    await Promise.all(receipts)
    if (this.stopped) return
    // only what is durable here leaves the host
    const removable = batch.filter((_, i) => handled[i].remove).map(item => item.id)
    if (removable.length > 0) await session.delete(removable)
  }

  private async handle (envelope: Uint8Array): Promise<Handled> {
    let opened: OpenedMail
    try {
      opened = await this.components.open(envelope)
    } catch (err: any) {
      this.log('an envelope that does not open was deleted - %s', err.message)
      return { remove: true }
    }
    const sender = opened.sender.toString()
    const trusted = this.components.trusts(sender)
    // a stranger's record is kept (and so dialled, for receipts) only for a
    // message that made it into the store, which its request quota bounds
    const learn = async (): Promise<void> => {
      if (opened.replyRecord == null) return
      await this.components.directory.learn(sender, opened.replyRecord).catch(err => { this.log('%s sent a mailbox record that does not verify - %s', sender, err.message) })
    }
    if (trusted) await learn()
    if (opened.receipt != null) {
      const answers = opened.receipt.flatMap(({ id, status }) => {
        const known = ackStatusOf(status)
        return known == null || id.byteLength !== ID_BYTES ? [] : [{ id: idToString(id), status: known }]
      })
      this.components.engine.receipt(sender, answers)
      return { remove: true }
    }
    const message = opened.message
    if (message == null) return { remove: true }
    // refusals are answered to the people this node trusts only: a stranger's
    // envelopes must not make it deposit receipts wherever their record says
    const answer = (status: Ack.Status): Handled => trusted ? { remove: true, answer: { sender, id: message.id, status } } : { remove: true }
    const { reception } = this.components
    const admission = reception.admit(opened.sender)
    // a receipt RATE_LIMITED makes the sender leave it in the mailbox again later
    if (admission.status === 'rate-limit') return answer(Ack.Status.RATE_LIMITED)
    // this node's record announces /im/1.1.0 (protocols/group/README.md): it reads group payloads from its mailbox
    const refusal = admission.status === 'block' ? Ack.Status.BLOCKED : refusalFor(message, { groups: true })
    if (refusal != null) {
      reception.onRefused({ from: opened.sender, seq: message.seq, id: message.id, status: refusal })
      return answer(refusal)
    }
    try {
      const result = await reception.store(inboundMessage(message, opened.sender, 'mailbox'))
      if (typeof result === 'object') return answer(Ack.Status.RATE_LIMITED)
      if (!trusted) await learn()
      return { remove: true, answer: { sender, id: message.id, status: result === 'duplicate' ? Ack.Status.DUPLICATE : Ack.Status.OK } }
    } catch (err: any) {
      // not stored (the disk?): it stays on the host, and comes again next session
      this.log.error('could not store a message from %s\'s envelope - %e', sender, err)
      return { remove: false }
    }
  }

  private changed (state: HostState): void {
    this.dispatchEvent(new CustomEvent('change', { detail: { ...state.status } }))
  }
}
