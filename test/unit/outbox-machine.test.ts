import { describe, expect, it } from 'vitest'
import { CANCELLED_REASON, MAX_RETRY_AFTER, MIN_RETRY_AFTER, OutboxMachine, endsRound, humanDuration } from '../../node/outbox/machine.js'
import { Ack, MAX_UNACKED } from '../../protocols/im/index.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { Entry, SendResult } from '../../node/outbox/machine.js'
import type { StoredMessage } from '../../node/store/index.js'

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const OTHER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

function entry (seq: number, attempts = 0, peer = PEER): Entry {
  return { id: `m${seq}`, peer, seq, attempts }
}

function ack (status: Ack.Status, more: { retryAfterMs?: number, path?: 'direct' | 'relayed' } = {}): SendResult {
  return { status: 'fulfilled', value: { status, path: more.path ?? 'direct', retryAfterMs: more.retryAfterMs } }
}

function rejected (message: string): SendResult {
  return { status: 'rejected', reason: new Error(message) }
}

function row (seq: number, status: StoredMessage['status'] = 'queued', direction: 'in' | 'out' = 'out'): StoredMessage {
  return { id: `m${seq}`, peer: PEER, direction, seq, body: 'x', contentType: 'text/plain', sentAt: 1, createdAt: 1, status, request: false }
}

/** A machine with a fake clock and a random that always says 0.5: every back-off is half its ceiling. */
function machine (init = {}): { machine: OutboxMachine, clock: FakeClock } {
  const clock = new FakeClock()
  return { machine: new OutboxMachine({ clock, random: () => 0.5 }, { initialDelay: 1_000, maxDelay: 60_000, ...init }), clock }
}

