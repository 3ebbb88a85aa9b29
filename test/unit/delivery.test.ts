import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { defaultLogger } from '@libp2p/logger'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { idToString } from '../../node/message-id.js'
import { DeliveryEngine } from '../../node/outbox/delivery.js'
import { Store } from '../../node/store/index.js'
import { Ack, MAX_UNACKED } from '../../protocols/im/index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { until } from '../fixtures/wait.js'
import { CONNECTION, PEER, StubIm, StubRouter, WAIT, WatchedClock } from './delivery-helpers.js'
import type { DeliveryComponents, DeliveryInit } from '../../node/outbox/delivery.js'
import type { StatusChange } from '../../node/types.js'
import type { Connection } from '@libp2p/interface'

function messageId (n: number): string {
  return idToString(new Uint8Array(16).fill(0).map((_, i) => i === 15 ? n % 256 : i === 14 ? Math.floor(n / 256) : 0))
}

describe('DeliveryEngine', () => {
  const cleanup: Array<() => void> = []
  afterEach(() => {
    for (const fn of cleanup.splice(0)) fn()
  })

  const tempDir = useTempDirs()

  /** `file`: the store's, on disk (in memory by default). */
  function setup (components: Partial<DeliveryComponents> = {}, init: DeliveryInit = {}, file?: string) {
    const clock = new WatchedClock()
    const store = new Store(file)
    const im = new StubIm()
    const router = new StubRouter()
    const engine = new DeliveryEngine({ store, router, im, logger: defaultLogger(), clock, random: () => 0.5, ...components }, { initialDelay: 1_000, maxDelay: 60_000, connectTimeout: 30_000, ...init })
    const changes: StatusChange[] = []
    engine.addEventListener('message:status', evt => { changes.push(evt.detail) })
    let next = 1
    cleanup.push(() => {
      engine.stop()
      store.close()
    })
    return {
      clock,
      store,
      im,
      router,
      engine,
      changes,
      /** Queues `count` messages through the engine; their ids. */
      queue: (count: number): string[] => Array.from({ length: count }, () => {
        const n = next++
        return engine.queue({ peer: PEER, id: messageId(n), body: `m${n}`, contentType: 'text/plain', sentAt: clock.now() }).id
      }),
      /** Writes `count` messages to the outbox without waking the engine; their ids. */
      enqueue: (count: number): string[] => Array.from({ length: count }, () => {
        const n = next++
        return store.enqueue({ peer: PEER, id: messageId(n), body: `m${n}`, contentType: 'text/plain', sentAt: clock.now() }).id
      }),
      /** Waits until the engine has set a timer to run the outbox at `at`, and nothing else. */
      scheduled: async (at: number): Promise<void> => {
        await until(() => clock.pending === 1 && clock.nextAt === at, { on: [clock.events, 'timer'], what: () => `a timer at ${at} (${clock.pending} pending, next at ${clock.nextAt})`, timeout: WAIT })
      },
      /** Lets the outcomes waiting for others (RECORD_DELAY) be written. */
      recordDelay: async (): Promise<void> => {
        await until(() => clock.pending > 0, { on: [clock.events, 'timer'], what: 'the record timer', timeout: WAIT })
        clock.advance(5)
      },
      statuses: (id: string): string[] => changes.filter(c => c.id === id).map(c => c.status),
      /** Waits until every one of `ids` was reported with `status`. */
      reported: async (ids: string[], status: StatusChange['status']): Promise<void> => {
        await until(() => ids.every(id => changes.some(c => c.id === id && c.status === status)), { on: [engine, 'message:status'], what: `${ids.length} messages ${status}`, timeout: WAIT })
      }
    }
  }

  it('queues a message, reports it queued, sends it and reports it delivered; a row on the wire shows as sending', async () => {
    const t = setup()
    t.engine.start()
    const [id] = t.queue(1)
    expect(t.statuses(id)).toEqual(['queued', 'sending'])
    expect(t.im.seqs).toEqual([1])
    expect(t.im.sent[0]).toMatchObject({ body: 'm1', contentType: undefined })
    expect(t.store.getMessage(id)?.status).toBe('queued')
    expect(t.engine.overlay(t.store.getMessage(id)!).status).toBe('sending')
    expect(t.engine.overlay(t.store.outbox()[0]).status).toBe('sending')

    t.im.ack(1)
    await t.reported([id], 'delivered')
    expect(t.changes.filter(c => c.id === id)).toEqual([
      { id, peer: PEER, seq: 1, status: 'queued' },
      { id, peer: PEER, seq: 1, status: 'sending', attempts: 1 },
      { id, peer: PEER, seq: 1, status: 'delivered', path: 'relayed' }
    ])
    expect(t.engine.overlay(t.store.getMessage(id)!)).toMatchObject({ status: 'delivered', path: 'relayed' })
    expect(t.store.outbox()).toEqual([])
  })

  it('puts a message queued into an empty outbox on the wire without reading the outbox back; one queued while others wait in it is found by reading it', async () => {
    const t = setup()
    t.engine.start()
    const due = vi.spyOn(t.store, 'due')
    const [first] = t.queue(1)
    expect(t.im.seqs).toEqual([1])
    expect(due).not.toHaveBeenCalled()
    t.im.ack(1)
    await t.reported([first], 'delivered')

    // a message waiting for a retry, nothing under way: the next one queued is not alone, and the outbox is read
    t.router.open = false
    t.router.dial = async () => { throw new Error('unreachable') }
    const [waiting] = t.queue(1)
    await until(() => t.store.outboxEntry(waiting)?.attempts === 1 && t.clock.pending > 0, { on: [t.clock.events, 'timer'], what: 'the failed attempt recorded and the retry set', timeout: WAIT })
    t.router.open = true
    due.mockClear()
    const [next] = t.queue(1)
    expect(due).toHaveBeenCalled()
    await t.im.sends(2)
    t.im.ackAll()
    await t.reported([next], 'delivered')
    await until(() => t.clock.pending > 0, { on: [t.clock.events, 'timer'], what: 'the retry set again', timeout: WAIT })
    t.clock.advance(60_000)
    await t.im.sends(3)
    expect(t.im.seqs).toEqual([1, 3, 2])
    t.im.ackAll()
    await t.reported([waiting], 'delivered')
  })

  it('knows the outbox is empty once a lone message is delivered, without asking the store; asks when a run leaves one waiting', async () => {
    const t = setup()
    t.engine.start()
    const schedule = vi.spyOn(t.store, 'outboxScheduleOf')
    const due = vi.spyOn(t.store, 'due')
    const [first] = t.queue(1)
    t.im.ack(1)
    await t.reported([first], 'delivered')
    // the run's end is a few promises after the report: let them all settle
    await new Promise(resolve => setImmediate(resolve))
    expect(schedule).not.toHaveBeenCalled()
    // the peer was forgotten as empty: the next message is alone again, and goes without reading the outbox
    const [second] = t.queue(1)
    expect(due).not.toHaveBeenCalled()

    // this one is not answered before its stream fails: it waits for a retry, and the run's end asks when
    t.im.fail(2)
    await until(() => t.clock.pending === 1, { on: [t.clock.events, 'timer'], what: 'the retry set', timeout: WAIT })
    expect(schedule).toHaveBeenCalledTimes(1)
    expect(t.store.outboxEntry(second)?.attempts).toBe(1)
  })

  it('puts a lone message on the wire before its rows are committed when its peer\'s stream takes it at once; reports it queued, sending, delivered as any other', async () => {
    const file = join(await tempDir(), 'store.db')
    const t = setup({}, {}, file)
    t.engine.start()
    // another connection sees only what is committed
    const reader = new DatabaseSync(file, { readOnly: true })
    cleanup.push(() => { reader.close() })
    const committedAtSend: boolean[] = []
    t.im.sendAtOnce = (connection, message, options) => {
      committedAtSend.push(reader.prepare('SELECT 1 FROM messages WHERE seq = ? AND next_attempt_at IS NOT NULL').get(message.seq) != null)
      return t.im.send(connection, message, options)
    }
    const send = vi.spyOn(t.im, 'send')
    for (const [n, durable] of [[1, true], [2, false]] as const) {
      const { id, seq } = t.engine.queue({ peer: PEER, id: messageId(n), body: 'now', contentType: 'text/plain', sentAt: t.clock.now() }, { durable })
      expect(committedAtSend.at(-1)).toBe(false)
      expect(reader.prepare('SELECT 1 FROM messages WHERE id = ? AND next_attempt_at IS NOT NULL').get(id)).toBeDefined()
      expect(t.statuses(id)).toEqual(['queued', 'sending'])
      t.im.ack(seq)
      await t.reported([id], 'delivered')
      // the run's end is a few promises after the report: then the outbox is empty again
      await new Promise(resolve => setImmediate(resolve))
    }
    // each went once, at once, and not again through send()
    expect(committedAtSend).toEqual([false, false])
    expect(send).toHaveBeenCalledTimes(2)
    expect(t.im.seqs).toEqual([1, 2])
    expect(t.store.outbox()).toEqual([])
  })

  it('sends through send() what the stream cannot take at once, and what is queued while the peer\'s outbox runs', async () => {
    const t = setup()
    t.engine.start()
    let asked = 0
    let take = false
    t.im.sendAtOnce = (connection, message, options) => {
      asked++
      return take ? t.im.send(connection, message, options) : undefined
    }
    const [first] = t.queue(1)
    expect(asked).toBe(1)
    await t.im.sends(1)
    take = true
    // the first is on the wire: the second is not alone, and waits for its turn
    const [second] = t.queue(1)
    expect(asked).toBe(1)
    t.im.ack(1)
    await t.im.sends(2)
    t.im.ack(2)
    await t.reported([first, second], 'delivered')
    expect(t.im.seqs).toEqual([1, 2])
  })

  it('throws to the caller a lone message whose rows are not committed after it went out, and its answer is nobody\'s unhandled rejection', async () => {
    const t = setup()
    t.engine.start()
    t.im.sendAtOnce = (connection, message, options) => t.im.send(connection, message, options)
    const message = { peer: PEER, id: messageId(1), body: 'phantom', contentType: 'text/plain', sentAt: t.clock.now() }
    // the rows written, handed over, then the commit failing (a full disk, an I/O error)
    const scratch = new Store()
    cleanup.push(() => { scratch.close() })
    vi.spyOn(t.store, 'enqueue').mockImplementation((m, options) => {
      options?.beforeCommit?.(scratch.enqueue(m))
      throw new Error('disk I/O error')
    })
    expect(() => t.engine.queue(message)).toThrow('disk I/O error')
    expect(t.im.seqs).toEqual([1])
    t.im.fail(1)
    // a turn for a rejection nobody handles to be reported (vitest fails the test on one)
    await new Promise(resolve => setImmediate(resolve))
    expect(t.changes).toEqual([])
  })

  it('sends in seq order: messages queued while one is on the wire follow it once an ack comes', async () => {
    const t = setup()
    t.engine.start()
    const ids = t.queue(3)
    expect(t.im.seqs).toEqual([1])
    t.im.ack(1)
    await t.im.sends(3)
    expect(t.im.seqs).toEqual([1, 2, 3])
    t.im.ackAll()
    await t.reported(ids, 'delivered')
    expect(t.store.history(PEER).map(m => [m.seq, m.status])).toEqual([[1, 'delivered'], [2, 'delivered'], [3, 'delivered']])
  })

  it('keeps up to the protocol\'s window unacknowledged, the next going out as acks come back', async () => {
    const t = setup()
    const ids = t.enqueue(MAX_UNACKED + 6)
    t.engine.start()
    t.clock.advance(0)
    await t.im.sends(MAX_UNACKED)
    expect(t.im.pending).toHaveLength(MAX_UNACKED)
    expect(t.im.seqs).toEqual(ids.slice(0, MAX_UNACKED).map((_, i) => i + 1))

    t.im.ack(1)
    await t.im.sends(MAX_UNACKED + 1)
    expect(t.im.pending).toHaveLength(MAX_UNACKED)
    t.im.autoAck = Ack.Status.OK
    t.im.ackAll()
    await t.reported(ids, 'delivered')
    expect(t.im.seqs).toEqual(ids.map((_, i) => i + 1))
    expect(Math.max(...t.im.inFlightAtSend)).toBe(MAX_UNACKED)
  })

  it('writes outcomes together without waiting for the disk: when nothing is left in flight, or RECORD_DELAY after the first', async () => {
    const t = setup()
    const record = vi.spyOn(t.store, 'record')
    const ids = t.enqueue(3)
    t.engine.start()
    t.clock.advance(0)
    await t.im.sends(3)

    t.im.ack(1)
    // its outcome waits for others (a timer of RECORD_DELAY), and is not reported before it is written
    await until(() => t.clock.pending > 0, { on: [t.clock.events, 'timer'], what: 'the record timer', timeout: WAIT })
    expect(t.statuses(ids[0])).not.toContain('delivered')
    t.clock.advance(4)
    expect(t.statuses(ids[0])).not.toContain('delivered')
    t.clock.advance(1)
    await t.reported([ids[0]], 'delivered')
    expect(record).toHaveBeenCalledTimes(1)
    expect(record.mock.calls[0][0].delivered.map(d => d.id)).toEqual([ids[0]])

    t.im.ack(2)
    t.im.ack(3)
    await t.reported(ids, 'delivered')
    expect(record).toHaveBeenCalledTimes(2)
    expect(record.mock.calls[1][0].delivered.map(d => d.id)).toEqual(ids.slice(1))
    expect(record.mock.calls.map(call => call[1])).toEqual([{ durable: false, defer: true }, { durable: false, defer: true }])
  })

  it('halves the window when a round loses a message, and doubles it when a round gets through', async () => {
    const t = setup()
    const ids = t.enqueue(200)
    t.engine.start()
    t.clock.advance(0)

    // round 1: the full window; seq 1 is lost
    await t.im.sends(64)
    const lostAt = t.clock.now()
    t.im.fail(1)
    for (let seq = 2; seq <= 64; seq++) t.im.ack(seq)
    // round 2: half as many; seq 65 is lost
    await t.im.sends(64 + 32)
    expect(t.im.pending.map(c => c.message.seq)).toEqual(Array.from({ length: 32 }, (_, i) => 65 + i))
    t.im.fail(65)
    for (let seq = 66; seq <= 96; seq++) t.im.ack(seq)
    // round 3: half again, and acks keep it full to the end of the outbox
    await t.im.sends(96 + 16)
    expect(t.im.pending).toHaveLength(16)
    t.im.autoAck = Ack.Status.OK
    t.im.ackAll()
    await t.reported(ids.slice(96), 'delivered')

    // round 3 got through: the next round may keep twice as many in flight
    await t.scheduled(lostAt + 500)
    t.im.autoAck = undefined
    const later = t.enqueue(40)
    t.engine.run(PEER)
    await t.im.sends(200 + 32)
    expect(t.im.pending).toHaveLength(32)
    t.im.autoAck = Ack.Status.OK
    t.im.ackAll()
    await t.reported(later, 'delivered')

    // the two lost messages are tried again after their back-off
    await t.scheduled(lostAt + 500)
    t.clock.advance(500)
    await t.reported([ids[0], ids[64]], 'delivered')
    expect(t.im.seqs.slice(-2)).toEqual([1, 65])
    expect(t.store.outbox()).toEqual([])
  })

  it('retries with back-off when the peer cannot be reached, and at once on wake() after a connection opens', async () => {
    const t = setup()
    t.router.open = false
    t.router.dial = async () => { throw new Error('no addresses') }
    t.engine.start()
    const [id] = t.queue(1)
    await t.reported([id], 'queued')
    await until(() => t.changes.filter(c => c.status === 'queued').length === 2, { on: [t.engine, 'message:status'], timeout: WAIT })
    expect(t.changes.at(-1)).toEqual({ id, peer: PEER, seq: 1, status: 'queued', reason: 'no addresses', attempts: 1 })
    expect(t.store.outbox()[0]).toMatchObject({ attempts: 1, nextAttemptAt: t.clock.now() + 500, lastError: 'no addresses' })

    // random() * min(maxDelay, initialDelay * 2^attempts), random() = 0.5
    t.clock.advance(499)
    expect(t.router.dials).toBe(1)
    t.clock.advance(1)
    await t.router.dialled(2)
    await until(() => t.store.outbox()[0].attempts === 2, { on: [t.engine, 'message:status'], timeout: WAIT })
    expect(t.store.outbox()[0].nextAttemptAt).toBe(t.clock.now() + 1_000)
    expect(t.im.sent).toEqual([])

    // a connection to the peer opened: no need to wait
    t.router.open = true
    t.engine.wake(PEER)
    await t.im.sends(1)
    t.im.ack(1)
    await t.reported([id], 'delivered')
  })

  it('gives up a dial after connectTimeout on its clock', async () => {
    const t = setup()
    t.router.open = false
    t.router.dial = async ({ signal }) => new Promise((resolve, reject) => {
      signal?.addEventListener('abort', () => { reject(signal.reason) })
    })
    t.engine.start()
    const [id] = t.queue(1)
    await t.router.dialled(1)
    t.clock.advance(29_999)
    expect(t.statuses(id)).toEqual(['queued'])
    t.clock.advance(1)
    await until(() => t.statuses(id).length === 2, { on: [t.engine, 'message:status'], timeout: WAIT })
    expect(t.changes.at(-1)).toMatchObject({ status: 'queued', reason: 'The operation was aborted due to timeout' })
  })

  it('defers the whole peer on RATE_LIMITED for as long as it asks, and wake() does not cut that short', async () => {
    const t = setup()
    const ids = t.enqueue(3)
    t.engine.start()
    t.clock.advance(0)
    await t.im.sends(3)
    const limitedAt = t.clock.now()
    t.im.ack(1, Ack.Status.RATE_LIMITED, 10_000)
    t.im.fail(2)
    t.im.ack(3)
    await t.reported([ids[2]], 'delivered')
    const reason = 'rate limited by the recipient (retry in 10 s)'
    expect(t.changes.find(c => c.id === ids[0] && c.status === 'queued' && c.reason != null)).toEqual({ id: ids[0], peer: PEER, seq: 1, status: 'queued', reason })
    // seq 2's own back-off is shorter, but the peer asked to wait: it waits too
    expect(t.store.outbox().map(e => [e.seq, e.nextAttemptAt])).toEqual([[1, limitedAt + 10_000], [2, limitedAt + 10_000]])
    await t.scheduled(limitedAt + 10_000)

    t.engine.wake(PEER)
    t.engine.wake()
    t.clock.advance(9_999)
    t.engine.wake(PEER)
    expect(t.im.sent).toHaveLength(3)
    t.clock.advance(1)
    await t.im.sends(5)
    expect(t.im.seqs.slice(3)).toEqual([1, 2])
    t.im.ackAll()
    await t.reported(ids.slice(0, 2), 'delivered')
  })

  it('fails a message the recipient refuses, and goes on with the next', async () => {
    const t = setup()
    const ids = t.enqueue(2)
    t.engine.start()
    t.clock.advance(0)
    await t.im.sends(2)
    t.im.ack(1, Ack.Status.BLOCKED)
    t.im.ack(2)
    await t.reported([ids[1]], 'delivered')
    await t.reported([ids[0]], 'failed')
    expect(t.changes.find(c => c.id === ids[0] && c.status === 'failed')).toEqual({ id: ids[0], peer: PEER, seq: 1, status: 'failed', reason: 'refused by the recipient: BLOCKED', path: 'relayed' })
    expect(t.store.getMessage(ids[0])).toMatchObject({ status: 'failed', reason: 'refused by the recipient: BLOCKED' })
    expect(t.store.outbox()).toEqual([])
  })

  it('after a restart, queues again and sends again what was on the wire', async () => {
    const t = setup()
    t.im.abortable = false
    const ids = t.enqueue(2)
    t.engine.start()
    t.clock.advance(0)
    await t.im.sends(2)
    t.im.ack(1, Ack.Status.DUPLICATE)
    await t.recordDelay()
    await t.reported([ids[0]], 'delivered')
    expect(t.engine.overlay(t.store.getMessage(ids[1])!).status).toBe('sending')
    // the process dies: the send is never answered
    t.engine.stop()

    const im = new StubIm()
    const restarted = new DeliveryEngine({ store: t.store, router: t.router, im, logger: defaultLogger(), clock: t.clock }, {})
    cleanup.push(() => { restarted.stop() })
    expect(restarted.overlay(t.store.getMessage(ids[1])!).status).toBe('queued')
    restarted.start()
    t.clock.advance(0)
    await im.sends(1)
    expect(im.seqs).toEqual([2])
    expect(restarted.overlay(t.store.getMessage(ids[1])!).status).toBe('sending')
    im.ack(2)
    await until(() => t.store.getMessage(ids[1])?.status === 'delivered', { on: [restarted, 'message:status'], timeout: WAIT })
  })

  it('stops mid-round: nothing more goes out, what was answered is written, the rest stays queued', async () => {
    const t = setup()
    const ids = t.enqueue(3)
    t.engine.start()
    t.clock.advance(0)
    await t.im.sends(3)
    t.im.ack(1)
    await until(() => t.clock.pending > 0, { on: [t.clock.events, 'timer'], what: 'the record timer', timeout: WAIT })

    t.engine.stop()
    // the aborted sends come back rejected and the round writes what it has
    await t.reported(ids.slice(1), 'queued')
    expect(t.statuses(ids[0])).toEqual(['sending', 'delivered'])
    expect(t.store.getMessage(ids[0])?.status).toBe('delivered')
    expect(t.store.outbox().map(e => e.seq)).toEqual([2, 3])
    expect(t.clock.pending).toBe(0)

    // a message queued now is kept, and waits for the next start
    const [later] = t.queue(1)
    t.engine.wake()
    t.clock.advance(60_000)
    expect(t.im.sent).toHaveLength(3)
    expect(t.statuses(later)).toEqual(['queued'])
  })

  it('forgets a peer whose outbox emptied: its next round has the full window again', async () => {
    const t = setup()
    const [id] = t.enqueue(1)
    t.engine.start()
    t.clock.advance(0)
    // lost twice (the window halves to 32, then 16), then delivered (back to 32)
    await t.im.sends(1)
    t.im.fail(1)
    await t.scheduled(t.clock.now() + 500)
    t.clock.advance(500)
    await t.im.sends(2)
    t.im.fail(1)
    await t.scheduled(t.clock.now() + 1_000)
    t.clock.advance(1_000)
    await t.im.sends(3)
    t.im.ack(1)
    await t.reported([id], 'delivered')
    // the round's end runs on after its last report
    await new Promise(resolve => setImmediate(resolve))

    const ids = t.enqueue(MAX_UNACKED + 1)
    t.engine.run(PEER)
    await t.im.sends(3 + MAX_UNACKED)
    expect(t.im.pending).toHaveLength(MAX_UNACKED)
    t.im.autoAck = Ack.Status.OK
    t.im.ackAll()
    await t.reported(ids, 'delivered')
  })

  it('fails a message to a peer never reachable as expired at its deadline, not before, on a timer of its own; the later ones go on, in order', async () => {
    // retries an hour apart: only the expiry's own timer can fail the first message on time
    const t = setup({}, { initialDelay: 2 * 3_600_000, maxDelay: 4 * 3_600_000, maxDelayUnstored: 4 * 3_600_000, messageExpiry: 10 * 60_000 })
    t.router.open = false
    t.router.dial = async () => { throw new Error('no addresses') }
    t.engine.start()
    const start = t.clock.now()
    const [first] = t.queue(1)
    await until(() => t.store.outbox()[0]?.attempts === 1, { on: [t.engine, 'message:status'], what: 'the first attempt', timeout: WAIT })
    t.clock.advance(60_000)
    const [second] = t.queue(1)
    await until(() => t.store.outbox()[1]?.attempts === 1, { on: [t.engine, 'message:status'], what: 'the second attempt', timeout: WAIT })
    await t.scheduled(start + 10 * 60_000)

    t.clock.advance(start + 10 * 60_000 - 1 - t.clock.now())
    expect(t.statuses(first)).not.toContain('failed')
    t.clock.advance(1)
    await t.reported([first], 'failed')
    const reason = 'expired: not delivered within 10 minutes'
    expect(t.changes.at(-1)).toEqual({ id: first, peer: PEER, seq: 1, status: 'failed', reason })
    expect(t.store.getMessage(first)).toMatchObject({ status: 'failed', reason })
    expect(t.store.outbox().map(e => e.id)).toEqual([second])
    expect(t.statuses(second)).not.toContain('failed')
    // and wakes again when the next one expires
    await t.scheduled(start + 11 * 60_000)

    t.router.open = true
    t.engine.wake(PEER)
    await t.im.sends(1)
    expect(t.im.seqs).toEqual([2])
    t.im.ack(2)
    await t.reported([second], 'delivered')
  })

  it('cancels a queued message, even one a round holds while it dials; one on the wire is left to its outcome', async () => {
    const t = setup()
    t.router.open = false
    const dial = Promise.withResolvers<Connection>()
    t.router.dial = async () => dial.promise
    t.engine.start()
    const [first, second] = t.queue(2)
    await t.router.dialled(1)

    expect(t.engine.cancel(first)).toBe('cancelled')
    expect(t.changes.at(-1)).toEqual({ id: first, peer: PEER, seq: 1, status: 'failed', reason: 'cancelled by the sender' })
    expect(t.store.getMessage(first)).toMatchObject({ status: 'failed', reason: 'cancelled by the sender' })
    expect(t.store.outbox().map(e => e.id)).toEqual([second])
    expect(t.engine.cancel(first)).toBe('absent')
    expect(t.engine.cancel(messageId(99))).toBe('absent')

    // the dial the round waited on opens: the cancelled message stays out
    dial.resolve(CONNECTION)
    await t.im.sends(1)
    expect(t.im.seqs).toEqual([2])
    expect(t.engine.cancel(second)).toBe('sending')
    t.im.ack(2)
    await t.reported([second], 'delivered')
    expect(t.engine.cancel(second)).toBe('absent')
    expect(t.statuses(first)).toEqual(['queued', 'failed'])
  })

  it('after a restart, fails at once what expired while it was stopped, without trying to send it', async () => {
    const t = setup({}, { messageExpiry: 60_000 })
    t.router.open = false
    t.router.dial = async () => { throw new Error('no addresses') }
    const [old] = t.enqueue(1)
    t.clock.advance(30_000)
    const [recent] = t.enqueue(1)
    t.store.reschedule([old, recent], t.clock.now() + 3_600_000, 'no addresses')
    t.clock.advance(30_000)
    t.engine.start()
    await t.scheduled(t.clock.now())
    t.clock.advance(0)
    await t.reported([old], 'failed')
    expect(t.store.getMessage(old)).toMatchObject({ status: 'failed', reason: 'expired: not delivered within 1 minute' })
    expect(t.router.dials).toBe(0)
    // the next wake-up is when the other expires
    await t.scheduled(t.clock.now() + 30_000)
    expect(t.store.outbox().map(e => e.id)).toEqual([recent])
  })

  describe('mailboxes', () => {
    /** A mailbox that takes what it is given (until `until`), or refuses with `refuse`. */
    function stubMailbox () {
      const mailbox = new EventTarget() as EventTarget & { deposited: string[][], refuse?: Error, until: number, deposit: DeliveryComponents['mailbox'] extends infer D ? D extends { deposit: infer F } ? F : never : never }
      mailbox.deposited = []
      mailbox.until = 1e15
      mailbox.deposit = async (peer, entries) => {
        mailbox.deposited.push(entries.map(e => e.id))
        mailbox.dispatchEvent(new Event('deposit'))
        if (mailbox.refuse != null) throw mailbox.refuse
        return entries.map(e => ({ id: e.id, until: mailbox.until }))
      }
      return mailbox
    }

    it('leaves messages in the mailbox once the peer has been unreachable for mailboxAfter, and they stay stored while direct delivery goes on', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 5_000 })
      t.router.open = false
      t.router.dial = async () => { throw new Error('no addresses') }
      t.engine.start()
      const ids = t.queue(2)
      await t.router.dialled(1)
      // the first retry (500 ms) fails too: not yet 5 s
      t.clock.advance(500)
      await t.router.dialled(2)
      expect(mailbox.deposited).toEqual([])
      t.clock.advance(4_500)
      await t.reported(ids, 'stored')
      expect(mailbox.deposited).toEqual([ids])
      for (const id of ids) {
        expect(t.store.getMessage(id)).toMatchObject({ status: 'stored', path: 'mailbox' })
        expect(t.engine.overlay(t.store.getMessage(id)!).status).toBe('stored')
      }
      expect(t.store.outbox().map(e => e.storedUntil)).toEqual([mailbox.until, mailbox.until])

      // direct delivery goes on, without telling the user it is queued or sending again
      const reported = t.changes.length
      t.router.open = true
      t.engine.wake(PEER)
      await t.im.sends(2)
      t.im.ackAll()
      await until(() => t.changes.length === reported + 2, { on: [t.engine, 'message:status'], timeout: WAIT })
      expect(t.changes.slice(reported).map(c => c.status)).toEqual(['delivered', 'delivered'])
      // nothing more to deposit
      expect(mailbox.deposited).toHaveLength(1)
    })

    it('a new message to a peer unreachable for mailboxAfter goes to its mailbox at once, while a slow dial is still under way', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 1_000 })
      t.router.open = false
      t.router.dial = async ({ signal }) => new Promise((resolve, reject) => { signal?.addEventListener('abort', () => { reject(signal.reason) }) })
      t.engine.start()
      const [first] = t.queue(1)
      await t.router.dialled(1)
      t.clock.advance(3_000)
      await t.reported([first], 'stored')
      // the dial is still hanging: the next message does not wait for it to fail
      const [second] = t.queue(1)
      await t.reported([second], 'stored')
      expect(t.router.dials).toBe(1)
    })

    it('deposits nothing when a connection opens within mailboxAfter', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 5_000 })
      t.router.open = false
      let answer: ((c: Connection) => void) | undefined
      t.router.dial = async () => new Promise(resolve => { answer = resolve })
      t.engine.start()
      const [id] = t.queue(1)
      await t.router.dialled(1)
      t.clock.advance(4_999)
      answer?.(CONNECTION)
      await t.im.sends(1)
      t.clock.advance(10_000)
      t.im.ack(1)
      await t.reported([id], 'delivered')
      expect(mailbox.deposited).toEqual([])
      expect(t.statuses(id)).not.toContain('stored')
    })

    it('deposits while a slow dial is still under way, after three times mailboxAfter (a slow connection is not a missing peer)', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 5_000 })
      t.router.open = false
      t.router.dial = async ({ signal }) => new Promise((resolve, reject) => { signal?.addEventListener('abort', () => { reject(signal.reason) }) })
      t.engine.start()
      const [id] = t.queue(1)
      await t.router.dialled(1)
      t.clock.advance(5_000)
      expect(mailbox.deposited).toEqual([])
      t.clock.advance(10_000)
      await t.reported([id], 'stored')
      // stored once: the new deposit is not news to the user
      expect(t.statuses(id).filter(status => status === 'stored')).toHaveLength(1)
    })

    it('keeps messages queued when no mailbox takes them, and tries again at the next failed round', async () => {
      const mailbox = stubMailbox()
      mailbox.refuse = new Error('no mailbox record')
      const t = setup({ mailbox }, { mailboxAfter: 100 })
      t.router.open = false
      t.router.dial = async () => { throw new Error('no addresses') }
      t.engine.start()
      const [id] = t.queue(1)
      await t.router.dialled(1)
      await until(() => t.store.outbox()[0].attempts === 1, { on: [t.engine, 'message:status'], timeout: WAIT })
      t.clock.advance(100)
      await until(() => mailbox.deposited.length === 1, { on: [mailbox, 'deposit'], timeout: WAIT })
      expect(t.store.getMessage(id)?.status).toBe('queued')
      mailbox.refuse = undefined
      // the next failed round (500 ms after the first) tries again
      t.clock.advance(400)
      await t.reported([id], 'stored')
      expect(mailbox.deposited).toHaveLength(2)
    })

    it('gives up a deposit that gets no answer after connectTimeout, and the next failed round deposits again', async () => {
      const mailbox = stubMailbox()
      const take = mailbox.deposit
      const firstGone = Promise.withResolvers<void>()
      let first: AbortSignal | undefined
      // the first deposit never answers (a DHT query or a host starved of CPU): it ends only when its signal aborts
      mailbox.deposit = async (peer, entries, options) => {
        if (first != null) return take(peer, entries, options)
        first = options?.signal
        mailbox.deposited.push(entries.map(e => e.id))
        mailbox.dispatchEvent(new Event('deposit'))
        return new Promise((resolve, reject) => {
          options?.signal?.addEventListener('abort', () => { reject(options.signal?.reason); firstGone.resolve() }, { once: true })
        })
      }
      const t = setup({ mailbox }, { mailboxAfter: 0, connectTimeout: 30_000 })
      t.router.open = false
      t.router.dial = async () => { throw new Error('no addresses') }
      t.engine.start()
      const [id] = t.queue(1)
      await until(() => mailbox.deposited.length === 1, { on: [mailbox, 'deposit'], timeout: WAIT })
      await until(() => t.store.outbox()[0].attempts === 1, { on: [t.engine, 'message:status'], timeout: WAIT })
      // a failed round while it hangs does not start another
      t.clock.advance(500)
      await until(() => t.store.outbox()[0].attempts === 2, { on: [t.engine, 'message:status'], timeout: WAIT })
      expect(mailbox.deposited).toHaveLength(1)
      t.clock.advance(29_499)
      expect(first?.aborted).toBe(false)
      t.clock.advance(1)
      expect(first?.aborted).toBe(true)
      await firstGone.promise
      // the next failed round leaves it in the mailbox
      await until(() => t.clock.nextAt != null, { on: [t.clock.events, 'timer'], what: 'the next round', timeout: WAIT })
      t.clock.advance((t.clock.nextAt ?? 0) - t.clock.now())
      await t.reported([id], 'stored')
      expect(mailbox.deposited).toEqual([[id], [id]])
    })

    it('a receipt from the recipient delivers (path mailbox), RATE_LIMITED puts it back to be deposited anew, a refusal fails it; a receipt naming another conversation\'s message changes nothing', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 0 })
      t.router.open = false
      t.router.dial = async () => { throw new Error('no addresses') }
      t.engine.start()
      const ids = t.queue(3)
      await t.router.dialled(1)
      await t.reported(ids, 'stored')
      const other = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
      t.engine.receipt(other, [{ id: ids[0], status: Ack.Status.OK }])
      expect(t.store.getMessage(ids[0])?.status).toBe('stored')

      t.engine.receipt(PEER, [{ id: ids[0], status: Ack.Status.OK }, { id: ids[1], status: Ack.Status.BLOCKED }, { id: ids[2], status: Ack.Status.RATE_LIMITED }])
      expect(t.store.getMessage(ids[0])).toMatchObject({ status: 'delivered', path: 'mailbox' })
      expect(t.store.getMessage(ids[1])).toMatchObject({ status: 'failed', reason: 'refused by the recipient: BLOCKED' })
      expect(t.store.getMessage(ids[2])).toMatchObject({ status: 'queued' })
      expect(t.store.outbox().map(e => e.id)).toEqual([ids[2]])
      // deposited anew at the next failed round
      t.clock.advance(60_000)
      await until(() => mailbox.deposited.some(d => d.length === 1 && d[0] === ids[2]), { on: [mailbox, 'deposit'], timeout: WAIT })
      await until(() => t.store.getMessage(ids[2])?.status === 'stored', { on: [t.engine, 'message:status'], timeout: WAIT })
      // a receipt for a message delivered already changes nothing
      const reported = t.changes.length
      t.engine.receipt(PEER, [{ id: ids[0], status: Ack.Status.BLOCKED }])
      expect(t.changes.length).toBe(reported)
      expect(t.store.getMessage(ids[0])?.status).toBe('delivered')
    })

    it('a receipt for a message failed as expired (it was still in the mailbox) makes it delivered; a refusal leaves it failed', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 0, messageExpiry: 10_000 })
      t.router.open = false
      t.router.dial = async () => { throw new Error('no addresses') }
      t.engine.start()
      const ids = t.queue(2)
      await t.reported(ids, 'stored')
      t.clock.advance(10_000)
      await until(() => ids.every(id => t.store.getMessage(id)?.status === 'failed'), { on: [t.engine, 'message:status'], what: 'both expired', timeout: WAIT })
      t.engine.receipt(PEER, [{ id: ids[0], status: Ack.Status.OK }, { id: ids[1], status: Ack.Status.BLOCKED }])
      expect(t.store.getMessage(ids[0])).toMatchObject({ status: 'delivered', path: 'mailbox' })
      expect(t.store.getMessage(ids[1])?.status).toBe('failed')
    })

    it('once a receipt empties the outbox, the next message to that peer tries a dial first', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 100 })
      t.router.open = false
      t.router.dial = async () => { throw new Error('no addresses') }
      t.engine.start()
      const [first] = t.queue(1)
      await t.router.dialled(1)
      await until(() => t.store.outbox()[0]?.attempts === 1, { on: [t.engine, 'message:status'], timeout: WAIT })
      t.clock.advance(100)
      await t.reported([first], 'stored')
      t.engine.receipt(PEER, [{ id: first, status: Ack.Status.OK }])
      expect(t.store.outbox()).toEqual([])

      // the peer is back: the dial works, and nothing goes to the mailbox
      t.router.dial = async () => CONNECTION
      t.im.autoAck = Ack.Status.OK
      const [second] = t.queue(1)
      await t.reported([second], 'delivered')
      expect(mailbox.deposited).toHaveLength(1)
      expect(t.statuses(second)).not.toContain('stored')
    })

    it('deposits anew what a host keeps for less than redepositBefore', async () => {
      const mailbox = stubMailbox()
      const t = setup({ mailbox }, { mailboxAfter: 100, redepositBefore: 1_000 })
      const start = t.clock.now()
      mailbox.until = start + 2_000
      t.router.open = false
      t.router.dial = async () => { throw new Error('no addresses') }
      t.engine.start()
      const [id] = t.queue(1)
      await t.router.dialled(1)
      await until(() => t.store.outbox()[0].attempts === 1, { on: [t.engine, 'message:status'], timeout: WAIT })
      t.clock.advance(100)
      await t.reported([id], 'stored')
      expect(mailbox.deposited).toHaveLength(1)
      mailbox.until = start + 100_000
      // the next failed round (at 500 ms) is before 2,000 - 1,000: nothing to deposit
      t.clock.advance(400)
      await t.router.dialled(2)
      await until(() => t.store.outbox()[0].attempts === 2, { on: [t.engine, 'message:status'], timeout: WAIT })
      expect(mailbox.deposited).toHaveLength(1)
      // the one after (at 1,500) is past it
      t.clock.advance(1_000)
      await until(() => mailbox.deposited.length === 2, { on: [mailbox, 'deposit'], timeout: WAIT })
      await until(() => t.store.outbox()[0].storedUntil === start + 100_000, { on: [t.engine, 'message:status'], what: 'the new deposit written', timeout: WAIT })
      // stored once: the new deposit is not news to the user
      expect(t.statuses(id).filter(status => status === 'stored')).toHaveLength(1)
    })
  })
})
