import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import type { PreparedStatements } from '../../common/statements.js'
import { PREVIEW_CHARS, Store } from '../../node/store/index.js'
import { MIGRATIONS } from '../../node/store/migrations.js'
import { useTempDirs } from '../fixtures/dirs.js'
import type { NewInbound } from '../../node/store/index.js'

const ALICE = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const BOB = '12D3KooWBobBobBobBobBobBobBobBobBobBobBobBobBobBobBo'
const CAROL = '12D3KooWCarolCarolCarolCarolCarolCarolCarolCarolCar'

let ids = 0
function id (): string {
  return `00000000-0000-7000-8000-${String(++ids).padStart(12, '0')}`
}

/** An inbound message of `peer`, the next seq `seq`, written at `at`. */
function inbound (peer: string, seq: number, at: number, extra: Partial<NewInbound> = {}): NewInbound {
  return { peer, id: id(), seq, body: `from ${peer.slice(-3)} #${seq}`, contentType: 'text/plain', sentAt: at, receivedAt: at, path: 'direct', ...extra }
}

function outbound (store: Store, peer: string, at: number, body = `to ${peer.slice(-3)} at ${at}`): string {
  return store.enqueue({ peer, id: id(), body, contentType: 'text/plain', sentAt: at }).id
}

describe('Store: conversations and read marks', () => {
  const tempDir = useTempDirs()

  it('lists one entry per conversation, latest activity first, with its last message, unread count and contact name', () => {
    const store = new Store()
    store.receive(inbound(ALICE, 1, 10))
    store.receive(inbound(ALICE, 2, 11))
    outbound(store, BOB, 12)
    store.receive(inbound(BOB, 1, 13))
    store.receive(inbound(CAROL, 1, 14))
    store.receive(inbound(ALICE, 3, 15))
    store.addContact({ name: 'zed', peer: ALICE, addrs: [], createdAt: 1 })
    store.addContact({ name: 'alice', peer: ALICE, addrs: [], createdAt: 2 })

    const list = store.conversations()
    expect(list.map(c => c.last.peer)).toEqual([ALICE, CAROL, BOB])
    expect(list.map(c => c.unread)).toEqual([3, 1, 1])
    // the first contact by name
    expect(list.map(c => c.name)).toEqual(['alice', undefined, undefined])
    expect(list[0].last).toMatchObject({ direction: 'in', body: `from ${ALICE.slice(-3)} #3`, createdAt: 15, status: 'presented' })
    expect(list[2].last).toMatchObject({ direction: 'in', createdAt: 13 })
    store.close()
  })

  it('counts neither outbound messages nor held ones as unread, and a conversation with nothing shown yet is not listed', () => {
    const store = new Store()
    // seq 2 waits for seq 1: held, not in the history
    store.receive(inbound(CAROL, 2, 5))
    expect(store.conversations()).toEqual([])
    outbound(store, ALICE, 6)
    expect(store.conversations()).toMatchObject([{ unread: 0, last: { direction: 'out', status: 'queued' } }])
    store.receive(inbound(CAROL, 1, 7))
    // both presented now, in seq order
    expect(store.conversations()[0]).toMatchObject({ unread: 2, last: { peer: CAROL, seq: 2 } })
    store.close()
  })

  it('cuts the preview it reads to PREVIEW_CHARS + 1 characters', () => {
    const store = new Store()
    outbound(store, ALICE, 1, '字'.repeat(5000))
    expect(store.conversations()[0].last.body).toBe('字'.repeat(PREVIEW_CHARS + 1))
    store.close()
  })

  it('marks read up to a message or everything, never back; sending marks read; kept across reopening', async () => {
    const file = join(await tempDir(), 'messages.db')
    let store = new Store(file)
    const first = store.receive(inbound(ALICE, 1, 1)).presented[0].id
    store.receive(inbound(ALICE, 2, 2))
    store.receive(inbound(ALICE, 3, 3))
    expect(store.unread(ALICE)).toBe(3)
    expect(store.markRead(ALICE, store.positionOf(ALICE, first))).toBe(2)
    expect(store.markRead(ALICE)).toBe(0)
    // back to the first: the mark stays where it is
    expect(store.markRead(ALICE, store.positionOf(ALICE, first))).toBe(0)
    store.receive(inbound(ALICE, 4, 4))
    store.receive(inbound(ALICE, 5, 5))
    expect(store.unread(ALICE)).toBe(2)
    store.close()

    store = new Store(file)
    expect(store.conversations()[0].unread).toBe(2)
    // a user who writes has read what came before
    outbound(store, ALICE, 6)
    expect(store.unread(ALICE)).toBe(0)
    store.receive(inbound(ALICE, 6, 7))
    expect(store.conversations()[0]).toMatchObject({ unread: 1, last: { direction: 'in', seq: 6 } })
    store.close()
  })

  it('knows a message of the conversation by id, and no other', () => {
    const store = new Store()
    const mine = outbound(store, ALICE, 1)
    const theirs = store.receive(inbound(BOB, 1, 2)).presented[0].id
    expect(store.positionOf(ALICE, mine)).toBe(1)
    expect(store.positionOf(ALICE, theirs)).toBeUndefined()
    expect(store.positionOf(ALICE, 'nope')).toBeUndefined()
    store.close()
  })

  it('does not count a message request as unread but says the conversation is one; accepted, its messages are unread', () => {
    const store = new Store()
    store.receive(inbound(CAROL, 1, 1, { request: true }))
    store.receive(inbound(CAROL, 2, 2, { request: true }))
    expect(store.conversations()).toMatchObject([{ request: true, unread: 0, last: { peer: CAROL, request: true } }])
    store.acceptRequests(CAROL)
    expect(store.conversations()).toMatchObject([{ request: false, unread: 2 }])
    store.close()
  })

  it('drops a declined request\'s conversation from the list', () => {
    const store = new Store()
    store.receive(inbound(CAROL, 1, 1, { request: true }))
    store.deleteRequests(CAROL)
    expect(store.conversations()).toEqual([])
    store.close()
  })

  it('counts the history kept before read marks existed as read (migration 4)', async () => {
    const file = join(await tempDir(), 'messages.db')
    // a store as parley with schema version 3 left it
    const db = new DatabaseSync(file)
    for (let v = 0; v < 3; v++) db.exec(MIGRATIONS[v])
    db.exec('PRAGMA user_version = 3')
    db.exec(`INSERT INTO conversations (peer, next_in_seq) VALUES ('${ALICE}', 2)`)
    db.exec(`INSERT INTO messages (id, peer, direction, seq, body, content_type, sent_at, received_at, created_at, status, position)
      VALUES ('x', '${ALICE}', 'in', 1, 'old', 'text/plain', 1, 1, 1, 'presented', 1)`)
    db.close()
    const store = new Store(file)
    expect(store.conversations()).toMatchObject([{ unread: 0, last: { body: 'old' } }])
    store.receive(inbound(ALICE, 2, 2))
    expect(store.unread(ALICE)).toBe(1)
    store.close()
  })

  it('plans conversations, unread counts and read marks on indexes: no pass over the messages table', () => {
    const store = new Store()
    const db = (store as any).db as DatabaseSync
    // run each once so that their statements are prepared and can be looked at
    store.conversations()
    store.markRead(ALICE)
    store.positionOf(ALICE, 'x')
    const statements = ((store as any).statements as PreparedStatements).texts()
      .filter(sql => /read_position|AS contact_name|SELECT position FROM messages/.test(sql))
    expect(statements.length).toBeGreaterThanOrEqual(4)
    for (const sql of statements) {
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map(r => r.detail)
      // conversations (one row a peer) may be scanned; messages only searched with an index
      const scans = plan.filter(step => /^SCAN /.test(step) && !/^SCAN c\b/.test(step))
      expect(scans, `${sql}\n${plan.join('\n')}`).toEqual([])
      for (const step of plan.filter(step => /messages|\b[umrx]\b/.test(step) && /^SEARCH/.test(step))) {
        expect(step, `${sql}\n${plan.join('\n')}`).toMatch(/INDEX|PRIMARY KEY/)
      }
    }
    store.close()
  })
})
