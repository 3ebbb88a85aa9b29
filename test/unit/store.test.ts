import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import { Store } from '../../node/store/index.js'
import { SCHEMA_VERSION } from '../../node/store/migrations.js'
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

  it('moves an outbox entry through sending to delivered or failed', () => {
    const store = new Store()
    store.enqueue({ peer: PEER, id: 'a', body: 'x', contentType: 'text/plain', sentAt: 1 })
    store.enqueue({ peer: PEER, id: 'b', body: 'y', contentType: 'text/plain', sentAt: 2 })
    store.markSending(['a', 'b'])
    expect(store.getMessage('a')?.status).toBe('sending')
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
    expect(store.releaseGaps(1004 + 59_999, 60_000)).toEqual([])
    expect(store.releaseGaps(1004 + 60_000, 60_000).map(m => m.seq)).toEqual([3, 4])
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
    expect(() => new Store(file)).toThrow(/schema version 2, written by a newer parley/)
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
})
