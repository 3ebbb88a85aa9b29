import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import type { PreparedStatements } from '../../common/statements.js'
import { Store } from '../../node/store/index.js'
import { MIGRATIONS } from '../../node/store/migrations.js'
import { useTempDirs } from '../fixtures/dirs.js'
import type { OutboxWrites } from '../../node/store/index.js'

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
    const committed = (id: string): boolean => reader.prepare('SELECT 1 FROM outbox WHERE id = ?').get(id) != null
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

  it('keeps every outbox entry, its retry and mailbox state, and the held messages, across the upgrade to the keyed outbox (migration 12)', async () => {
    const file = join(await tempDir(), 'messages.db')
    const old = new Store(file)
    old.enqueue({ peer: PEER, id: 'a', body: 'x', contentType: 'text/plain', sentAt: 1 })
    old.enqueue({ peer: PEER, id: 'b', body: 'y', contentType: 'text/plain', sentAt: 2 })
    old.enqueue({ peer: OTHER, id: 'c', body: 'z', contentType: 'text/plain', sentAt: 3 })
    old.record(writes({ at: 5, retried: [{ id: 'a', at: 50, reason: 'reset' }], stored: [{ id: 'b', until: 900 }] }))
    old.receive({ peer: OTHER, id: 'h', seq: 2, body: 'held', contentType: 'text/plain', sentAt: 1, receivedAt: 1, path: 'direct' })
    const before = old.outbox()
    old.close()
    // back to schema version 11: the outbox as it was, a rowid table
    const db = new DatabaseSync(file)
    db.exec(`CREATE TABLE outbox_rowid (id TEXT NOT NULL PRIMARY KEY, peer TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL, last_error TEXT, stored_until INTEGER);
      INSERT INTO outbox_rowid SELECT id, peer, seq, attempts, next_attempt_at, last_error, stored_until FROM outbox;
      DROP TABLE outbox; ALTER TABLE outbox_rowid RENAME TO outbox; CREATE INDEX outbox_due ON outbox (peer, seq);
      DROP INDEX messages_held; CREATE INDEX messages_held ON messages (peer, direction, status, seq);
      PRAGMA user_version = 11;`)
    db.close()
    const store = new Store(file)
    expect(store.outbox()).toEqual(before)
    expect(before.map(e => [e.id, e.attempts, e.lastError, e.storedUntil])).toEqual([['a', 1, 'reset', undefined], ['b', 0, undefined, 900], ['c', 0, undefined, undefined]])
    const upgraded = (store as any).db as DatabaseSync
    expect((upgraded.prepare("SELECT sql FROM sqlite_master WHERE name = 'outbox'").get() as { sql: string }).sql).toMatch(/WITHOUT ROWID$/)
    // the held message is still found, and shown when the gap fills
    expect(store.receive({ peer: OTHER, id: 'g', seq: 1, body: 'first', contentType: 'text/plain', sentAt: 1, receivedAt: 2, path: 'direct' }).presented.map(m => m.id)).toEqual(['g', 'h'])
    store.record(writes({ at: 9, delivered: [{ id: 'a', path: 'direct' }] }))
    expect(store.outbox().map(e => e.id)).toEqual(['b', 'c'])
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
