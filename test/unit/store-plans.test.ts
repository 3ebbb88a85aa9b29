import { readFileSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import type { PreparedStatements } from '../../common/statements.js'
import { Store } from '../../node/store/index.js'
import type { NewInbound } from '../../node/store/index.js'
import { FileRows } from '../../node/store/files.js'
import { GroupStore } from '../../node/store/groups.js'
import { watchStatements } from '../fixtures/statements.js'

/**
 * Every statement the store prepares, planned by SQLite: none may read a whole
 * table, or a whole index, of what grows with the history (`messages`), with
 * the number of conversations (`conversations`, `contacts`, `peer_states`) or
 * with the outbox, but where the statement's purpose is to list that table
 * (ALLOWED_SCANS says which and why). A year of history makes a scan on the
 * send or receive path the one cost that does not stay flat.
 */

/** Statements allowed to scan a table, with the reason. Matched on the statement's text. */
const ALLOWED_SCANS: Array<{ statement: RegExp, table: string, why: string }> = [
  { statement: /^SELECT peer, min\(next_attempt_at\) AS next FROM messages INDEXED BY messages_outbox WHERE next_attempt_at IS NOT NULL GROUP BY peer$/, table: 'outbox', why: 'the outbox resumes every peer with queued messages: it lists the outbox, which is bounded' },
  { statement: /^SELECT peer, min\(next_attempt_at\) AS next, min\(created_at\) AS oldest FROM messages INDEXED BY messages_outbox/, table: 'outbox', why: 'the same, with the oldest message of each peer' },
  { statement: /^SELECT count\(\*\) AS n FROM messages INDEXED BY messages_outbox/, table: 'outbox', why: 'the outbox\'s size, on its index' },
  { statement: /FROM messages INDEXED BY messages_outbox WHERE next_attempt_at IS NOT NULL ORDER BY created_at, seq$/, table: 'outbox', why: '`parley outbox` lists the outbox' },
  { statement: /^SELECT m\.peer, m\.id, m\.direction, substr\(m\.body/, table: 'conversations', why: '`parley conversations` lists the conversations' },
  { statement: /^SELECT m\.peer, m\.id, m\.direction, substr\(m\.body/, table: 'conversation', why: 'the same listing: each conversation\'s max(position) is one seek, its request flag one EXISTS on the partial index of requests' },
  { statement: /^SELECT body FROM messages WHERE request = 1 AND peer = \? ORDER BY created_at LIMIT 1$/, table: 'conversation', why: 'a request\'s preview: the first row of the partial index of requests' },
  { statement: /^SELECT peer, count\(\*\) AS n, sum\(length/, table: 'messages', why: 'message requests: a scan of the partial index of request rows only, which the policy bounds' },
  { statement: /^UPDATE messages SET request = 0 WHERE request = 1 AND peer = \?$/, table: 'conversation', why: 'accepting a request: a stranger\'s conversation is its requests, which the policy bounds' },
  { statement: /^DELETE FROM messages WHERE request = 1 AND peer = \? AND direction = 'in'$/, table: 'conversation', why: 'declining or blocking a stranger deletes its requests, which the policy bounds' },
  { statement: /^SELECT max\(position\) AS p FROM messages WHERE peer = \? AND position IS NOT NULL$/, table: 'conversation', why: 'max() on the (peer, position) index is one seek to its end' },
  { statement: /^SELECT peer, state, since FROM peer_states ORDER BY since$/, table: 'peer_states', why: '`parley blocked` lists them' },
  { statement: /^SELECT \* FROM contacts ORDER BY name$/, table: 'contacts', why: '`parley contacts` lists them' }
]

/** Methods the workload below need not call: they prepare no statement of their own. */
const NOT_STATEMENTS = new Set(['constructor', 'close', 'transaction', 'afterCommit', 'sync'])

/** Table names by the aliases a statement gives them (`FROM outbox o`, `JOIN messages m`). */
function aliases (sql: string): Map<string, string> {
  const names = new Map<string, string>()
  for (const [, table, alias] of sql.matchAll(/\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?!INDEXED|WHERE|ON|JOIN|CROSS|ORDER|GROUP|LIMIT|SET|VALUES)(\w+))?/gi)) {
    names.set(table, table)
    if (alias != null) names.set(alias, table)
  }
  return names
}

/**
 * What each statement's plan reads in full: a table or a whole index (`SCAN`),
 * or a whole conversation's messages (a search of `messages` on the peer alone,
 * or the peer and direction: `conversation`).
 */
function scans (db: DatabaseSync, sql: string): string[] {
  const names = aliases(sql)
  const found: string[] = []
  for (const { detail } of db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>) {
    // the outbox is the rows of this partial index alone (migration 13): a
    // peer's part of it is that peer's queued messages, never its history
    if (/ USING (?:COVERING )?INDEX messages_outbox\b/.test(detail)) {
      if (detail.startsWith('SCAN ')) found.push('outbox')
      continue
    }
    const scan = /^SCAN (\w+)/.exec(detail)?.[1]
    if (scan != null && scan !== 'CONSTANT') found.push(names.get(scan) ?? scan)
    const search = /^SEARCH (\w+) .*\((peer=\?(?: AND direction=\?)?)\)$/.exec(detail)
    if (search != null && names.get(search[1]) === 'messages') found.push('conversation')
  }
  return found
}

/** Runs every query and write of the store once, on a store with a little of everything in it. */
function workload (store: Store): void {
  const now = 1_700_000_000_000
  for (let p = 0; p < 3; p++) {
    const peer = `peer${p}`
    for (let i = 0; i < 20; i++) {
      const m = store.enqueue({ peer, id: `o${p}-${i}`, body: 'x', contentType: 'text/plain', sentAt: now })
      if (i % 2 === 0) store.markDelivered(m.id, 'direct', now)
    }
    store.record({
      at: now,
      delivered: [{ id: `o${p}-1`, path: 'direct' }],
      retried: [{ id: `o${p}-3`, at: now + 1, reason: 'x' }],
      failed: [{ id: `o${p}-5`, reason: 'x' }],
      deferred: { peer, until: now + 5, reason: 'r' },
      stored: [{ id: `o${p}-7`, until: now + 9 }],
      unstored: [`o${p}-7`]
    })
    store.due(peer, now + 10)
    store.nextAttempt(peer)
    store.outboxScheduleOf(peer)
    store.writtenBy(peer, now)
    store.outboxEntry(`o${p}-9`)
    store.undeposited(peer, now + 10)
    store.outbound(peer, `o${p}-9`)
    store.saveMailboxRecord(peer, new Uint8Array(3), 1, now)
    store.mailboxRecord(peer)
    store.markFailed(`o${p}-11`, 'gone')
    store.reschedule([`o${p}-13`], now + 3, 'x')
    store.retryNow([peer], now)
    // seq 2 missing: a gap, with messages held behind it
    for (let i = 1; i < 20; i++) {
      store.receive({ peer, id: `i${p}-${i}`, seq: i === 1 ? 1 : i + 1, body: 'y', contentType: 'text/plain', sentAt: now, receivedAt: now, path: 'direct', request: p === 2 })
    }
    store.inboundBatch([{ kind: 'refuse', peer, seq: 40, now }])
    store.refuseSeq(peer, 41, now)
    store.history(peer, { limit: 5 })
    store.history(peer, { limit: 5, before: now + 1 })
    store.history(peer, { limit: 5, beforePosition: 10 })
    store.positionOf(peer, `i${p}-1`)
    store.markRead(peer)
    store.markRead(peer, 3)
    store.unread(peer)
    store.setPeerState(peer, 'accepted', now)
    store.peerState(peer)
    store.addContact({ name: `c${p}`, peer, addrs: [], createdAt: now })
    store.contactsOf(peer)
    store.contact(`c${p}`)
  }
  store.outboxPeers()
  store.outboxSchedule()
  store.outboxSize()
  store.outbox()
  store.oldestGap()
  store.releaseGaps(now + 1e9, 1)
  store.getMessage('o0-1')
  store.conversations()
  store.requests()
  store.acceptRequests('peer2')
  store.deleteRequests('peer2')
  store.peerStates()
  store.usedBytes()
  store.contacts()
  store.renameContact('c1', 'c1 renamed')
  store.removeContact('c0')
  store.setPeerState('peer1', undefined, now)
}

describe('the store\'s query plans', () => {
  const store = new Store()
  const called = new Set<string>()
  const watched = new Proxy(store, {
    get (target, name, receiver) {
      const value = Reflect.get(target, name, receiver)
      if (typeof value !== 'function' || typeof name !== 'string') return value
      return (...args: unknown[]) => {
        called.add(name)
        return value.apply(target, args)
      }
    }
  })
  workload(watched)
  const db = (store as any).db as DatabaseSync
  const statements = ((store as any).statements as PreparedStatements).texts().filter(sql => !sql.startsWith('PRAGMA'))

  it('the workload calls every method of the store (a new one joins it, and its statements are checked)', () => {
    // private helpers are called through the public ones
    const source = readFileSync(fileURLToPath(new URL('../../node/store/index.ts', import.meta.url)), 'utf8')
    const privates = new Set([...source.matchAll(/^ {2}private (?:readonly )?(\w+)/gm)].map(match => match[1]))
    const methods = Object.getOwnPropertyNames(Store.prototype)
      .filter(name => !NOT_STATEMENTS.has(name) && !privates.has(name) && typeof (Store.prototype as any)[name] === 'function')
    expect(methods.filter(name => !called.has(name))).toEqual([])
    expect(statements.length).toBeGreaterThan(40)
  })

  it('no statement reads a whole table but those whose purpose is to list it', () => {
    const offending: string[] = []
    for (const sql of statements) {
      const text = sql.replace(/\s+/g, ' ').trim()
      for (const table of scans(db, sql)) {
        if (ALLOWED_SCANS.some(allowed => allowed.table === table && allowed.statement.test(text))) continue
        offending.push(`${table}: ${text}`)
      }
    }
    expect(offending).toEqual([])
  })

  it('reads a page of history from where it starts: a page far back costs what the first does', () => {
    const history = statements.find(sql => /^SELECT \* FROM messages WHERE peer = \? AND position < \?/.test(sql))
    expect(history).toBeDefined()
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${history as string}`).all().map((r: any) => r.detail).join('; ')
    expect(plan).toMatch(/messages_by_position \(peer=\? AND position<\?\)/)
  })

  it('looks a held message up by its seq on the index of held messages: a gap with 20,000 held costs what no gap does', () => {
    const lookups = statements.filter(sql => /FROM messages INDEXED BY messages_held/.test(sql))
    expect(lookups.length).toBeGreaterThanOrEqual(3)
    const take = lookups.find(sql => /AND seq = \?$/.test(sql))
    expect(take).toBeDefined()
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${take as string}`).all().map((r: any) => r.detail).join('; ')
    expect(plan).toMatch(/messages_held \(peer=\? AND direction=\? AND status=\? AND seq=\?\)/)
  })

  it('runs no more statements for a message held behind an open gap than for one in order, and indexes no history place for it', () => {
    const fresh = new Store()
    const { run } = watchStatements(fresh)
    const message = (peer: string, seq: number): NewInbound => ({ peer, id: `${peer}-${seq}`, seq, body: 'x', contentType: 'text/plain', sentAt: 1, receivedAt: 1, path: 'direct' })
    const cost = (peer: string, seq: number): string[] => {
      run.length = 0
      fresh.inboundBatch([{ kind: 'receive', message: message(peer, seq), maxHeld: 1_000 }])
      return [...run]
    }
    for (let seq = 1; seq <= 3; seq++) cost('in-order', seq)
    cost('gapped', 2)
    cost('gapped', 3)
    const inOrder = cost('in-order', 4)
    const held = cost('gapped', 4)
    expect(held.length).toBeLessThanOrEqual(inOrder.length)
    expect(held.filter(sql => /messages_held/.test(sql))).toEqual([])
    // the history's index leaves out what has no place in the history
    const freshDb = (fresh as any).db as DatabaseSync
    const index = (freshDb.prepare("SELECT sql FROM sqlite_master WHERE name = 'messages_by_position'").get() as { sql: string }).sql
    expect(index).toMatch(/WHERE position IS NOT NULL$/)
    // and the index of held messages leaves out every message sent or shown (migration 12)
    const heldIndex = (freshDb.prepare("SELECT sql FROM sqlite_master WHERE name = 'messages_held'").get() as { sql: string }).sql
    expect(heldIndex).toMatch(/WHERE direction = 'in' AND status = 'held'$/)
    fresh.close()
  })

  it('starts from the conversations\' rows: the last history position is read, never sought in the history', () => {
    const statement = 'SELECT coalesce(max(last_position), 0) AS p FROM conversations'
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${statement}`).all().map((r: any) => r.detail).join('; ')
    // one pass over the conversations (one row each), none over the messages
    expect(plan).toMatch(/^(?:SCAN|SEARCH) conversations$/)
    const source = readFileSync(fileURLToPath(new URL('../../node/store/index.ts', import.meta.url)), 'utf8')
    expect(source).toContain(`'${statement}'`)
  })

  it('finds the oldest open gap on its partial index, not by reading every conversation', () => {
    const plan = db.prepare('EXPLAIN QUERY PLAN SELECT min(gap_since) AS since FROM conversations WHERE gap_since IS NOT NULL').all().map((r: any) => r.detail).join('; ')
    expect(plan).toMatch(/conversations_gaps/)
  })

  it('an allowed scan still names a statement the store prepares (no stale entries)', () => {
    for (const allowed of ALLOWED_SCANS) {
      expect(statements.some(sql => allowed.statement.test(sql.replace(/\s+/g, ' ').trim())), allowed.why).toBe(true)
    }
  })
})

type Allowed = Array<{ statement: RegExp, table: string, why: string }>

/** What each statement reads in full, less what `allowed` lets it (see `scans`). */
function offending (db: DatabaseSync, statements: string[], allowed: Allowed): string[] {
  const found: string[] = []
  for (const sql of statements) {
    const text = sql.replace(/\s+/g, ' ').trim()
    for (const table of scans(db, sql)) {
      if (allowed.some(a => a.table === table && a.statement.test(text))) continue
      found.push(`${table}: ${text}`)
    }
  }
  return found
}

/** Calls every method of `target` through a proxy that records which ones were called. */
function watch<T extends object> (target: T): { watched: T, called: Set<string> } {
  const called = new Set<string>()
  const watched = new Proxy(target, {
    get (t, name, receiver) {
      const value = Reflect.get(t, name, receiver)
      if (typeof value !== 'function' || typeof name !== 'string') return value
      return (...args: unknown[]) => {
        called.add(name)
        return value.apply(t, args)
      }
    }
  })
  return { watched, called }
}

/** Public methods a class's prototype has (its source's `private` ones left out). */
function publicMethods (proto: object, file: string): string[] {
  const source = readFileSync(fileURLToPath(new URL(`../../node/store/${file}`, import.meta.url)), 'utf8')
  const privates = new Set([...source.matchAll(/^ {2}private (?:readonly )?(\w+)/gm)].map(match => match[1]))
  return Object.getOwnPropertyNames(proto).filter(name => name !== 'constructor' && !privates.has(name) && typeof (proto as any)[name] === 'function')
}

/** GroupStore: a group's carriers come through the receive path, its sends through the send path. */
const GROUP_SCANS: Allowed = [
  { statement: /^SELECT \* FROM groups ORDER BY joined_at$/, table: 'groups', why: '`parley groups` lists them, and the node reads them once at start' },
  { statement: /^SELECT count\(DISTINCT group_id\) AS n FROM group_pending$/, table: 'group_pending', why: 'the limit on groups with payloads waiting, on the group_pending index (bounded by that very limit)' }
]

describe('the groups\' query plans', () => {
  const store = new Store()
  const { watched, called } = watch(store.groups)
  const now = 1_700_000_000_000
  for (let g = 0; g < 3; g++) {
    const group = `g${g}`
    watched.addGroup(group, now)
    watched.get(group)
    watched.takeSeq(group)
    watched.witness(group, 5)
    watched.addOp(group, { hash: `h${g}`, op: new Uint8Array(3), signature: new Uint8Array(3) })
    watched.ops(group)
    for (let i = 1; i <= 5; i++) {
      watched.addMessage({ group, sender: 'p', seq: i, id: `${g}-${i}`, lamport: i, body: 'x', contentType: 'text/plain', sentAt: now, receivedAt: now, path: 'direct' })
    }
    watched.messages(group, { limit: 2 })
    watched.messages(group, { before: 3 })
    watched.inbox(group, 'self')
    watched.markRead(group)
    watched.addPending({ group, sender: 'p', path: 'direct', receivedAt: now, payload: new Uint8Array(2) })
    watched.pendingCount(group)
    for (const p of watched.pending(group)) watched.deletePending(p.rowid)
  }
  watched.pendingGroups()
  watched.all()
  watched.deleteGroup('g2')
  const db = (store as any).db as DatabaseSync
  const statements = ((store.groups as any).statements as PreparedStatements).texts()

  it('the workload calls every method of GroupStore', () => {
    expect(publicMethods(GroupStore.prototype, 'groups.ts').filter(name => !called.has(name))).toEqual([])
    expect(statements.length).toBeGreaterThan(14)
  })

  it('no statement reads a whole table but those whose purpose is to list it', () => {
    expect(offending(db, statements, GROUP_SCANS)).toEqual([])
  })

  it('an allowed scan still names a statement GroupStore prepares, and one that reads its table whole', () => {
    for (const allowed of GROUP_SCANS) expect(statements.some(sql => allowed.statement.test(sql.replace(/\s+/g, ' ').trim()) && scans(db, sql).includes(allowed.table)), allowed.why).toBe(true)
  })
})

/** FileRows: an offer is a message; receiving one looks for a copy of its content and adds up the quota. */
const FILE_SCANS: Allowed = [
  { statement: /^SELECT \* FROM files WHERE \(\?1 IS NULL OR direction = \?1\)/, table: 'files', why: '`parley files` lists them, the latest first, on files_by_update, up to its limit' },
  { statement: /^SELECT m\.id, m\.peer, m\.body, m\.request FROM messages m INDEXED BY messages_file_offers/, table: 'messages', why: 'at start: the offers received, on their own partial index (never the history)' },
  { statement: /^SELECT \* FROM files WHERE direction = \? AND status IN \(SELECT value FROM json_each/, table: 'json_each', why: 'the statuses asked for: the few of a JSON array given by the caller' }
]

describe('the files\' query plans', () => {
  const store = new Store()
  const { watched, called } = watch(store.files)
  const now = 1_700_000_000_000
  for (let i = 0; i < 5; i++) {
    const row = { id: `f${i}`, peer: 'p', direction: (i % 2 === 0 ? 'in' : 'out') as 'in' | 'out', name: 'a.txt', type: 'text/plain', size: 10, sha256: `s${i}`, root: 'r', status: 'queued' as const, createdAt: now }
    watched.insert(row)
    watched.get(row.id)
    watched.getDirected(row.id, row.direction)
    watched.one(row.id, row.direction, row.peer)
    watched.setStatus(row, i === 0 ? 'complete' : 'transferring', undefined, now)
    watched.setHashes(row, new Uint8Array(32))
    watched.setVerified(row, 1)
    watched.setPath(row, '/tmp/x')
  }
  watched.list({ direction: 'in', peer: 'p', limit: 5 })
  watched.withStatus('in', ['queued', 'transferring'])
  watched.offersWithoutRow()
  watched.completePathOf('s0')
  watched.quotaUsed()
  const db = (store as any).db as DatabaseSync
  const statements = ((store.files as any).statements as PreparedStatements).texts()

  it('the workload calls every method of FileRows', () => {
    expect(publicMethods(FileRows.prototype, 'files.ts').filter(name => !called.has(name))).toEqual([])
    expect(statements.length).toBeGreaterThan(12)
  })

  it('no statement reads a whole table but those whose purpose is to list it', () => {
    expect(offending(db, statements, FILE_SCANS)).toEqual([])
  })

  it('an offer received finds a complete copy of its content on the index of files by status', () => {
    const find = statements.find(sql => sql.startsWith('SELECT path FROM files'))
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${find as string}`).all().map((r: any) => r.detail).join('; ')
    expect(plan).toMatch(/files_by_status \(direction=\? AND status=\? AND sha256=\?\)/)
  })

  it('an allowed scan still names a statement FileRows prepares, and one that reads its table whole', () => {
    for (const allowed of FILE_SCANS) expect(statements.some(sql => allowed.statement.test(sql.replace(/\s+/g, ' ').trim()) && scans(db, sql).includes(allowed.table)), allowed.why).toBe(true)
  })
})
