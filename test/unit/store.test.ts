import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import { Store } from '../../node/store/index.js'
import { MIGRATIONS, SCHEMA_VERSION } from '../../node/store/migrations.js'
import { useTempDirs } from '../fixtures/dirs.js'
import type { NewInbound } from '../../node/store/index.js'

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'

function inbound (seq: number, id = `00000000-0000-7000-8000-${String(seq).padStart(12, '0')}`): NewInbound {
  return { peer: PEER, id, seq, body: `m${seq}`, contentType: 'text/plain', sentAt: seq, receivedAt: 1000 + seq, path: 'direct' }
}

describe('Store', () => {
  const tempDir = useTempDirs()

  it('gives each conversation its own seqs, 1, 2, 3, and keeps them across reopening', async () => {
    const file = join(await tempDir(), 'messages.db')
    let store = new Store(file)
    const a = store.enqueue({ peer: PEER, id: 'a', body: 'x', contentType: 'text/plain', sentAt: 1 })
    const b = store.enqueue({ peer: PEER, id: 'b', body: 'y', contentType: 'text/plain', sentAt: 2 })
    const other = store.enqueue({ peer: 'other', id: 'c', body: 'z', contentType: 'text/plain', sentAt: 3 })
    expect([a.seq, b.seq, other.seq]).toEqual([1, 2, 1])
    store.close()
    store = new Store(file)
    expect(store.enqueue({ peer: PEER, id: 'd', body: 'w', contentType: 'text/plain', sentAt: 4 }).seq).toBe(3)
    expect(store.outbox().map(e => e.id)).toEqual(['a', 'b', 'c', 'd'])
    store.close()
  })

  it('goes on with history positions after reopening, after the last of any conversation', async () => {
    const file = join(await tempDir(), 'messages.db')
    let store = new Store(file)
    store.enqueue({ peer: PEER, id: 'a', body: 'x', contentType: 'text/plain', sentAt: 1 })
    store.receive({ peer: 'other', id: 'b', seq: 1, body: 'y', contentType: 'text/plain', sentAt: 2, receivedAt: 2, path: 'direct' })
    store.enqueue({ peer: 'third', id: 'c', body: 'z', contentType: 'text/plain', sentAt: 3 })
    const last = (store as any).position as number
    store.close()
    store = new Store(file)
    expect((store as any).position).toBe(last)
    store.enqueue({ peer: PEER, id: 'd', body: 'w', contentType: 'text/plain', sentAt: 4 })
    expect(store.positionOf(PEER, 'd')).toBe(last + 1)
    store.close()
  })

  it('reads the last history position from one row: a store from before it (version 8) takes it from its messages', async () => {
    const file = join(await tempDir(), 'messages.db')
    const db = new DatabaseSync(file)
    for (const [v, migration] of MIGRATIONS.slice(0, 8).entries()) {
      db.exec(migration)
      db.exec(`PRAGMA user_version = ${v + 1}`)
    }
    db.exec(`INSERT INTO conversations (peer, next_out_seq) VALUES ('${PEER}', 3), ('other', 2);
      INSERT INTO messages (id, peer, direction, seq, body, content_type, sent_at, created_at, status, position)
        VALUES ('a', '${PEER}', 'out', 1, 'x', 'text/plain', 1, 1, 'delivered', 7), ('b', 'other', 'out', 1, 'x', 'text/plain', 1, 1, 'delivered', 41),
          ('c', '${PEER}', 'out', 2, 'x', 'text/plain', 1, 1, 'delivered', 9);`)
    db.close()
    let store = new Store(file)
    expect((store as any).position).toBe(41)
    store.enqueue({ peer: PEER, id: 'd', body: 'w', contentType: 'text/plain', sentAt: 4 })
    expect(store.positionOf(PEER, 'd')).toBe(42)
    // a transaction that fails hands out nothing: the row stays where the last commit left it
    expect(() => store.transaction(() => {
      store.enqueue({ peer: PEER, id: 'e', body: 'w', contentType: 'text/plain', sentAt: 5 })
      throw new Error('undone')
    })).toThrow('undone')
    store.close()
    store = new Store(file)
    expect((store as any).position).toBe(42)
    store.enqueue({ peer: 'other', id: 'e', body: 'w', contentType: 'text/plain', sentAt: 5 })
    expect(store.positionOf('other', 'e')).toBe(43)
    store.close()
  })

  it('commits an outbound message without waiting for the disk, and `sync` then makes it durable', async () => {
    const file = join(await tempDir(), 'messages.db')
    let store = new Store(file)
    const m = store.enqueue({ peer: PEER, id: 'a', body: 'x', contentType: 'text/plain', sentAt: 1 }, { durable: false })
    // committed: readable at once, by this connection and by another one
    const other = new DatabaseSync(file)
    expect(other.prepare('SELECT status FROM messages WHERE id = ?').get('a')).toEqual({ status: 'queued' })
    other.close()
    await store.sync()
    await store.sync()
    // and the store is back to durable commits for everything else
    expect((store as any).db.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 2 })
    store.close()
    store = new Store(file)
    expect(store.outbox().map(e => [e.id, e.seq])).toEqual([[m.id, 1]])
    await store.sync()
    store.close()
    // a store in memory has nothing to sync
    await new Store().sync()
  })

  it('moves an outbox entry from queued to delivered or failed, retried on the way', () => {
    const store = new Store()
    store.enqueue({ peer: PEER, id: 'a', body: 'x', contentType: 'text/plain', sentAt: 1 })
    store.enqueue({ peer: PEER, id: 'b', body: 'y', contentType: 'text/plain', sentAt: 2 })
    // on the wire, a row still says queued: `sending` is the outbox's (test/unit/delivery.test.ts)
    expect(store.getMessage('a')?.status).toBe('queued')
    store.reschedule(['a'], 5_000, 'stream reset')
    expect(store.due(PEER, 4_999).map(e => e.id)).toEqual(['b'])
    expect(store.due(PEER, 5_000).map(e => [e.id, e.attempts, e.lastError])).toEqual([['a', 1, 'stream reset'], ['b', 0, undefined]])
    expect(store.markDelivered('a', 'relayed', 6_000)).toMatchObject({ status: 'delivered', path: 'relayed', receivedAt: 6_000 })
    expect(store.markFailed('b', 'refused by the recipient: BLOCKED')).toMatchObject({ status: 'failed', reason: 'refused by the recipient: BLOCKED' })
    expect(store.outbox()).toEqual([])
    store.close()
  })

  it('stores an inbound (sender, id) once and answers a repeat as duplicate', () => {
    const store = new Store()
    expect(store.receive(inbound(1)).result).toBe('stored')
    expect(store.receive(inbound(1))).toEqual({ result: 'duplicate', presented: [] })
    // the same id from another sender is another message
    expect(store.receive({ ...inbound(1), peer: 'someone-else' }).result).toBe('stored')
    store.close()
  })

  it('presents a seq its sender gave again under a new id (its outbox row lost with a power cut after the message went out): never taken for a repeat', () => {
    const store = new Store()
    expect(store.receive(inbound(1, 'a')).presented.map(m => m.id)).toEqual(['a'])
    expect(store.receive(inbound(2, 'b')).presented.map(m => m.id)).toEqual(['b'])
    // the sender lost b's row, restarted, and wrote c as seq 2, then d as seq 3
    expect(store.receive(inbound(2, 'c'))).toMatchObject({ result: 'stored', presented: [{ id: 'c', seq: 2 }] })
    expect(store.receive(inbound(3, 'd')).presented.map(m => m.id)).toEqual(['d'])
    // b's copy sent again is the repeat, by its id
    expect(store.receive(inbound(2, 'b')).result).toBe('duplicate')
    store.close()
  })

  it('holds a later seq while an earlier one is missing and presents both in order when the gap fills', () => {
    const store = new Store()
    expect(store.receive(inbound(1)).presented.map(m => m.seq)).toEqual([1])
    expect(store.receive(inbound(3)).presented).toEqual([])
    expect(store.receive(inbound(4)).presented).toEqual([])
    expect(store.history(PEER).map(m => m.seq)).toEqual([1])
    expect(store.oldestGap()).toBe(1003)
    expect(store.receive(inbound(2)).presented.map(m => m.seq)).toEqual([2, 3, 4])
    expect(store.oldestGap()).toBeUndefined()
    store.close()
  })

  it('lets a refused message fill its seq', () => {
    const store = new Store()
    store.receive(inbound(1))
    expect(store.receive(inbound(3)).presented).toEqual([])
    expect(store.refuseSeq(PEER, 2, 5).map(m => m.seq)).toEqual([3])
    expect(store.receive(inbound(4)).presented.map(m => m.seq)).toEqual([4])
    store.close()
  })

  it('gives up a gap after the timeout, presenting held messages in order, and never drops the late one', () => {
    const store = new Store()
    store.receive(inbound(1))
    store.receive(inbound(4))
    store.receive(inbound(3))
    // the gap opened when seq 4 arrived, at 1004
    expect(store.releaseGaps(1004 + 59_999, 60_000)).toEqual({ presented: [], more: false })
    expect(store.releaseGaps(1004 + 60_000, 60_000).presented.map(m => m.seq)).toEqual([3, 4])
    // seq 2 turns up after all: shown at once
    expect(store.receive(inbound(2)).presented.map(m => m.seq)).toEqual([2])
    expect(store.receive(inbound(5)).presented.map(m => m.seq)).toEqual([5])
    store.close()
  })

  it('refuses a corrupt file with an error naming it, and leaves it as it was', async () => {
    const file = join(await tempDir(), 'messages.db')
    const garbage = Buffer.from('this is not a database '.repeat(200))
    await writeFile(file, garbage)
    expect(() => new Store(file)).toThrow(expect.objectContaining({ name: 'StoreError', message: expect.stringContaining(file) }))
    expect(await readFile(file)).toEqual(garbage)
  })

  it('refuses a store from a newer schema, and leaves it as it was', async () => {
    const file = join(await tempDir(), 'messages.db')
    new Store(file).close()
    const db = new DatabaseSync(file)
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`)
    db.close()
    const before = await readFile(file)
    expect(() => new Store(file)).toThrow(new RegExp(`schema version ${SCHEMA_VERSION + 1}, written by a newer parley`))
    expect(() => new Store(file)).toThrow(file)
    expect(await readFile(file)).toEqual(before)
  })

  it('refuses another application\'s SQLite database', async () => {
    const file = join(await tempDir(), 'messages.db')
    const db = new DatabaseSync(file)
    db.exec('CREATE TABLE recipes (name TEXT)')
    db.close()
    expect(() => new Store(file)).toThrow(/not a parley message store/)
  })

  it('refuses a message that would be held when its sender already has maxHeld held, but not the one that fills the gap', () => {
    const store = new Store()
    store.receive(inbound(1))
    expect(store.receive(inbound(3), 2).result).toBe('stored')
    expect(store.receive(inbound(4), 2).result).toBe('stored')
    expect(store.receive(inbound(5), 2)).toEqual({ result: 'held-full', presented: [] })
    expect(store.receive(inbound(2), 2).presented.map(m => m.seq)).toEqual([2, 3, 4])
    expect(store.receive(inbound(5), 2).presented.map(m => m.seq)).toEqual([5])
    store.close()
  })

  it('answers a held message sent again as duplicate, even with its sender\'s held messages at the limit', () => {
    const store = new Store()
    store.receive(inbound(1))
    expect(store.receive(inbound(3), 2).result).toBe('stored')
    expect(store.receive(inbound(4), 2).result).toBe('stored')
    expect(store.receive(inbound(4), 2)).toEqual({ result: 'duplicate', presented: [] })
    expect(store.receive(inbound(5), 2).result).toBe('held-full')
    store.close()
  })

  it('gives a repeat no place in the history: the next message shown takes the next position', () => {
    const store = new Store()
    store.receive(inbound(1))
    expect(store.receive(inbound(1)).result).toBe('duplicate')
    expect(store.receive(inbound(2)).presented.map(m => m.seq)).toEqual([2])
    expect(store.history(PEER).map(m => store.positionOf(PEER, m.id))).toEqual([1, 2])
    store.close()
  })

  it('keeps each conversation\'s count of held messages as they are held, presented, released and deleted', async () => {
    const file = join(await tempDir(), 'messages.db')
    let store = new Store(file)
    const held = (peer = PEER): number => ((store as any).db.prepare('SELECT held FROM conversations WHERE peer = ?').get(peer) as { held: number }).held
    store.receive(inbound(1))
    for (const seq of [3, 4, 6, 7, 8]) store.receive(inbound(seq))
    expect(held()).toBe(5)
    // a repeat and a refused one change nothing; a message in order is not held
    store.receive(inbound(3))
    store.refuseSeq(PEER, 5, 1)
    expect(held()).toBe(5)
    // 2 fills the gap up to 4 (5 was refused: 6, 7, 8 follow)
    expect(store.receive(inbound(2)).presented.map(m => m.seq)).toEqual([2, 3, 4, 6, 7, 8])
    expect(held()).toBe(0)
    for (const seq of [10, 11, 12]) store.receive(inbound(seq))
    expect(held()).toBe(3)
    // the limit is checked against the count
    expect(store.receive(inbound(13), 3).result).toBe('held-full')
    expect(store.releaseGaps(10_000_000, 60_000, 2).presented.map(m => m.seq)).toEqual([10, 11])
    expect(held()).toBe(1)
    // a failed transaction leaves the count as it was
    expect(() => store.transaction(() => {
      store.receive(inbound(20))
      throw new Error('undone')
    })).toThrow('undone')
    expect(held()).toBe(1)
    // a stranger's held requests, deleted
    store.receive({ ...inbound(1, 'r1'), peer: 'stranger', request: true })
    store.receive({ ...inbound(3, 'r3'), peer: 'stranger', request: true })
    expect(held('stranger')).toBe(1)
    store.deleteRequests('stranger')
    expect(held('stranger')).toBe(0)
    store.close()
    // the count is kept across a restart
    store = new Store(file)
    expect(held()).toBe(1)
    expect(store.releaseGaps(10_000_000, 60_000).presented.map(m => m.seq)).toEqual([12])
    expect(held()).toBe(0)
    store.close()
  })

  it('holds a later seq that arrives while a gap is given up a page at a time: the next page goes on, in seq order', () => {
    const store = new Store()
    const held = (): number => ((store as any).db.prepare('SELECT held FROM conversations WHERE peer = ?').get(PEER) as { held: number }).held
    store.receive(inbound(1))
    for (let seq = 3; seq <= 12; seq++) store.receive(inbound(seq))
    expect(store.releaseGaps(10_000_000, 60_000, 4)).toEqual({ presented: expect.any(Array), more: true })
    // 3 … 6 shown; 7 … 12 wait for the next page, and so does a later seq
    expect(store.receive(inbound(20)).presented).toEqual([])
    expect(held()).toBe(7)
    const pages: number[][] = []
    for (let more = true; more;) {
      const page = store.releaseGaps(10_000_000, 60_000, 4)
      pages.push(page.presented.map(m => m.seq))
      more = page.more
    }
    expect(pages).toEqual([[7, 8, 9, 10], [11, 12, 20]])
    expect(held()).toBe(0)
    expect(store.oldestGap()).toBeUndefined()
    // the conversation goes on after the last one shown
    expect(store.receive(inbound(21)).presented.map(m => m.seq)).toEqual([21])
    expect(store.history(PEER).map(m => m.seq)).toEqual([1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 20, 21])
    store.close()
  })

  it('counts the held messages of a store from before the count (version 8)', async () => {
    const file = join(await tempDir(), 'messages.db')
    const db = new DatabaseSync(file)
    for (const [v, migration] of MIGRATIONS.slice(0, 8).entries()) {
      db.exec(migration)
      db.exec(`PRAGMA user_version = ${v + 1}`)
    }
    db.exec(`INSERT INTO conversations (peer, next_in_seq, gap_since) VALUES ('${PEER}', 2, 5), ('other', 1, NULL);
      INSERT INTO messages (id, peer, direction, seq, body, content_type, sent_at, created_at, status, position)
        VALUES ('a', '${PEER}', 'in', 1, 'x', 'text/plain', 1, 1, 'presented', 1), ('b', '${PEER}', 'in', 3, 'x', 'text/plain', 1, 1, 'held', NULL),
          ('c', '${PEER}', 'in', 4, 'x', 'text/plain', 1, 1, 'held', NULL);`)
    db.close()
    const store = new Store(file)
    expect(store.receive(inbound(5, 'd'), 2).result).toBe('held-full')
    expect(store.receive(inbound(2, 'e'), 2).presented.map(m => m.id)).toEqual(['e', 'b', 'c'])
    expect(store.receive(inbound(5, 'd'), 2).presented.map(m => m.id)).toEqual(['d'])
    store.close()
  })

  it('records a refused seq only within a window of the next expected one', () => {
    const store = new Store()
    store.refuseSeq(PEER, 2, 1)
    store.refuseSeq(PEER, 2 ** 40, 1)
    const db = (store as any).db as DatabaseSync
    expect(db.prepare('SELECT seq FROM refused_seqs').all().map((r: any) => r.seq)).toEqual([2])
    store.close()
  })

  it('releases an expired gap a page at a time, in seq order, and goes on where it stopped', () => {
    const store = new Store()
    store.receive(inbound(1))
    for (let seq = 3; seq <= 12; seq++) store.receive(inbound(seq))
    const first = store.releaseGaps(10_000_000, 60_000, 4)
    expect(first.presented.map(m => m.seq)).toEqual([3, 4, 5, 6])
    expect(first.more).toBe(true)
    // a message arriving between pages takes its turn after what was presented
    expect(store.receive(inbound(7)).result).toBe('duplicate')
    const second = store.releaseGaps(10_000_000, 60_000, 4)
    expect(second.presented.map(m => m.seq)).toEqual([7, 8, 9, 10])
    const third = store.releaseGaps(10_000_000, 60_000, 4)
    expect(third).toMatchObject({ more: false })
    expect(third.presented.map(m => m.seq)).toEqual([11, 12])
    expect(store.oldestGap()).toBeUndefined()
    expect(store.receive(inbound(13)).presented.map(m => m.seq)).toEqual([13])
    store.close()
  })

  it('keeps a stranger\'s messages as requests until accepted or deleted', () => {
    const store = new Store()
    store.receive({ ...inbound(1), request: true })
    store.receive({ ...inbound(2), body: 'héllo', request: true })
    store.receive({ ...inbound(1, '00000000-0000-7000-8000-0000000000aa'), peer: 'other', request: true })
    expect(store.requests()).toEqual([
      { peer: PEER, messages: 2, bytes: 2 + 6, firstAt: 1001, lastAt: 1002, preview: 'm1' },
      { peer: 'other', messages: 1, bytes: 2, firstAt: 1001, lastAt: 1001, preview: 'm1' }
    ])
    expect(store.history(PEER).map(m => m.request)).toEqual([true, true])
    expect(store.acceptRequests(PEER)).toBe(2)
    expect(store.history(PEER).map(m => m.request)).toEqual([false, false])
    expect(store.deleteRequests('other')).toBe(1)
    expect(store.history('other')).toEqual([])
    expect(store.requests()).toEqual([])
    store.close()
  })

  it('keeps the block list and accepted peers', () => {
    const store = new Store()
    store.setPeerState('a', 'blocked', 5)
    store.setPeerState('b', 'accepted', 6)
    store.setPeerState('a', 'accepted', 7)
    expect(store.peerStates()).toEqual([{ peer: 'b', state: 'accepted', since: 6 }, { peer: 'a', state: 'accepted', since: 7 }])
    expect(store.setPeerState('b', undefined, 8)).toBe(true)
    expect(store.peerStates()).toEqual([{ peer: 'a', state: 'accepted', since: 7 }])
    store.close()
  })

  it('reports the bytes its pages hold, growing with what is stored and reused after a delete', () => {
    const store = new Store()
    const empty = store.usedBytes()
    for (let i = 1; i <= 200; i++) store.receive({ ...inbound(i), body: 'x'.repeat(1000), request: true })
    const full = store.usedBytes()
    expect(full - empty).toBeGreaterThan(200 * 1000)
    store.deleteRequests(PEER)
    expect(store.usedBytes()).toBeLessThan(full - 150 * 1000)
    store.close()
  })

  it('plans the receive path\'s held-message queries on the messages_held index', () => {
    const store = new Store()
    const db = (store as any).db as DatabaseSync
    const plan = (sql: string): string => db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((r: any) => r.detail).join('; ')
    expect(plan("SELECT * FROM messages INDEXED BY messages_held WHERE peer = 'p' AND direction = 'in' AND status = 'held' AND seq = 3")).toMatch(/messages_held/)
    expect(plan("SELECT count(*) AS n FROM (SELECT 1 FROM messages INDEXED BY messages_held WHERE peer = 'p' AND direction = 'in' AND status = 'held' LIMIT 5)")).toMatch(/COVERING INDEX messages_held/)
    expect(plan('SELECT peer, count(*) FROM messages WHERE request = 1 GROUP BY peer')).toMatch(/messages_requests/)
    store.close()
  })
})
