/**
 * Stubs for the delivery engine's unit tests (delivery.test.ts,
 * send-at-once-attack.test.ts): the /im service and the router, answered by
 * the test, and a fake clock that says when a timer is set.
 */
import { Ack } from '../../protocols/im/index.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import { until } from '../fixtures/wait.js'
import type { ClockTimer } from '../../common/clock.js'
import type { Acknowledgement, OutboundMessage } from '../../protocols/im/index.js'
import type { AbortOptions, Connection } from '@libp2p/interface'

export const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
export const CONNECTION = { id: 'stub-connection' } as unknown as Connection
/** Waits in these tests end on events; this only bounds a wait that never ends. */
export const WAIT = 5_000

/** A FakeClock that says when a timer is set, so that a test can wait for one. */
export class WatchedClock extends FakeClock {
  readonly events = new EventTarget()

  constructor () {
    super()
    const set = this.setTimeout
    this.setTimeout = (fn: () => void, ms: number): ClockTimer => {
      const timer = set(fn, ms)
      this.events.dispatchEvent(new Event('timer'))
      return timer
    }
  }
}

interface Call {
  message: OutboundMessage
  resolve: (value: Acknowledgement) => void
  reject: (err: Error) => void
}

/**
 * The /im service's `send`, answered by the test: each send waits until the
 * test acks or fails it (or, with `autoAck`, is acked OK at once). Like the
 * real one, a send rejects when its signal aborts, unless `abortable` is off (a
 * process that dies answers nothing).
 */
export class StubIm extends EventTarget {
  readonly sent: OutboundMessage[] = []
  readonly pending: Call[] = []
  /** How many sends were unanswered as each send started. */
  readonly inFlightAtSend: number[] = []
  autoAck?: Ack.Status
  abortable = true
  /** The service's `sendAtOnce`, for the tests that give one: none, as a service without it. */
  sendAtOnce?: (connection: Connection, message: OutboundMessage, options?: AbortOptions) => Promise<Acknowledgement> | undefined

  send = async (connection: Connection, message: OutboundMessage, options: AbortOptions = {}): Promise<Acknowledgement> => {
    const { promise, resolve, reject } = Promise.withResolvers<Acknowledgement>()
    const call = { message, resolve, reject }
    this.sent.push(message)
    if (this.autoAck != null) {
      resolve({ id: message.id, status: this.autoAck, path: 'direct', connection })
    } else {
      this.pending.push(call)
      if (this.abortable) options.signal?.addEventListener('abort', () => { this.settle(call, () => { reject(options.signal?.reason) }) })
    }
    this.inFlightAtSend.push(this.pending.length)
    this.dispatchEvent(new Event('send'))
    return promise
  }

  get seqs (): number[] {
    return this.sent.map(m => m.seq)
  }

  /** Answers the pending send of `seq`. */
  ack (seq: number, status = Ack.Status.OK, retryAfterMs?: number): void {
    const call = this.find(seq)
    this.settle(call, () => { call.resolve({ id: call.message.id, status, retryAfterMs, path: 'relayed', connection: CONNECTION }) })
  }

  /** Fails the pending send of `seq`, as a reset stream would. */
  fail (seq: number, message = 'stream reset'): void {
    const call = this.find(seq)
    this.settle(call, () => { call.reject(new Error(message)) })
  }

  /** Acks every pending send OK, in seq order. */
  ackAll (): void {
    for (const call of [...this.pending]) this.ack(call.message.seq)
  }

  async sends (count: number): Promise<void> {
    await until(() => this.sent.length >= count, { on: [this, 'send'], what: () => `${count} sends (${this.sent.length} so far)`, timeout: WAIT })
  }

  private find (seq: number): Call {
    const call = this.pending.find(c => c.message.seq === seq)
    if (call == null) throw new Error(`no pending send of seq ${seq}`)
    return call
  }

  private settle (call: Call, answer: () => void): void {
    const at = this.pending.indexOf(call)
    if (at === -1) return
    this.pending.splice(at, 1)
    answer()
  }
}

/** The router: an open connection to the peer, or a dial the test decides. */
export class StubRouter extends EventTarget {
  open = true
  dials = 0
  dial: (options: AbortOptions) => Promise<Connection> = async () => CONNECTION

  openConnection = (): Connection | undefined => this.open ? CONNECTION : undefined

  connect = async (peer: unknown, options: AbortOptions = {}): Promise<Connection> => {
    this.dials++
    this.dispatchEvent(new Event('dial'))
    return this.dial(options)
  }

  async dialled (count: number): Promise<void> {
    await until(() => this.dials >= count, { on: [this, 'dial'], what: `${count} dials`, timeout: WAIT })
  }
}