describe('outbox machine', () => {
  it('reports a queued message, then sending with the attempt it is, laid over a row that still says queued', () => {
    const { machine: m } = machine()
    expect(m.queued(row(1))).toEqual({ id: 'm1', peer: PEER, seq: 1, status: 'queued' })
    expect(m.sending([entry(1), entry(2, 3)])).toEqual([
      { id: 'm1', peer: PEER, seq: 1, status: 'sending', attempts: 1 },
      { id: 'm2', peer: PEER, seq: 2, status: 'sending', attempts: 4 }
    ])
    expect(m.overlay(row(1)).status).toBe('sending')
    expect(m.overlay(row(3)).status).toBe('queued')
    // only a queued outbound row: an inbound message with the same id, or a row already written delivered, is as it is
    expect(m.overlay(row(1, 'presented', 'in')).status).toBe('presented')
    expect(m.overlay(row(1, 'delivered')).status).toBe('delivered')
    m.reset()
    expect(m.overlay(row(1)).status).toBe('queued')
  })

  it('settles OK and DUPLICATE as delivered with their path, and takes them off the wire', () => {
    const { machine: m, clock } = machine()
    m.sending([entry(1), entry(2)])
    const { writes, changes } = m.settle([
      { entry: entry(1), result: ack(Ack.Status.OK, { path: 'relayed' }) },
      { entry: entry(2), result: ack(Ack.Status.DUPLICATE) }
    ])
    expect(writes).toEqual({ at: clock.now(), delivered: [{ id: 'm1', path: 'relayed' }, { id: 'm2', path: 'direct' }], retried: [], failed: [] })
    expect(changes).toEqual([
      { id: 'm1', peer: PEER, seq: 1, status: 'delivered', path: 'relayed' },
      { id: 'm2', peer: PEER, seq: 2, status: 'delivered', path: 'direct' }
    ])
    expect(m.overlay(row(1)).status).toBe('queued')
  })

  it('fails a message the recipient refuses, with the reason', () => {
    const { machine: m } = machine()
    for (const status of [Ack.Status.TOO_LARGE, Ack.Status.INVALID, Ack.Status.BLOCKED]) {
      const { writes, changes } = m.settle([{ entry: entry(1), result: ack(status) }])
      expect(writes.failed).toEqual([{ id: 'm1', reason: `refused by the recipient: ${status}` }])
      expect(changes).toEqual([{ id: 'm1', peer: PEER, seq: 1, status: 'failed', reason: `refused by the recipient: ${status}`, path: 'direct' }])
      expect(endsRound(ack(status))).toBe(false)
    }
  })

  it('retries a message with no ack after an exponential back-off with full jitter, capped', () => {
    const { machine: m, clock } = machine({ maxDelayUnstored: 60_000 })
    const now = clock.now()
    // random() * min(maxDelay, initialDelay * 2^attempts), random() = 0.5
    const delays = [0, 1, 2, 5, 6, 10].map(attempts => m.settle([{ entry: entry(1, attempts), result: rejected('stream reset') }]).writes.retried[0].at - now)
    expect(delays).toEqual([500, 1_000, 2_000, 16_000, 30_000, 30_000])
    const { writes, changes } = m.settle([{ entry: entry(1, 2), result: rejected('stream reset') }])
    expect(writes.retried).toEqual([{ id: 'm1', at: now + 2_000, reason: 'stream reset' }])
    expect(changes).toEqual([{ id: 'm1', peer: PEER, seq: 1, status: 'queued', reason: 'stream reset', attempts: 3 }])
    expect(endsRound(rejected('stream reset'))).toBe(true)
  })

  it('never waits longer than maxDelayUnstored between attempts of a message no mailbox holds; one a mailbox holds backs off to maxDelay', () => {
    const clock = new FakeClock()
    // the longest draw full jitter can make: each delay is its ceiling
    const m = new OutboxMachine({ clock, random: () => 0.999_999 }, { initialDelay: 1_000, maxDelay: 300_000, maxDelayUnstored: 30_000 })
    const now = clock.now()
    const delays = (status?: 'queued' | 'stored'): number[] => Array.from({ length: 40 }, (_, attempts) => {
      const e = { ...entry(1, attempts), status }
      return Math.max(
        m.unreachable([e], 'no way to reach').writes.retried[0].at,
        m.settle([{ entry: e, result: rejected('stream reset') }]).writes.retried[0].at
      ) - now
    })
    // the peer unreachable 40 times in a row: never more than 30 s between two attempts
    expect(Math.max(...delays())).toBeLessThanOrEqual(30_000)
    expect(Math.max(...delays('queued'))).toBeLessThanOrEqual(30_000)
    expect(delays().slice(0, 5).map(Math.round)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000])
    // in a mailbox the message is on its way already: the direct attempts back off further
    expect(Math.round(Math.max(...delays('stored')))).toBe(300_000)
    // and maxDelay bounds both
    const short = new OutboxMachine({ clock, random: () => 0.999_999 }, { initialDelay: 1_000, maxDelay: 10_000 })
    expect(short.unreachable([entry(1, 30)], 'no way to reach').writes.retried[0].at - now).toBeLessThanOrEqual(10_000)
  })

  it('draws the jitter from the injected random', () => {
    const clock = new FakeClock()
    const draws = [0, 0.999]
    const m = new OutboxMachine({ clock, random: () => draws.shift() ?? 0 }, { initialDelay: 1_000 })
    const { writes } = m.unreachable([entry(1), entry(2)], 'no addresses')
    expect(writes.retried.map(r => r.at - clock.now())).toEqual([0, 999])
  })

  it('puts every entry of an unreachable peer back with its own back-off', () => {
    const { machine: m, clock } = machine()
    const { writes, changes } = m.unreachable([entry(1, 0), entry(2, 1)], 'no addresses')
    expect(writes).toEqual({ at: clock.now(), delivered: [], failed: [], retried: [{ id: 'm1', at: clock.now() + 500, reason: 'no addresses' }, { id: 'm2', at: clock.now() + 1_000, reason: 'no addresses' }] })
    expect(changes.map(c => [c.status, c.attempts])).toEqual([['queued', 1], ['queued', 2]])
  })

  describe('RATE_LIMITED', () => {
    it('defers the whole peer for as long as it asked, and wake leaves it waiting until then', () => {
      const { machine: m, clock } = machine()
      const now = clock.now()
      const { writes, changes } = m.settle([{ entry: entry(1), result: ack(Ack.Status.RATE_LIMITED, { retryAfterMs: 10_000 }) }])
      const reason = 'rate limited by the recipient (retry in 10 s)'
      expect(writes.retried).toEqual([{ id: 'm1', at: now + 10_000, reason }])
      expect(writes.deferred).toEqual({ peer: PEER, until: now + 10_000, reason })
      expect(changes).toEqual([{ id: 'm1', peer: PEER, seq: 1, status: 'queued', reason }])
      expect(endsRound(ack(Ack.Status.RATE_LIMITED))).toBe(true)

      expect(m.wakeable([PEER, OTHER])).toEqual([OTHER])
      clock.advance(9_999)
      expect(m.wakeable([PEER])).toEqual([])
      clock.advance(1)
      expect(m.wakeable([PEER])).toEqual([PEER])
    })

    it('clamps the wait the peer asks for, and waits its back-off when it names none', () => {
      const { machine: m, clock } = machine()
      const wait = (retryAfterMs: number | undefined, attempts = 0): number =>
        m.settle([{ entry: entry(1, attempts), result: ack(Ack.Status.RATE_LIMITED, { retryAfterMs }) }]).writes.deferred!.until - clock.now()
      expect(wait(0)).toBe(MIN_RETRY_AFTER)
      expect(wait(2 ** 32 - 1)).toBe(MAX_RETRY_AFTER)
      expect(wait(undefined, 0)).toBe(MIN_RETRY_AFTER)
      expect(wait(undefined, 4)).toBe(8_000)
    })

    it('keeps the longest wait asked for, in one batch and across batches', () => {
      const { machine: m, clock } = machine()
      const now = clock.now()
      const { writes } = m.settle([
        { entry: entry(1), result: ack(Ack.Status.RATE_LIMITED, { retryAfterMs: 20_000 }) },
        { entry: entry(2), result: rejected('stream reset') },
        { entry: entry(3), result: ack(Ack.Status.RATE_LIMITED, { retryAfterMs: 5_000 }) }
      ])
      expect(writes.deferred).toEqual({ peer: PEER, until: now + 20_000, reason: 'rate limited by the recipient (retry in 20 s)' })
      expect(writes.retried.map(r => r.id)).toEqual(['m1', 'm2', 'm3'])
      m.settle([{ entry: entry(4), result: ack(Ack.Status.RATE_LIMITED, { retryAfterMs: 1_000 }) }])
      clock.advance(19_999)
      expect(m.wakeable([PEER])).toEqual([])
      clock.advance(1)
      expect(m.wakeable([PEER])).toEqual([PEER])
    })
  })

  it('retries a message lost while its peer asked to wait no earlier than that', () => {
    const { machine: m, clock } = machine()
    const until = clock.now() + 10_000
    m.settle([{ entry: entry(1), result: ack(Ack.Status.RATE_LIMITED, { retryAfterMs: 10_000 }) }])
    expect(m.settle([{ entry: entry(2), result: rejected('stream reset') }]).writes.retried).toEqual([{ id: 'm2', at: until, reason: 'stream reset' }])
    expect(m.unreachable([entry(3, 0, OTHER)], 'no addresses').writes.retried[0].at).toBe(clock.now() + 500)
    clock.advance(10_000)
    expect(m.settle([{ entry: entry(2), result: rejected('stream reset') }]).writes.retried[0].at).toBe(clock.now() + 500)
  })

  it('halves a peer\'s window when a round loses a message and doubles it when one gets through, within 1 and the protocol\'s window', () => {
    const { machine: m } = machine()
    expect(m.window(PEER)).toBe(MAX_UNACKED)
    const windows: number[] = []
    for (const lost of [true, true, true, true, true, true, true, true, false, false]) {
      m.roundEnded(PEER, lost)
      windows.push(m.window(PEER))
    }
    expect(windows).toEqual([32, 16, 8, 4, 2, 1, 1, 1, 2, 4])
    expect(m.window(OTHER)).toBe(MAX_UNACKED)
    for (let i = 0; i < 10; i++) m.roundEnded(PEER, false)
    expect(m.window(PEER)).toBe(MAX_UNACKED)
    expect(m.trackedPeers).toBe(0)
  })

  it('forgets a peer\'s window at once and its wait once over', () => {
    const { machine: m, clock } = machine()
    m.roundEnded(PEER, true)
    m.settle([{ entry: entry(1), result: ack(Ack.Status.RATE_LIMITED, { retryAfterMs: 5_000 }) }])
    expect(m.trackedPeers).toBe(1)
    m.forget(PEER)
    expect(m.window(PEER)).toBe(MAX_UNACKED)
    // still asked to wait: kept until then
    expect(m.wakeable([PEER])).toEqual([])
    clock.advance(5_000)
    m.forget(PEER)
    expect(m.trackedPeers).toBe(0)
  })

  describe('expiry and cancel', () => {
    const DAY = 24 * 60 * 60_000
    const aged = (seq: number, createdAt: number): Entry & { createdAt: number } => ({ ...entry(seq), createdAt })

    it('fails an entry as expired at its deadline, not before, saying after how long; the later ones live on', () => {
      const { machine: m, clock } = machine({ messageExpiry: 7 * DAY })
      const start = clock.now()
      const entries = [aged(1, start), aged(2, start + 1_000)]
      expect(m.expiresAt(start)).toBe(start + 7 * DAY)

      clock.advance(7 * DAY - 1)
      expect(m.expire(entries)).toEqual({ live: entries, transition: { writes: { at: clock.now(), delivered: [], retried: [], failed: [] }, changes: [] } })

      clock.advance(1)
      expect(m.expiredBy()).toBe(start)
      const { live, transition } = m.expire(entries)
      expect(live).toEqual([entries[1]])
      const reason = 'expired: not delivered within 7 days'
      expect(transition.writes.failed).toEqual([{ id: 'm1', reason }])
      expect(transition.changes).toEqual([{ id: 'm1', peer: PEER, seq: 1, status: 'failed', reason }])
    })

    it('leaves an entry on the wire to its outcome, even past its deadline', () => {
      const { machine: m, clock } = machine({ messageExpiry: 1_000 })
      const first = aged(1, clock.now())
      m.sending([first])
      clock.advance(5_000)
      expect(m.expire([first]).live).toEqual([first])
    })

    it('says the configured duration in people\'s units', () => {
      expect(humanDuration(7 * DAY)).toBe('7 days')
      expect(humanDuration(DAY)).toBe('1 day')
      expect(humanDuration(90 * 60_000)).toBe('90 minutes')
      expect(humanDuration(1_500)).toBe('1500 ms')
    })

    it('cancels a queued entry as failed by the sender, and refuses one on the wire', () => {
      const { machine: m } = machine()
      expect(m.cancel(entry(1))).toMatchObject({
        writes: { failed: [{ id: 'm1', reason: CANCELLED_REASON }] },
        changes: [{ id: 'm1', peer: PEER, seq: 1, status: 'failed', reason: 'cancelled by the sender' }]
      })
      m.sending([entry(2)])
      expect(m.isSending('m2')).toBe(true)
      expect(() => m.cancel(entry(2))).toThrow(/on the wire/)
    })
  })
})
