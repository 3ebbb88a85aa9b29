import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import type { PreparedStatements } from '../../common/statements.js'
import { Store } from '../../node/store/index.js'
import { MIGRATIONS } from '../../node/store/migrations.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { watchStatements } from '../fixtures/statements.js'
import type { OutboxEntry, OutboxWrites } from '../../node/store/index.js'

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const OTHER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

function writes (more: Partial<OutboxWrites>): OutboxWrites {
  return { at: 0, delivered: [], retried: [], failed: [], ...more }
}

describe('Store: the outbox', () => {
  const tempDir = useTempDirs()

  it('returns a new message as it reads it back, as an outbox entry the way `due` reads it, and reads an entry the same whether due or listed', () => {
    const store = new Store()
    const written = store.enqueue({ peer: PEER, id: 'a', body: 'x', contentType: 'text/markdown', replyTo: 'r', sentAt: 10 })
    const { attempts, nextAttemptAt, lastError, storedUntil, ...message } = written
    expect(message).toEqual(store.getMessage('a'))
    expect(message).toEqual({
      id: 'a', peer: PEER, direction: 'out', seq: 1, body: 'x', contentType: 'text/markdown', replyTo: 'r', sentAt: 10, createdAt: 10, status: 'queued', request: false
    })
    // the delivery engine sends a message queued alone without reading it back: it must be what `due` would give
    expect(written).toEqual(store.due(PEER, 10)[0])
    expect({ attempts, nextAttemptAt, lastError, storedUntil }).toEqual({ attempts: 0, nextAttemptAt: 10, lastError: undefined, storedUntil: undefined })
    store.reschedule(['a'], 10, 'stream reset')
    const [due] = store.due(PEER, 10)
    expect(due).toEqual(store.outbox()[0])
    expect(due).toMatchObject({ ...message, attempts: 1, nextAttemptAt: 10, lastError: 'stream reset' })
    store.close()
  })

  it('records a batch of outcomes at once, the recipient\'s wait last so that the batch\'s retries wait too', () => {
    const store = new Store()
    for (const id of ['a', 'b', 'c', 'd', 'e']) store.enqueue({ peer: PEER, id, body: id, contentType: 'text/plain', sentAt: 1 })
    store.enqueue({ peer: OTHER, id: 'z', body: 'z', contentType: 'text/plain', sentAt: 1 })
    store.record(writes({
      at: 100,
      delivered: [{ id: 'a', path: 'relayed' }],
      failed: [{ id: 'b', reason: 'refused by the recipient: BLOCKED' }],
      retried: [{ id: 'c', at: 50_000, reason: 'rate limited' }, { id: 'd', at: 600, reason: 'stream reset' }],
      deferred: { peer: PEER, until: 50_000, reason: 'rate limited' }
    }), { durable: false })
    expect(store.getMessage('a')).toMatchObject({ status: 'delivered', path: 'relayed', receivedAt: 100 })
    expect(store.getMessage('b')).toMatchObject({ status: 'failed', reason: 'refused by the recipient: BLOCKED' })
    expect(store.outbox().map(e => [e.id, e.attempts, e.nextAttemptAt, e.lastError])).toEqual([
      ['z', 0, 1, undefined],
      ['c', 1, 50_000, 'rate limited'],
      ['d', 1, 50_000, 'rate limited'],
      ['e', 0, 50_000, 'rate limited']
    ])
    expect(store.outboxPeers()).toEqual([{ peer: PEER, nextAttemptAt: 50_000 }, { peer: OTHER, nextAttemptAt: 1 }].sort((x, y) => x.peer < y.peer ? -1 : 1))
    expect(store.nextAttempt(PEER)).toBe(50_000)

    store.retryNow([PEER], 700)
    expect(store.due(PEER, 700).map(e => e.id)).toEqual(['c', 'd', 'e'])
    store.close()
  })

  it('tells the outbox when each peer\'s oldest message was written, finds those written by a time, and one entry by id', () => {
    const store = new Store()
    store.enqueue({ peer: PEER, id: 'a', body: 'a', contentType: 'text/plain', sentAt: 10 })
    store.enqueue({ peer: PEER, id: 'b', body: 'b', contentType: 'text/plain', sentAt: 20 })
    store.enqueue({ peer: OTHER, id: 'z', body: 'z', contentType: 'text/plain', sentAt: 5 })
    store.reschedule(['a'], 500, 'no addresses')
    expect(store.outboxSchedule()).toEqual([{ peer: PEER, nextAttemptAt: 20, oldestAt: 10 }, { peer: OTHER, nextAttemptAt: 5, oldestAt: 5 }].sort((x, y) => x.peer < y.peer ? -1 : 1))
    expect(store.outboxScheduleOf(PEER)).toEqual({ nextAttemptAt: 20, oldestAt: 10 })
    expect(store.writtenBy(PEER, 15).map(e => e.id)).toEqual(['a'])
    expect(store.writtenBy(PEER, 20).map(e => [e.id, e.attempts])).toEqual([['a', 1], ['b', 0]])
    expect(store.outboxEntry('b')).toEqual(store.outbox().find(e => e.id === 'b'))
    store.record(writes({ failed: [{ id: 'a', reason: 'cancelled by the sender' }] }))
    expect(store.outboxEntry('a')).toBeUndefined()
    expect(store.outboxScheduleOf(PEER)).toEqual({ nextAttemptAt: 20, oldestAt: 20 })
    store.record(writes({ delivered: [{ id: 'b', path: 'direct' }] }))
    expect(store.outboxScheduleOf(PEER)).toBeUndefined()
    store.close()
  })

  it('hands a new message to beforeCommit with its rows written and not yet committed, durable or not; inside another transaction it does not', async () => {
    const file = join(await tempDir(), 'store.db')
    const store = new Store(file)
    // another connection sees only what is committed
    const reader = new DatabaseSync(file, { readOnly: true })
    const committed = (id: string): boolean => reader.prepare('SELECT 1 FROM messages WHERE id = ? AND next_attempt_at IS NOT NULL').get(id) != null
    for (const durable of [true, false]) {
      const id = `m-${String(durable)}`
      const seen: Array<{ entry: unknown, committed: boolean }> = []
      const written = store.enqueue({ peer: PEER, id, body: 'x', contentType: 'text/plain', sentAt: 5 }, { durable, beforeCommit: entry => { seen.push({ entry, committed: committed(id) }) } })
      expect(seen).toEqual([{ entry: written, committed: false }])
      expect(committed(id)).toBe(true)
    }
    const called: string[] = []
    store.transaction(() => {
      store.enqueue({ peer: PEER, id: 'inner', body: 'x', contentType: 'text/plain', sentAt: 5 }, { beforeCommit: entry => { called.push(entry.id) } })
    })
    expect(called).toEqual([])
    expect(store.outboxEntry('inner')?.seq).toBe(3)
    reader.close()
    store.close()
  })

  it('hands the frame its entry before any statement once it knows the conversation\'s next seq, and never a seq that a rolled-back or failed write took', () => {
    const store = new Store()
    const { run, stop } = watchStatements(store)
    const frames: Array<{ seq: number, statements: number }> = []
    const queue = (id: string): OutboxEntry => {
      run.length = 0
      return store.enqueue({ peer: PEER, id, body: id, contentType: 'text/plain', sentAt: 1 }, { beforeCommit: entry => { frames.push({ seq: entry.seq, statements: run.filter(sql => !sql.startsWith('BEGIN')).length }) } })
    }
    // the first since start: its seq is read (and taken) before the frame
    expect(queue('a').seq).toBe(1)
    // then known: the frame goes before anything is written
    expect(queue('b')).toEqual(store.due(PEER, 1).find(e => e.id === 'b'))
    expect(frames[0].statements).toBeGreaterThan(0)
    expect(frames[1]).toEqual({ seq: 2, statements: 0 })

    // one queued inside a transaction that rolls back takes no seq
    expect(() => store.transaction(() => {
      store.enqueue({ peer: PEER, id: 'rolled back', body: 'x', contentType: 'text/plain', sentAt: 1 })
      throw new Error('undone')
    })).toThrow('undone')
    expect(queue('c').seq).toBe(3)
    // one whose write fails after its frame left: the next takes its seq again, as after a crash there
    expect(() => queue('a')).toThrow(/constraint/i)
    expect(queue('d').seq).toBe(4)
    expect(frames.map(f => f.seq)).toEqual([1, 2, 3, 4, 4])
    stop()
    store.close()
  })

  it('defers delivered marks to the next commit: every read sees them at once, the next message queued writes them after its frame, an idle store in the next turn, a rollback keeps them, close writes them', async () => {
    const file = join(await tempDir(), 'store.db')
    let store = new Store(file)
    const reader = new DatabaseSync(file, { readOnly: true })
    const committedStatus = (id: string): unknown => (reader.prepare('SELECT status FROM messages WHERE id = ?').get(id) as { status: string } | undefined)?.status
    const queue = (id: string, beforeCommit?: () => void): void => {
      store.enqueue({ peer: PEER, id, body: id, contentType: 'text/plain', sentAt: 1 }, { durable: false, beforeCommit })
    }
    const deliver = (id: string): void => { store.record(writes({ at: 7, delivered: [{ id, path: 'direct' }] }), { durable: false, defer: true }) }
    queue('a')
    deliver('a')
    // not committed yet, but this store answers as if it were
    expect(committedStatus('a')).toBe('queued')
    expect(store.outboxEntry('a')).toBeUndefined()
    expect(committedStatus('a')).toBe('delivered')

    // the next message queued writes it in its own commit, once its frame is out
    queue('b')
    deliver('b')
    const { run, stop } = watchStatements(store)
    const atFrame: unknown[] = []
    queue('c', () => { atFrame.push(committedStatus('b'), run.filter(sql => sql.includes("'delivered'")).length) })
    stop()
    // not even written, uncommitted, before the frame
    expect(atFrame).toEqual(['queued', 0])
    expect(run.filter(sql => sql.includes("'delivered'"))).toHaveLength(1)
    expect(committedStatus('b')).toBe('delivered')
    expect(store.getMessage('b')).toMatchObject({ status: 'delivered', path: 'direct', receivedAt: 7 })

    // nothing else runs: the next turn of the event loop writes it
    deliver('c')
    expect(committedStatus('c')).toBe('queued')
    await new Promise(resolve => setImmediate(resolve))
    expect(committedStatus('c')).toBe('delivered')

    // a transaction that fails keeps them for the next
    queue('d')
    deliver('d')
    expect(() => store.transaction(() => { throw new Error('undone') })).toThrow('undone')
    expect(committedStatus('d')).toBe('queued')
    expect(store.outboxSize()).toBe(0)
    expect(committedStatus('d')).toBe('delivered')

    // only delivered marks, not durable, outside a transaction are deferred
    queue('e')
    store.record(writes({ at: 8, delivered: [{ id: 'e', path: 'direct' }] }), { defer: true })
    expect(committedStatus('e')).toBe('delivered')
    queue('f')
    queue('g')
    store.record(writes({ at: 8, delivered: [{ id: 'f', path: 'direct' }], failed: [{ id: 'g', reason: 'x' }] }), { durable: false, defer: true })
    expect([committedStatus('f'), committedStatus('g')]).toEqual(['delivered', 'failed'])

    // closing writes what waits
    queue('h')
    deliver('h')
    store.close()
    expect(committedStatus('h')).toBe('delivered')
    reader.close()
    store = new Store(file)
    expect(store.outbox()).toEqual([])
    store.close()
  })

  it('runs afterCommit at once outside a transaction, after the commit inside one, and never for one rolled back', () => {
    const store = new Store()
    const ran: string[] = []
    store.afterCommit(() => ran.push('none'))
    expect(ran).toEqual(['none'])
    store.transaction(() => {
      // run outside the transaction: an afterCommit of its own runs at once
      store.afterCommit(() => {
        ran.push('committed')
        store.afterCommit(() => ran.push('outside'))
      })
      expect(ran).toEqual(['none'])
    })
    expect(() => store.transaction(() => {
      store.afterCommit(() => ran.push('rolled back'))
      throw new Error('undone')
    })).toThrow('undone')
    expect(ran).toEqual(['none', 'committed', 'outside'])
    store.transaction(() => undefined)
    expect(ran).toEqual(['none', 'committed', 'outside'])
    store.close()
  })

  it('queues again a message an older parley left marked sending', async () => {
    const file = join(await tempDir(), 'messages.db')
    // a store as parley left it at schema version 2
    const db = new DatabaseSync(file)
    for (const [v, migration] of MIGRATIONS.slice(0, 2).entries()) {
      db.exec(migration)
      db.exec(`PRAGMA user_version = ${v + 1}`)
    }
    db.exec(`INSERT INTO conversations (peer, next_out_seq) VALUES ('${PEER}', 2);
      INSERT INTO messages (id, peer, direction, seq, body, content_type, sent_at, created_at, status, position)
        VALUES ('a', '${PEER}', 'out', 1, 'x', 'text/plain', 1, 1, 'sending', 1);
      INSERT INTO outbox (id, peer, seq, next_attempt_at) VALUES ('a', '${PEER}', 1, 1);`)
    db.close()
    const store = new Store(file)
    expect(store.getMessage('a')?.status).toBe('queued')
    expect(store.due(PEER, 1).map(e => [e.id, e.status])).toEqual([['a', 'queued']])
    store.close()
  })

  it('keeps every outbox entry, its retry and mailbox state, the held messages and the history\'s end across the upgrades of the outbox (migrations 12 and 13)', async () => {
    const file = join(await tempDir(), 'messages.db')
    // a store as parley left it at schema version 11: the outbox a rowid table of its own, the history's end a row of its own
    const db = new DatabaseSync(file)
    for (const [v, migration] of MIGRATIONS.slice(0, 11).entries()) {
      db.exec(migration)
      db.exec(`PRAGMA user_version = ${v + 1}`)
    }
    db.exec(`INSERT INTO conversations (peer, next_out_seq, next_in_seq, read_position) VALUES ('${PEER}', 4, 1, 3), ('${OTHER}', 2, 1, 4);
      INSERT INTO messages (id, peer, direction, seq, body, content_type, sent_at, received_at, created_at, status, path, position) VALUES
        ('a', '${PEER}', 'out', 1, 'x', 'text/plain', 1, NULL, 1, 'queued', NULL, 1),
        ('b', '${PEER}', 'out', 2, 'y', 'text/plain', 2, NULL, 2, 'stored', 'mailbox', 2),
        ('d', '${PEER}', 'out', 3, 'w', 'text/plain', 3, 4, 3, 'delivered', 'direct', 3),
        ('c', '${OTHER}', 'out', 1, 'z', 'text/plain', 3, NULL, 3, 'queued', NULL, 4),
        ('h', '${OTHER}', 'in', 2, 'held', 'text/plain', 1, 1, 1, 'held', 'direct', NULL);
      UPDATE conversations SET held = 1, gap_since = 1 WHERE peer = '${OTHER}';
      INSERT INTO outbox (id, peer, seq, attempts, next_attempt_at, last_error, stored_until) VALUES
        ('a', '${PEER}', 1, 1, 50, 'reset', NULL), ('b', '${PEER}', 2, 0, 2, NULL, 900), ('c', '${OTHER}', 1, 0, 3, NULL, NULL);
      -- positions up to 6 were handed out: two messages since deleted (a declined request) had 5 and 6
      UPDATE history_end SET last_position = 6;`)
    db.close()
    const store = new Store(file)
    expect(store.outbox().map(e => [e.id, e.status, e.attempts, e.nextAttemptAt, e.lastError, e.storedUntil])).toEqual([
      ['a', 'queued', 1, 50, 'reset', undefined], ['b', 'stored', 0, 2, undefined, 900], ['c', 'queued', 0, 3, undefined, undefined]
    ])
    expect(store.outboxSize()).toBe(3)
    expect(store.outboxEntry('d')).toBeUndefined()
    const upgraded = (store as any).db as DatabaseSync
    expect(upgraded.prepare("SELECT name FROM sqlite_master WHERE name IN ('outbox', 'history_end')").all()).toEqual([])
    // the held message is still found, and shown when the gap fills, after every position handed out before
    expect(store.receive({ peer: OTHER, id: 'g', seq: 1, body: 'first', contentType: 'text/plain', sentAt: 1, receivedAt: 2, path: 'direct' }).presented.map(m => m.id)).toEqual(['g', 'h'])
    expect(store.history(OTHER).map(m => [m.id, upgraded.prepare('SELECT position FROM messages WHERE id = ?').get(m.id)])).toEqual([
      ['c', { position: 4 }], ['g', { position: 7 }], ['h', { position: 8 }]
    ])
    store.record(writes({ at: 9, delivered: [{ id: 'a', path: 'direct' }] }))
    expect(store.outbox().map(e => e.id)).toEqual(['b', 'c'])
    store.close()
  })

  it('gives no history position twice across a restart, whichever side took the last one', async () => {
    const file = join(await tempDir(), 'messages.db')
    let store = new Store(file)
    const positions: number[] = []
    const position = (id: string): number => ((store as any).db.prepare('SELECT position FROM messages WHERE id = ?').get(id) as { position: number }).position
    const inbound = (peer: string, id: string, seq: number): void => {
      store.receive({ peer, id, seq, body: id, contentType: 'text/plain', sentAt: 1, receivedAt: 1, path: 'direct', request: peer === OTHER })
    }
    const steps: Array<() => string> = [
      () => { store.enqueue({ peer: PEER, id: 'o1', body: 'x', contentType: 'text/plain', sentAt: 1 }); return 'o1' },
      () => { inbound(PEER, 'i1', 1); return 'i1' },
      // a request from a stranger, declined: its position is gone with it
      () => { inbound(OTHER, 'r1', 1); return 'r1' },
      () => { inbound(PEER, 'i3', 3); inbound(PEER, 'i2', 2); return 'i3' },
      () => { store.enqueue({ peer: PEER, id: 'o2', body: 'x', contentType: 'text/plain', sentAt: 1 }); return 'o2' }
    ]
    for (const step of steps) {
      positions.push(position(step()))
      if (positions.length === 3) store.deleteRequests(OTHER)
      store.close()
      store = new Store(file)
    }
    expect(positions).toEqual([1, 2, 3, 5, 6])
    store.close()
  })

  it('plans every query of the send path on an index: none scans the messages or the outbox, however long the history', () => {
    const store = new Store()
    // the send path as the delivery engine walks it: queue, read what is due,
    // record outcomes, reschedule, wake, expire, cancel, leave in a mailbox
    for (const id of ['a', 'b', 'c', 'd']) store.enqueue({ peer: PEER, id, body: id, contentType: 'text/plain', sentAt: 1 })
    store.due(PEER, 10, 64)
    store.due(PEER, 10, 64, 2)
    store.record(writes({ at: 5, delivered: [{ id: 'a', path: 'direct' }], retried: [{ id: 'b', at: 50, reason: 'reset' }], failed: [{ id: 'c', reason: 'refused' }], deferred: { peer: PEER, until: 60, reason: 'wait' } }))
    store.nextAttempt(PEER)
    store.outboxScheduleOf(PEER)
    store.retryNow([PEER], 70)
    store.writtenBy(PEER, 1)
    store.outboxEntry('d')
    // the mailbox's part: what to deposit, stored marks, a receipt's lookups, recipients' records
    store.undeposited(PEER, 100)
    store.record(writes({ at: 6, stored: [{ id: 'd', until: 1_000 }], unstored: ['d'] }))
    store.outbound(PEER, 'd')
    store.saveMailboxRecord(PEER, new Uint8Array(4), 1, 1)
    store.mailboxRecord(PEER)
    const db = (store as any).db as DatabaseSync
    const statements = ((store as any).statements as PreparedStatements).texts()
    expect(statements.length).toBeGreaterThan(8)
    for (const sql of statements) {
      const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((row: any) => String(row.detail))
      // a SCAN of either table grows with the history; a SEARCH on an index does not
      expect({ sql, scans: plan.filter(step => /^SCAN (messages|outbox|m|o)\b/.test(step)) }).toEqual({ sql, scans: [] })
    }
    store.close()
  })
})
