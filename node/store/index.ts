import { existsSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import * as ordering from '../inbox/ordering.js'
import { PreparedStatements } from '../../common/statements.js'
import { GroupStore } from './groups.js'
import { FileRows } from './files.js'
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js'
import type { MessagePath, OutboundStatus } from '../types.js'
import type { FileHandle } from 'node:fs/promises'
import type { StatementSync } from 'node:sqlite'

/** The database cannot be used: corrupt, from a newer parley, or not a parley store. */
export class StoreError extends Error {
  static override name = 'StoreError'
  override name = 'StoreError'
}

export type Direction = 'in' | 'out'
export type InStatus = 'held' | 'presented'

/** One message as the store keeps it, in either direction. */
export interface StoredMessage {
  id: string
  peer: string
  direction: Direction
  seq: number
  body: string
  contentType: string
  replyTo?: string
  sentAt: number
  receivedAt?: number
  createdAt: number
  /** An outbound row never says `sending`: that is the outbox's, laid over the rows it has on the wire. */
  status: OutboundStatus | InStatus
  path?: MessagePath
  reason?: string
  /** Inbound from a stranger, waiting for the user to accept the request. */
  request: boolean
  /** A group carrier's payload: the message is no one-to-one message. */
  group?: Uint8Array
}

/** A message waiting in the outbox, with its retry state. */
export interface OutboxEntry extends StoredMessage {
  attempts: number
  nextAttemptAt: number
  lastError?: string
  /** Until when a mailbox host keeps it sealed for the recipient, if it was deposited. */
  storedUntil?: number
}

export interface NewOutbound {
  peer: string
  id: string
  body: string
  contentType: string
  replyTo?: string
  sentAt: number
  /** A group carrier's payload: the message takes a seq but no history position. */
  group?: Uint8Array
}

/** An acknowledged message, out of the outbox for good. */
interface DeliveredMark { id: string, path: MessagePath, at: number }

/** What became of outbound messages, written together by `record`. */
export interface OutboxWrites {
  /** When these outcomes came: a delivered message's `receivedAt`. */
  at: number
  /** Acknowledged (OK or DUPLICATE): out of the outbox for good. */
  delivered: Array<{ id: string, path: MessagePath }>
  /** Not delivered this time: one more attempt counted, and the next one at `at`. */
  retried: Array<{ id: string, at: number, reason: string }>
  /** Refused by the recipient for good: out of the outbox, with the reason. */
  failed: Array<{ id: string, reason: string }>
  /** The recipient asked to wait: every queued message of `peer` is due no earlier than `until`. */
  deferred?: { peer: string, until: number, reason: string }
  /** Left sealed in the recipient's mailbox until `until`: `stored`, and still in the outbox (direct delivery goes on). */
  stored?: Array<{ id: string, until: number }>
  /** No longer in a mailbox (its recipient's node asked to wait): `queued` again, to be deposited anew. */
  unstored?: string[]
}

export interface NewInbound {
  peer: string
  id: string
  seq: number
  body: string
  contentType: string
  replyTo?: string
  sentAt: number
  receivedAt: number
  path: MessagePath
  /** From a stranger: kept as a message request. @default false */
  request?: boolean
  /** A group carrier's payload (see migration 6): stored, ordered, never in the history. */
  group?: Uint8Array
}

/** What `receive` did with one inbound message. */
export interface ReceiveResult {
  /** `held-full`: not stored, the sender already has `maxHeld` messages waiting for an earlier seq. */
  result: 'stored' | 'duplicate' | 'held-full'
  /** Messages of the conversation now presentable, in seq order. */
  presented: StoredMessage[]
}

/** One step of `inboundBatch`: a message to store, or the seq of a refused one. */
export type InboundStep =
  | { kind: 'receive', message: NewInbound, maxHeld?: number }
  | { kind: 'refuse', peer: string, seq: number, now: number }

/** A stranger's messages waiting for the user's decision. */
export interface RequestSummary {
  peer: string
  messages: number
  /** UTF-8 bytes of their bodies. */
  bytes: number
  firstAt: number
  lastAt: number
  /** The body of the oldest one. */
  preview: string
}

export type PeerState = 'accepted' | 'blocked'

/** Where a conversation's inbound side stands: its row's `next_in_seq`, `gap_since` and `held`, and how many refused seqs it keeps. */
interface InboundState { nextInSeq: number, gapSince?: number, held: number, refused: number }

/** How many conversations' state a store keeps in memory (`Store.inbound`, `Store.nextOutSeqs`): ~100 bytes each. */
export const CONVERSATIONS_KEPT = 10_000

/** Sets a conversation's kept state; past CONVERSATIONS_KEPT the map starts again, and what it held is read again as it is needed. */
function keep<V> (map: Map<string, V>, peer: string, value: V): void {
  if (map.size >= CONVERSATIONS_KEPT && !map.has(peer)) map.clear()
  map.set(peer, value)
}

/** How many characters of the last message's body `conversations` reads. */
export const PREVIEW_CHARS = 100

/** One conversation as `conversations` lists it. */
export interface ConversationRow {
  /** The last message of its history; `body` is at most PREVIEW_CHARS + 1 characters. */
  last: StoredMessage
  /** The first contact naming the peer. */
  name?: string
  /** Inbound messages after the read mark, message requests not counted. */
  unread: number
  /** The peer has messages waiting as a message request. */
  request: boolean
}

export { REFUSED_SEQ_WINDOW } from '../inbox/ordering.js'

export interface Contact {
  name: string
  peer: string
  addrs: string[]
  createdAt: number
}

type Row = Record<string, any>

/** The ordering rules' lookup, with the conversation's count of held messages as it moves. */
type HeldLookup = ordering.OrderLookup<StoredMessage> & { held: number, refused: number }

/** The one mapping from a `messages` row (read, or built as it is written) to a StoredMessage. */
function toMessage (row: Row): StoredMessage {
  return {
    id: row.id,
    peer: row.peer,
    direction: row.direction,
    seq: row.seq,
    body: row.body,
    contentType: row.content_type,
    replyTo: row.reply_to ?? undefined,
    sentAt: row.sent_at,
    receivedAt: row.received_at ?? undefined,
    createdAt: row.created_at,
    status: row.status,
    path: row.path ?? undefined,
    reason: row.reason ?? undefined,
    request: row.request === 1,
    ...(row.group_payload == null ? {} : { group: row.group_payload })
  }
}

/** A `messages` row in the outbox (see `ENTRY_SELECT`) as an OutboxEntry. */
function toOutboxEntry (row: Row): OutboxEntry {
  const entry = toMessage(row) as OutboxEntry
  entry.attempts = row.attempts
  entry.nextAttemptAt = row.next_attempt_at
  entry.lastError = row.last_error ?? undefined
  entry.storedUntil = row.stored_until ?? undefined
  return entry
}

/**
 * What an OutboxEntry is read from, its `messages` row, but for the columns
 * every entry of the outbox has alike (`peer`, `direction`, `request`: see
 * `OUTBOX_ROW`). The outbox is the rows with a next attempt (migration 13),
 * read on the `messages_outbox` index of just those.
 */
const ENTRY_SELECT = 'id, seq, body, content_type, reply_to, sent_at, received_at, created_at, status, path, reason, group_payload, attempts, next_attempt_at, last_error, stored_until'
const ENTRY_COLUMNS = ENTRY_SELECT.split(', ')

/** The columns of an outbox entry's `messages` row that `ENTRY_SELECT` leaves out, as they always are. */
const OUTBOX_ROW = { direction: 'out', request: 0 } as const

/**
 * Names the values of a row read as an array after `columns`, on top of
 * `row`, for `toMessage`: node:sqlite builds an array far cheaper than an
 * object, which counts on the path of every message sent.
 */
function named (columns: readonly string[], values: readonly unknown[], row: Row): Row {
  for (let i = 0; i < columns.length; i++) row[columns[i]] = values[i]
  return row
}

/** A new outbound message as its `messages` row: written as it is, and mapped by `toMessage` without reading it back. */
function outboundRow (message: NewOutbound, seq: number): Row {
  return {
    id: message.id,
    peer: message.peer,
    direction: 'out',
    seq,
    body: message.body,
    content_type: message.contentType,
    reply_to: message.replyTo ?? null,
    sent_at: message.sentAt,
    received_at: null,
    created_at: message.sentAt,
    status: 'queued',
    path: null,
    reason: null,
    request: 0,
    group_payload: message.group ?? null
  }
}

/** A new outbound message's row as its outbox entry, due at once, as `due` would read it. */
function newOutboxEntry (row: Row): OutboxEntry {
  return toOutboxEntry({ ...row, attempts: 0, next_attempt_at: row.sent_at, last_error: null, stored_until: null })
}

/** An inbound message as its `messages` row: written as it is, and mapped by `toMessage` without reading it back. */
function inboundRow (message: NewInbound, status: InStatus, position: number | null): Row {
  return {
    id: message.id,
    peer: message.peer,
    direction: 'in',
    seq: message.seq,
    body: message.body,
    content_type: message.contentType,
    reply_to: message.replyTo ?? null,
    sent_at: message.sentAt,
    received_at: message.receivedAt,
    created_at: message.receivedAt,
    status,
    path: message.path,
    reason: null,
    position: message.group == null ? position : null,
    // a carrier is no message request: what it carries is the group's to judge
    request: message.request === true && message.group == null ? 1 : 0,
    group_payload: message.group ?? null
  }
}

/**
 * parley's message store: SQLite through `node:sqlite`, WAL mode. The only
 * module that touches SQL. Every method is synchronous and each write is one
 * transaction, so a message is durable when the call returns. Batches
 * (`inboundBatch`, or calls inside one `transaction`) share one transaction
 * and so one fsync.
 */
export class Store {
  private readonly db: DatabaseSync
  /** Prepared once per SQL text, for the life of the store. */
  private readonly statements: PreparedStatements
  /**
   * The last history position handed out. Kept here rather than read with
   * max(position) for every message, which scans the whole index (no index
   * leads with position) and made each write slower as history grew; and on
   * the conversation of each message that takes one (`last_position`, in the
   * write that moves the conversation on), so that start-up reads the highest
   * of those instead of every conversation's end.
   */
  private position = 0
  /** Transactions open: calls inside a transaction join it. */
  private depth = 0
  /** What waits for the transaction under way to commit (`afterCommit`). */
  private committed: Array<() => void> = []
  /**
   * Delivered marks not written yet (`record` with `defer`), in the order
   * they came: the next transaction writes them (a message queued: after
   * its frame has left, once the store knows its seq), and so does the next
   * statement run outside one, or else the next turn of the event loop. Every read goes through `sql`, so
   * nothing this store returns ever misses one.
   */
  private marks: DeliveredMark[] = []
  /** The marks the transaction under way wrote: kept again if it rolls back. */
  private marksWritten: DeliveredMark[] = []
  private marksTimer?: ReturnType<typeof setImmediate>
  /**
   * Where the inbound side of the conversations received from lately stands,
   * as their rows say (at most CONVERSATIONS_KEPT of them): each message reads
   * it, and reading it from the row (with its refused seqs, which almost
   * never exist) was two statements more for every one. Only this store
   * writes it; dropped whenever a write is undone.
   */
  private readonly inbound = new Map<string, InboundState>()
  /**
   * The next seq of each conversation this store gave the last seq of (see
   * `enqueue`): only enqueue moves it, so it holds until a write is undone.
   * At most CONVERSATIONS_KEPT of them.
   */
  private readonly nextOutSeqs = new Map<string, number>()
  /** The groups' tables; their writes join this store's transactions. */
  readonly groups: GroupStore

  /**
   * Opens (or creates) the store. `file` undefined keeps it in memory.
   *
   * @throws StoreError naming the file when it is corrupt, not a parley store, or newer than this code
   */
  constructor (readonly file?: string) {
    const location = file ?? ':memory:'
    const existed = file != null && existsSync(file)
    try {
      this.db = new DatabaseSync(location)
      this.statements = new PreparedStatements(this.db)
    } catch (err: any) {
      throw new StoreError(`cannot open the message store ${location}: ${err.message}`)
    }
    try {
      this.migrate(existed)
      this.position = (this.db.prepare('SELECT coalesce(max(last_position), 0) AS p FROM conversations').get() as Row).p
      this.groups = new GroupStore(this.db)
    } catch (err: any) {
      this.db.close()
      if (err instanceof StoreError) throw err
      throw new StoreError(`the message store ${location} is corrupt or not a parley database (${err.message}); it was left as it is: move it away to start with an empty store, or restore it from a backup`)
    }
  }

  private migrate (existed: boolean): void {
    const location = this.file ?? ':memory:'
    // reading the schema version is the first read: a corrupt file fails here
    const version = (this.db.prepare('PRAGMA user_version').get() as Row).user_version as number
    if (version > SCHEMA_VERSION) {
      throw new StoreError(`the message store ${location} has schema version ${version}, written by a newer parley; this one knows version ${SCHEMA_VERSION}. Upgrade parley; the file was left as it is`)
    }
    if (existed && version === 0) {
      const tables = this.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as Row
      if (tables.n > 0) {
        throw new StoreError(`${location} is a SQLite database but not a parley message store; it was left as it is`)
      }
    }
    this.db.exec('PRAGMA journal_mode = WAL')
    // FULL: a message is on disk before its ack leaves, even across a power loss
    this.db.exec('PRAGMA synchronous = FULL')
    this.db.exec('PRAGMA foreign_keys = ON')
    this.db.exec('PRAGMA busy_timeout = 5000')
    for (let v = version; v < SCHEMA_VERSION; v++) {
      this.transaction(() => {
        this.db.exec(MIGRATIONS[v])
        this.db.exec(`PRAGMA user_version = ${v + 1}`)
      })
    }
  }

  close (): void {
    clearImmediate(this.marksTimer)
    if (this.db.isOpen) {
      try {
        this.writeMarks()
      } finally {
        this.db.close()
      }
    }
    this.wal?.then(async handle => { await handle.close() }).catch(() => {})
    this.wal = undefined
  }

  /** The write-ahead log, opened for `sync`. */
  private wal?: Promise<FileHandle>

  /**
   * Makes every commit so far durable, as a commit with `durable: true` is,
   * without blocking the event loop: an fdatasync of the write-ahead log on
   * libuv's thread pool. A commit in WAL mode is the WAL's frames, written
   * (not synced) at COMMIT; with synchronous=FULL SQLite syncs the WAL right
   * then, which is all this does later. Frames a checkpoint already copied
   * to the database file are on disk: a checkpoint syncs the file. So a
   * caller may commit with `durable: false`, do something else meanwhile
   * (put the message on the wire), and await this before saying the write
   * is durable.
   */
  async sync (): Promise<void> {
    if (this.file == null || !this.db.isOpen) return
    if (this.wal == null) {
      const opening = this.wal = open(`${this.file}-wal`, 'r')
      // tried again next time: the WAL exists once anything was written
      opening.catch(() => { if (this.wal === opening) this.wal = undefined })
    }
    await (await this.wal).datasync()
  }

  private sql (text: string): StatementSync {
    // outside a transaction (one takes them as it begins): what is read or written next sees them
    if (this.marks.length > 0 && this.depth === 0) this.writeMarks()
    return this.statements.get(text)
  }

  /** Writes the delivered marks waiting (see `marks`), in a transaction of their own or the one under way. */
  private writeMarks (): void {
    if (this.marks.length === 0) return
    if (this.depth === 0) {
      this.transaction(() => {}, { durable: false })
      return
    }
    const marks = this.marks
    this.marks = []
    this.marksWritten.push(...marks)
    for (const { id, path, at } of marks) this.writeDelivered(id, path, at)
  }

  /**
   * Runs `fn` in one write transaction; a call made inside another transaction
   * joins it, so that several writes share one commit (and one fsync).
   * `durable: false` commits without waiting for the disk (synchronous=NORMAL):
   * a crash of the process loses nothing, a power loss may lose that commit,
   * never corrupts the store, and the next durable commit makes it durable too.
   */
  transaction<T> (fn: () => T, options: { durable?: boolean } = {}): T {
    if (this.depth > 0) return fn()
    // a store in memory has no disk to wait for either way
    const relaxed = options.durable === false && this.file != null
    const position = this.position
    let result: T
    if (relaxed) this.db.exec('PRAGMA synchronous = NORMAL')
    try {
      // prepared, as every statement a message runs: parsing them again for each costs more than running them
      // (not through `sql`: the marks waiting are written inside, below)
      this.statements.get('BEGIN IMMEDIATE').run()
      this.depth++
      try {
        // delivered marks waiting go in this commit (see `marks`)
        this.writeMarks()
        result = fn()
        this.sql('COMMIT').run()
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK')
        this.position = position
        this.committed = []
        this.forgetState()
        this.marks.unshift(...this.marksWritten)
        throw err
      } finally {
        this.depth--
        this.marksWritten = []
      }
    } finally {
      // FULL: a message is on disk before its ack leaves, even across a power loss
      if (relaxed) this.db.exec('PRAGMA synchronous = FULL')
    }
    const then = this.committed
    if (then.length > 0) {
      this.committed = []
      for (const fn of then) fn()
    }
    return result
  }

  /**
   * Runs `fn` once the transaction under way commits, outside it; at once
   * when none is. A rollback drops it. It must not throw.
   */
  afterCommit (fn: () => void): void {
    if (this.depth === 0) fn()
    else this.committed.push(fn)
  }

  /** Runs `fn` in a savepoint of the open transaction: if it throws, only its own writes are undone. */
  private savepoint<T> (fn: () => T): T {
    const position = this.position
    const waiting = this.committed.length
    this.db.exec('SAVEPOINT step')
    try {
      const result = fn()
      this.db.exec('RELEASE step')
      return result
    } catch (err) {
      this.db.exec('ROLLBACK TO step')
      this.db.exec('RELEASE step')
      this.forgetState()
      this.position = position
      this.committed.length = waiting
      throw err
    }
  }

  /** History order: messages take the next position when sent or when presented. */
  private nextPosition (): number {
    return ++this.position
  }

  /** Where the conversation's inbound side stands: read once, then kept as this store writes it (see `inbound`). */
  private inboundState (peer: string): InboundState {
    const known = this.inbound.get(peer)
    if (known != null) return known
    const row = this.sql('SELECT next_in_seq, gap_since, held, (SELECT count(*) FROM refused_seqs WHERE peer = ?1) AS refused FROM conversations WHERE peer = ?1').get(peer) as Row | undefined
    if (row == null) this.sql('INSERT INTO conversations (peer) VALUES (?)').run(peer)
    const state: InboundState = row == null
      ? { nextInSeq: 1, held: 0, refused: 0 }
      : { nextInSeq: row.next_in_seq, gapSince: row.gap_since ?? undefined, held: row.held, refused: row.refused }
    keep(this.inbound, peer, state)
    return state
  }

  /** A write was undone: what is kept of the conversations' rows is read again as it is needed. */
  private forgetState (): void {
    this.inbound.clear()
    this.nextOutSeqs.clear()
  }

  /** The conversation's inbound side moved as this store just wrote it. */
  private moved (peer: string, change: Partial<InboundState>): void {
    const state = this.inbound.get(peer)
    if (state != null) Object.assign(state, change)
  }

  // ---- outbound ----

  /**
   * Writes a new outbound message and its outbox entry, giving it the
   * conversation's next seq. `durable: false` commits without waiting for the
   * disk (see `transaction`); `sync` then makes it durable. Returns the
   * entry as `due` would read it.
   *
   * `beforeCommit` is given the entry before the transaction commits (the
   * commit's writes, and its fsync if durable, come after it): what must not
   * wait for them, the message's frame put on the wire. When this store
   * knows the conversation's next seq (it gave the one before), before even
   * its rows are written; else once they are. Either way a crash before the
   * commit loses the rows and not the frame, and a write that fails throws
   * after it. It must not throw: the rows are written whatever it does.
   * Inside another transaction, which may yet be rolled back, it is not called.
   */
  enqueue (message: NewOutbound, options: { durable?: boolean, beforeCommit?: (entry: OutboxEntry) => void } = {}): OutboxEntry {
    let beforeCommit = this.depth === 0 ? options.beforeCommit : undefined
    const seq = beforeCommit == null ? undefined : this.nextOutSeqs.get(message.peer)
    // set again as this one is written (and forgotten if that is undone)
    this.nextOutSeqs.delete(message.peer)
    if (seq != null && beforeCommit != null) {
      beforeCommit(newOutboxEntry(outboundRow(message, seq)))
      beforeCommit = undefined
    }
    return this.transaction(() => {
      // a group carrier takes no place in the history: no position
      const position = message.group == null ? this.nextPosition() : null
      // the seq taken and the conversation moved on in one statement; a user who
      // writes has read what came before: the read mark moves up to the new message
      const take = (): Row | undefined => (position == null
        ? this.sql('UPDATE conversations SET next_out_seq = next_out_seq + 1 WHERE peer = ? RETURNING next_out_seq - 1 AS seq').get(message.peer)
        : this.sql('UPDATE conversations SET next_out_seq = next_out_seq + 1, read_position = ?1, last_position = ?1 WHERE peer = ?2 RETURNING next_out_seq - 1 AS seq').get(position, message.peer)) as Row | undefined
      let taken = take()
      if (taken == null) {
        // a new conversation: its row first
        this.sql('INSERT INTO conversations (peer) VALUES (?)').run(message.peer)
        taken = take() as Row
      }
      // what the frame already said, if it went
      if (seq != null && taken.seq !== seq) throw new StoreError(`the conversation with ${message.peer} is at seq ${String(taken.seq)}, not ${seq}: the store was written by something else meanwhile`)
      const row = outboundRow(message, taken.seq)
      // in the outbox: due at once
      this.sql(`INSERT INTO messages (id, peer, direction, seq, body, content_type, reply_to, sent_at, created_at, status, position, group_payload, next_attempt_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(row.id, row.peer, row.direction, row.seq, row.body, row.content_type, row.reply_to, row.sent_at, row.created_at, row.status, position, row.group_payload, row.sent_at)
      const entry = newOutboxEntry(row)
      // forgotten if this transaction, or the one it joins, is undone
      keep(this.nextOutSeqs, message.peer, row.seq + 1)
      beforeCommit?.(entry)
      return entry
    }, options)
  }

  private getOutbound (id: string): StoredMessage | undefined {
    const row = this.sql("SELECT * FROM messages WHERE id = ? AND direction = 'out'").get(id) as Row | undefined
    return row == null ? undefined : toMessage(row)
  }

  /** Outbox entries of `peer` due at `now`, in seq order (only those after seq `after`, if given). */
  due (peer: string, now: number, limit = 256, after = 0): OutboxEntry[] {
    // called for every batch a sender puts on the wire: rows as arrays (see `named`), read once
    const statement = this.sql(`SELECT ${ENTRY_SELECT} FROM messages INDEXED BY messages_outbox
      WHERE peer = ? AND next_attempt_at IS NOT NULL AND seq > ? AND next_attempt_at <= ? ORDER BY seq LIMIT ?`)
    statement.setReturnArrays(true)
    return (statement.all(peer, after, now, limit) as unknown as unknown[][]).map(values => toOutboxEntry(named(ENTRY_COLUMNS, values, { peer, ...OUTBOX_ROW })))
  }

  /** Each peer with queued messages and when its earliest one is due. */
  outboxPeers (): Array<{ peer: string, nextAttemptAt: number }> {
    return (this.sql('SELECT peer, min(next_attempt_at) AS next FROM messages INDEXED BY messages_outbox WHERE next_attempt_at IS NOT NULL GROUP BY peer').all() as Row[])
      .map(r => ({ peer: r.peer, nextAttemptAt: r.next }))
  }

  /** When the earliest outbox entry of `peer` is due, if it has any. */
  nextAttempt (peer: string): number | undefined {
    return (this.sql('SELECT min(next_attempt_at) AS next FROM messages INDEXED BY messages_outbox WHERE peer = ? AND next_attempt_at IS NOT NULL').get(peer) as Row).next ?? undefined
  }

  /**
   * Each peer with queued messages, when its earliest one is due, and when the
   * oldest was written (from which the outbox tells when it expires).
   */
  outboxSchedule (): Array<{ peer: string, nextAttemptAt: number, oldestAt: number }> {
    // on the outbox's index, whatever the planner guesses, so that the cost
    // follows the outbox's size and not the history's
    return (this.sql(`SELECT peer, min(next_attempt_at) AS next, min(created_at) AS oldest FROM messages INDEXED BY messages_outbox
      WHERE next_attempt_at IS NOT NULL GROUP BY peer`).all() as Row[])
      .map(r => ({ peer: r.peer, nextAttemptAt: r.next, oldestAt: r.oldest }))
  }

  /**
   * When the earliest outbox entry of `peer` is due and when its oldest was
   * written, if it has any. The oldest is the first in seq order (seqs are
   * given as messages are written): one index lookup, not a scan.
   */
  outboxScheduleOf (peer: string): { nextAttemptAt: number, oldestAt: number } | undefined {
    const row = this.sql(`SELECT (SELECT min(next_attempt_at) FROM messages INDEXED BY messages_outbox WHERE peer = ?1 AND next_attempt_at IS NOT NULL) AS next,
      (SELECT created_at FROM messages INDEXED BY messages_outbox WHERE peer = ?1 AND next_attempt_at IS NOT NULL ORDER BY seq LIMIT 1) AS oldest`).get(peer) as Row
    return row.next == null ? undefined : { nextAttemptAt: row.next, oldestAt: row.oldest }
  }

  /** Outbox entries of `peer` written at or before `writtenBy`, due or not, in seq order (the expiry sweep). */
  writtenBy (peer: string, writtenBy: number): OutboxEntry[] {
    return (this.sql(`SELECT peer, direction, request, ${ENTRY_SELECT} FROM messages INDEXED BY messages_outbox
      WHERE peer = ? AND next_attempt_at IS NOT NULL AND created_at <= ? ORDER BY seq`).all(peer, writtenBy) as Row[]).map(row => toOutboxEntry(row))
  }

  /** One outbox entry by message id, if it is still in the outbox. */
  outboxEntry (id: string): OutboxEntry | undefined {
    const row = this.sql(`SELECT peer, direction, request, ${ENTRY_SELECT} FROM messages
      WHERE id = ? AND direction = 'out' AND next_attempt_at IS NOT NULL`).get(id) as Row | undefined
    return row == null ? undefined : toOutboxEntry(row)
  }

  /** How many messages wait in the outbox. */
  outboxSize (): number {
    return (this.sql('SELECT count(*) AS n FROM messages INDEXED BY messages_outbox WHERE next_attempt_at IS NOT NULL').get() as Row).n
  }

  /** Everything not yet delivered or failed, oldest first. */
  outbox (): OutboxEntry[] {
    // on the outbox's index, not the whole history (see outboxSchedule)
    return (this.sql(`SELECT peer, direction, request, ${ENTRY_SELECT} FROM messages INDEXED BY messages_outbox
      WHERE next_attempt_at IS NOT NULL ORDER BY created_at, seq`).all() as Row[]).map(row => toOutboxEntry(row))
  }

  /**
   * Writes what became of outbound messages, all in one transaction (one
   * commit; `durable` as `transaction` takes it). A recipient's wait is
   * written last, so that the messages retried in the same batch wait too.
   *
   * `defer`: writes that are only delivered marks, and need not be durable,
   * are written with the next transaction instead (see `marks`): the next
   * message queued writes them in its own commit once its frame has left,
   * rather than a commit of their own between an ack and the next send.
   * A crash before they are written loses them, as a power cut loses a mark
   * written with `durable: false`: the message goes once more after the
   * restart and comes back DUPLICATE, then delivered.
   */
  record (writes: OutboxWrites, options: { durable?: boolean, defer?: boolean } = {}): void {
    const onlyDelivered = writes.failed.length === 0 && writes.retried.length === 0 && writes.deferred == null &&
      (writes.stored ?? []).length === 0 && (writes.unstored ?? []).length === 0
    if (options.defer === true && options.durable === false && onlyDelivered && this.depth === 0) {
      for (const { id, path } of writes.delivered) this.marks.push({ id, path, at: writes.at })
      this.marksTimer ??= setImmediate(() => {
        this.marksTimer = undefined
        if (this.db.isOpen) this.writeMarks()
      })
      return
    }
    this.transaction(() => {
      for (const { id, path } of writes.delivered) this.writeDelivered(id, path, writes.at)
      for (const { id, reason } of writes.failed) this.writeFailed(id, reason)
      for (const { id, at, reason } of writes.retried) this.writeRetried(id, at, reason)
      const deferred = writes.deferred
      if (deferred != null) {
        this.sql('UPDATE messages INDEXED BY messages_outbox SET next_attempt_at = max(next_attempt_at, ?), last_error = ? WHERE peer = ? AND next_attempt_at IS NOT NULL').run(deferred.until, deferred.reason, deferred.peer)
      }
      for (const { id, until } of writes.stored ?? []) this.writeStored(id, until)
      for (const id of writes.unstored ?? []) this.writeUnstored(id)
    }, options)
  }

  /**
   * Outbox entries of `peer` that no mailbox holds, or whose deposit ends
   * before `before`, in seq order: what a deposit round seals and leaves.
   */
  undeposited (peer: string, before: number, limit = 256): OutboxEntry[] {
    return (this.sql(`SELECT peer, direction, request, ${ENTRY_SELECT} FROM messages INDEXED BY messages_outbox
      WHERE peer = ? AND next_attempt_at IS NOT NULL AND (stored_until IS NULL OR stored_until < ?) ORDER BY seq LIMIT ?`).all(peer, before, limit) as Row[]).map(row => toOutboxEntry(row))
  }

  /** An outbound message to `peer` by id, in the outbox or not (a mailbox receipt names it). */
  outbound (peer: string, id: string): StoredMessage | undefined {
    const row = this.sql("SELECT * FROM messages WHERE peer = ? AND direction = 'out' AND id = ?").get(peer, id) as Row | undefined
    return row == null ? undefined : toMessage(row)
  }

  // ---- mailbox records of other peers ----

  /** The signed mailbox record last verified for `peer`, if any. */
  mailboxRecord (peer: string): { record: Uint8Array, seq: number, updatedAt: number } | undefined {
    const row = this.sql('SELECT record, seq, updated_at FROM mailbox_records WHERE peer = ?').get(peer) as Row | undefined
    return row == null ? undefined : { record: new Uint8Array(row.record), seq: row.seq, updatedAt: row.updated_at }
  }

  /** Keeps a verified mailbox record of `peer`, unless the one kept is as new or newer. Whether it was kept. */
  saveMailboxRecord (peer: string, record: Uint8Array, seq: number, at: number): boolean {
    const result = this.sql(`INSERT INTO mailbox_records (peer, record, seq, updated_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (peer) DO UPDATE SET record = excluded.record, seq = excluded.seq, updated_at = excluded.updated_at
      WHERE excluded.seq > mailbox_records.seq`).run(peer, record, seq, at)
    return Number(result.changes) > 0
  }

  /** The message was acknowledged (OK or DUPLICATE): out of the outbox for good. The message as it now is. */
  markDelivered (id: string, path: MessagePath, at: number): StoredMessage | undefined {
    return this.transaction(() => {
      this.writeDelivered(id, path, at)
      return this.getOutbound(id)
    })
  }

  /** Permanent failure (the recipient refused it): out of the outbox, with the reason. The message as it now is. */
  markFailed (id: string, reason: string): StoredMessage | undefined {
    return this.transaction(() => {
      this.writeFailed(id, reason)
      return this.getOutbound(id)
    })
  }

  /** Not delivered this time: one more attempt counted, and the next one at `nextAttemptAt`. */
  reschedule (ids: readonly string[], nextAttemptAt: number, error: string): void {
    this.transaction(() => {
      for (const id of ids) this.writeRetried(id, nextAttemptAt, error)
    })
  }

  /** Makes every queued message of these peers due now (a connection opened). */
  retryNow (peers: readonly string[], now: number): void {
    this.transaction(() => {
      for (const peer of peers) this.sql('UPDATE messages INDEXED BY messages_outbox SET next_attempt_at = ?1 WHERE peer = ?2 AND next_attempt_at IS NOT NULL AND next_attempt_at > ?1').run(now, peer)
    })
  }

  // Each of these is one statement on the message's row: a message leaves the
  // outbox when its next attempt is cleared.

  private writeStored (id: string, until: number): void {
    // a message delivered (or failed) meanwhile keeps that status, out of the outbox
    this.sql(`UPDATE messages SET stored_until = ?,
        status = CASE WHEN status IN ('queued', 'stored') THEN 'stored' ELSE status END,
        path = CASE WHEN status IN ('queued', 'stored') THEN 'mailbox' ELSE path END
      WHERE id = ? AND direction = 'out' AND next_attempt_at IS NOT NULL`).run(until, id)
  }

  private writeUnstored (id: string): void {
    this.sql(`UPDATE messages SET stored_until = NULL,
        path = CASE WHEN status = 'stored' THEN NULL ELSE path END,
        status = CASE WHEN status = 'stored' THEN 'queued' ELSE status END
      WHERE id = ? AND direction = 'out' AND next_attempt_at IS NOT NULL`).run(id)
  }

  private writeDelivered (id: string, path: MessagePath, at: number): void {
    this.sql("UPDATE messages SET status = 'delivered', path = ?, received_at = ?, reason = NULL, next_attempt_at = NULL, stored_until = NULL WHERE id = ? AND direction = 'out'").run(path, at, id)
  }

  private writeFailed (id: string, reason: string): void {
    this.sql("UPDATE messages SET status = 'failed', reason = ?, next_attempt_at = NULL, stored_until = NULL WHERE id = ? AND direction = 'out'").run(reason, id)
  }

  private writeRetried (id: string, at: number, reason: string): void {
    this.sql("UPDATE messages SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ? AND direction = 'out' AND next_attempt_at IS NOT NULL").run(at, reason, id)
  }

  // ---- inbound ----

  /**
   * Stores an inbound message unless this (sender, id) is stored already, and
   * returns the messages of the conversation that are now presentable, in seq
   * order (the new one, possibly with held ones after it, or nothing while an
   * earlier seq is missing).
   */
  receive (message: NewInbound, maxHeld?: number): ReceiveResult {
    return this.transaction(() => this.receiveOne(message, maxHeld))
  }

  /**
   * Stores a batch of inbound messages and refused seqs in one transaction, so
   * one fsync makes the whole batch durable (group commit). Each step is done
   * as `receive` / `refuseSeq` would, in order; a step that fails is undone
   * alone and its entry is the error. Throws (nothing written) if the commit fails.
   */
  inboundBatch (steps: InboundStep[]): Array<ReceiveResult | StoredMessage[] | Error> {
    const run = (step: InboundStep): ReceiveResult | StoredMessage[] => step.kind === 'receive'
      ? this.receiveOne(step.message, step.maxHeld)
      : this.refuseOne(step.peer, step.seq, step.now)
    try {
      // no step fails, as a rule: all in one go
      return this.transaction(() => steps.map(run))
    } catch {
      // one did (or the commit): again, each step on its own savepoint, so that
      // only the failing ones are lost
      return this.transaction(() => steps.map(step => {
        try {
          return this.savepoint(() => run(step))
        } catch (err: any) {
          return err instanceof Error ? err : new Error(String(err))
        }
      }))
    }
  }

  private receiveOne (message: NewInbound, maxHeld = Infinity): ReceiveResult {
    const { order, lookup } = this.inboundOrder(message.peer)
    const arrival = ordering.arrival(order, message.seq, maxHeld, lookup)
    if (arrival.action === 'held-full') {
      // a copy of one stored already is a duplicate, whatever the limit
      const exists = this.sql("SELECT 1 FROM messages WHERE peer = ? AND direction = 'in' AND id = ?").get(message.peer, message.id)
      return { result: exists == null ? 'held-full' : 'duplicate', presented: [] }
    }
    const row = arrival.action === 'present'
      ? inboundRow(message, 'presented', this.position + 1)
      : inboundRow(message, 'held', null)
    // the dedup on (sender, id) is the insert's own: a copy stored already writes nothing
    const inserted = this.sql(`INSERT INTO messages (id, peer, direction, seq, body, content_type, reply_to, sent_at, received_at, created_at, status, path, position, request, group_payload)
      VALUES (?, ?, 'in', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
      .run(row.id, row.peer, row.seq, row.body, row.content_type, row.reply_to, row.sent_at, row.received_at, row.created_at, row.status, row.path, row.position, row.request, row.group_payload)
    if (inserted.changes === 0) {
      return { result: 'duplicate', presented: [] }
    }
    if (arrival.action === 'present') this.nextPosition()
    const presented = arrival.action === 'present' ? [toMessage(row)] : []
    if (arrival.action === 'hold') lookup.held++
    if (arrival.advance != null) {
      presented.push(...this.advance(message.peer, order, arrival.advance, message.receivedAt, lookup))
    } else if (arrival.action === 'hold') {
      this.sql('UPDATE conversations SET held = ? WHERE peer = ?').run(lookup.held, message.peer)
      this.moved(message.peer, { held: lookup.held })
    } else {
      // one that turned up after its gap was given up: shown, and the conversation stays where it is
      this.sql('UPDATE conversations SET last_position = ? WHERE peer = ?').run(this.position, message.peer)
    }
    return { result: 'stored', presented }
  }

  /** A refused inbound message still fills its seq (spec section 6). */
  refuseSeq (peer: string, seq: number, now: number): StoredMessage[] {
    return this.transaction(() => this.refuseOne(peer, seq, now))
  }

  private refuseOne (peer: string, seq: number, now: number): StoredMessage[] {
    const { order, lookup } = this.inboundOrder(peer)
    const start = ordering.refusal(order, seq)
    if (start == null) return []
    if (this.sql('INSERT OR IGNORE INTO refused_seqs (peer, seq) VALUES (?, ?)').run(peer, seq).changes > 0) lookup.refused++
    return this.advance(peer, order, start, now, lookup)
  }

  /** Where the conversation's inbound side stands, and its held messages and refused seqs for the ordering rules. */
  private inboundOrder (peer: string): { order: ordering.InboundOrder, lookup: HeldLookup } {
    const { nextInSeq, gapSince, held, refused } = this.inboundState(peer)
    return { order: { next: nextInSeq, gapSince }, lookup: this.orderLookup(peer, held, refused) }
  }

  /**
   * The conversation's held messages (looked up on the `messages_held`
   * index) and refused seqs, for the ordering rules. `held` starts as the
   * conversation's count and follows what is taken: the caller writes it
   * back. The count, not the rows, says whether any is held: counting them,
   * or even looking for one, is a lookup more for every message held. So
   * for the refused seqs (`refused`, written back the same way).
   */
  private orderLookup (peer: string, held: number, refused: number): HeldLookup {
    const lookup: HeldLookup = {
      held,
      refused,
      heldCount: () => lookup.held,
      takeHeld: (seq) => {
        if (lookup.held <= 0) return []
        const rows = this.sql("SELECT * FROM messages INDEXED BY messages_held WHERE peer = ? AND direction = 'in' AND status = 'held' AND seq = ?").all(peer, seq) as Row[]
        for (const row of rows) this.present(peer, row.id)
        lookup.held -= rows.length
        return rows.map(row => toMessage({ ...row, status: 'presented' }))
      },
      anyHeld: () => lookup.held > 0,
      takeRefused: (seq) => {
        if (lookup.refused <= 0) return false
        const taken = this.sql('DELETE FROM refused_seqs WHERE peer = ? AND seq = ?').run(peer, seq).changes > 0
        if (taken) lookup.refused--
        return taken
      }
    }
    return lookup
  }

  /** Presents a held message (the caller moves the conversation's count of held ones). */
  private present (peer: string, id: string): void {
    // a group carrier takes no place in the history
    this.sql("UPDATE messages SET status = 'presented', position = CASE WHEN group_payload IS NULL THEN ? END WHERE peer = ? AND direction = 'in' AND id = ?").run(this.nextPosition(), peer, id)
  }

  /**
   * Moves the conversation on as the ordering rules say (see `ordering.advance`)
   * and records where it then stands, with the history's end as the messages
   * presented on the way left it (see `position`), in one write.
   */
  private advance (peer: string, order: ordering.InboundOrder, start: ordering.AdvanceStart, now: number, lookup: HeldLookup): StoredMessage[] {
    const { presented, order: after } = ordering.advance(order, start, now, lookup)
    this.sql('UPDATE conversations SET next_in_seq = ?, gap_since = ?, held = ?, last_position = ? WHERE peer = ?').run(after.next, after.gapSince ?? null, lookup.held, this.position, peer)
    this.moved(peer, { nextInSeq: after.next, gapSince: after.gapSince, held: lookup.held, refused: lookup.refused })
    return presented
  }

  /**
   * Gives up gaps older than `timeout` ms: their held messages are presented in
   * seq order and the conversation continues after the highest of them. At
   * most `limit` messages a call (they are read into memory to be shown): a
   * conversation with more keeps its gap open, moved past what was presented,
   * and the next call goes on with it; `more` says whether anything is left.
   */
  releaseGaps (now: number, timeout: number, limit = 256): { presented: StoredMessage[], more: boolean } {
    return this.transaction(() => {
      const expired = (this.sql('SELECT peer, next_in_seq, gap_since FROM conversations WHERE gap_since IS NOT NULL AND gap_since <= ? ORDER BY gap_since')
        .all(ordering.gapCutoff(now, timeout)) as Row[]).map(r => ({ peer: r.peer as string, order: { next: r.next_in_seq, gapSince: r.gap_since } }))
      const { releases, more } = ordering.releaseExpired(expired, limit, (peer, atMost) =>
        (this.sql(`SELECT * FROM messages INDEXED BY messages_held WHERE peer = ? AND direction = 'in' AND status = 'held'
          ORDER BY seq LIMIT ?`).all(peer, atMost) as Row[]).map(row => toMessage({ ...row, status: 'presented' })))
      const presented: StoredMessage[] = []
      for (const release of releases) {
        for (const m of release.presented) this.present(release.peer, m.id)
        if (release.closed) this.sql('DELETE FROM refused_seqs WHERE peer = ?').run(release.peer)
        else this.sql('DELETE FROM refused_seqs WHERE peer = ? AND seq <= ?').run(release.peer, release.forgetRefusedThrough)
        this.sql('UPDATE conversations SET next_in_seq = ?, gap_since = ?, held = held - ?, last_position = ? WHERE peer = ?')
          .run(release.order.next, release.order.gapSince ?? null, release.presented.length, this.position, release.peer)
        presented.push(...release.presented)
        // its held messages and refused seqs changed here: read again next time
        this.inbound.delete(release.peer)
      }
      return { presented, more }
    })
  }

  /** When the oldest open gap expires (its `gap_since`), if any. */
  oldestGap (): number | undefined {
    const row = this.sql('SELECT min(gap_since) AS since FROM conversations WHERE gap_since IS NOT NULL').get() as Row
    return row.since ?? undefined
  }

  // ---- queries ----

  /**
   * The conversation with `peer`, oldest first: the `limit` newest messages
   * created before `before` (ms) and placed before `beforePosition` in the
   * history. A position bound is read from the index where it starts, so a
   * page far back costs what the first does; a time bound alone is filtered
   * row by row from the newest.
   */
  history (peer: string, options: { limit?: number, before?: number, beforePosition?: number } = {}): StoredMessage[] {
    const rows = this.sql(`SELECT * FROM messages WHERE peer = ? AND position < ? AND created_at < ?
      ORDER BY position DESC LIMIT ?`).all(peer, options.beforePosition ?? Number.MAX_SAFE_INTEGER, options.before ?? Number.MAX_SAFE_INTEGER, options.limit ?? 100) as Row[]
    return rows.map(row => toMessage(row)).reverse()
  }

  /** A message by id, outbound first (ids are unique per sender). */
  getMessage (id: string): StoredMessage | undefined {
    const row = this.sql("SELECT * FROM messages WHERE id = ? ORDER BY direction = 'out' DESC LIMIT 1").get(id) as Row | undefined
    return row == null ? undefined : toMessage(row)
  }

  // ---- conversations and read marks ----

  /**
   * Every conversation with a message in its history, the latest activity
   * first: its last message (body cut to `PREVIEW_CHARS` + 1 characters, so
   * that the caller can tell it was cut), the contact naming its peer (the
   * first by name), and how many inbound messages came after the read mark,
   * message requests not counted. Each conversation costs a few index
   * lookups (see the query-plan test), its unread messages aside: never a
   * pass over its whole history.
   */
  conversations (): ConversationRow[] {
    const rows = this.sql(`SELECT m.peer, m.id, m.direction, substr(m.body, 1, ${PREVIEW_CHARS + 1}) AS body, m.content_type, m.created_at, m.status,
        m.path, m.reason, m.seq, m.sent_at, m.received_at, m.request, m.position, c.read_position,
        (SELECT name FROM contacts WHERE contacts.peer = c.peer ORDER BY name LIMIT 1) AS contact_name,
        (SELECT count(*) FROM messages u INDEXED BY messages_by_position
          WHERE u.peer = c.peer AND u.position > c.read_position AND u.direction = 'in' AND u.request = 0) AS unread,
        EXISTS (SELECT 1 FROM messages r INDEXED BY messages_requests WHERE r.request = 1 AND r.peer = c.peer) AS is_request
      FROM conversations c
      -- CROSS JOIN: conversations outside, each one's last message looked up, never the other way round
      CROSS JOIN messages m INDEXED BY messages_by_position
      WHERE m.peer = c.peer AND m.position = (SELECT max(position) FROM messages x INDEXED BY messages_by_position WHERE x.peer = c.peer AND x.position IS NOT NULL)
      ORDER BY m.position DESC`).all() as Row[]
    return rows.map(r => ({
      last: toMessage(r),
      name: r.contact_name ?? undefined,
      unread: r.unread,
      request: r.is_request === 1
    }))
  }

  /** The history position of a message of the conversation with `peer`, if it has a place there. */
  positionOf (peer: string, id: string): number | undefined {
    const row = this.sql('SELECT position FROM messages INDEXED BY messages_by_id WHERE id = ? AND peer = ? AND position IS NOT NULL ORDER BY direction LIMIT 1').get(id, peer) as Row | undefined
    return row?.position ?? undefined
  }

  /**
   * Moves the conversation's read mark up to `position` (default: its last
   * message); never back. The inbound messages still unread after it.
   */
  markRead (peer: string, position?: number): number {
    return this.transaction(() => {
      const upTo = position ?? (this.sql('SELECT max(position) AS p FROM messages WHERE peer = ? AND position IS NOT NULL').get(peer) as Row).p ?? 0
      this.sql('UPDATE conversations SET read_position = max(read_position, ?) WHERE peer = ?').run(upTo, peer)
      return this.unread(peer)
    })
  }

  /** Inbound messages of the conversation after its read mark, message requests not counted. */
  unread (peer: string): number {
    const row = this.sql(`SELECT count(*) AS n FROM conversations c JOIN messages u INDEXED BY messages_by_position
      ON u.peer = c.peer AND u.position > c.read_position WHERE c.peer = ? AND u.direction = 'in' AND u.request = 0`).get(peer) as Row
    return row.n
  }

  // ---- message requests and the block list ----

  /** Strangers with messages waiting for the user's decision, oldest request first. */
  requests (): RequestSummary[] {
    const rows = this.sql(`SELECT peer, count(*) AS n, sum(length(CAST(body AS BLOB))) AS bytes, min(created_at) AS first, max(created_at) AS last
      FROM messages WHERE request = 1 GROUP BY peer ORDER BY first`).all() as Row[]
    const preview = this.sql('SELECT body FROM messages WHERE request = 1 AND peer = ? ORDER BY created_at LIMIT 1')
    return rows.map(r => ({
      peer: r.peer,
      messages: r.n,
      bytes: r.bytes ?? 0,
      firstAt: r.first,
      lastAt: r.last,
      preview: ((preview.get(r.peer) as Row | undefined)?.body ?? '') as string
    }))
  }

  /** The peer's waiting messages are ordinary messages from now on; how many. */
  acceptRequests (peer: string): number {
    return this.sql('UPDATE messages SET request = 0 WHERE request = 1 AND peer = ?').run(peer).changes as number
  }

  /** Deletes the peer's waiting messages (declined or blocked); how many. */
  deleteRequests (peer: string): number {
    return this.transaction(() => {
      const deleted = this.sql("DELETE FROM messages WHERE request = 1 AND peer = ? AND direction = 'in'").run(peer).changes as number
      this.sql('DELETE FROM refused_seqs WHERE peer = ?').run(peer)
      // some of them may have been held: counted again, on the index (a stranger's are few: the policy bounds them)
      this.sql(`UPDATE conversations SET held = (SELECT count(*) FROM messages INDEXED BY messages_held
        WHERE peer = ?1 AND direction = 'in' AND status = 'held') WHERE peer = ?1`).run(peer)
      this.inbound.delete(peer)
      return deleted
    })
  }

  /** `accepted` or `blocked` for a peer; `undefined` forgets it. */
  setPeerState (peer: string, state: PeerState | undefined, now: number): boolean {
    if (state == null) return this.sql('DELETE FROM peer_states WHERE peer = ?').run(peer).changes > 0
    this.sql('INSERT INTO peer_states (peer, state, since) VALUES (?, ?, ?) ON CONFLICT (peer) DO UPDATE SET state = excluded.state, since = excluded.since')
      .run(peer, state, now)
    return true
  }

  peerState (peer: string): PeerState | undefined {
    return (this.sql('SELECT state FROM peer_states WHERE peer = ?').get(peer) as Row | undefined)?.state
  }

  peerStates (): Array<{ peer: string, state: PeerState, since: number }> {
    return (this.sql('SELECT peer, state, since FROM peer_states ORDER BY since').all() as Row[])
      .map(r => ({ peer: r.peer, state: r.state, since: r.since }))
  }

  /** Bytes the database's pages hold (free pages not counted: they are reused before the file grows). */
  usedBytes (): number {
    const pages = (this.sql('PRAGMA page_count').get() as Row).page_count as number
    const free = (this.sql('PRAGMA freelist_count').get() as Row).freelist_count as number
    const size = (this.sql('PRAGMA page_size').get() as Row).page_size as number
    return (pages - free) * size
  }

  // ---- contacts ----

  addContact (contact: Contact): void {
    this.sql('INSERT INTO contacts (name, peer, addrs, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET peer = excluded.peer, addrs = excluded.addrs')
      .run(contact.name, contact.peer, JSON.stringify(contact.addrs), contact.createdAt)
  }

  /** Renames a contact; false when no contact has `from` (the caller checks `to` is free: it is the primary key). */
  renameContact (from: string, to: string): boolean {
    return this.sql('UPDATE contacts SET name = ? WHERE name = ?').run(to, from).changes > 0
  }

  removeContact (name: string): boolean {
    return this.sql('DELETE FROM contacts WHERE name = ?').run(name).changes > 0
  }

  contacts (): Contact[] {
    return (this.sql('SELECT * FROM contacts ORDER BY name').all() as Row[])
      .map(r => ({ name: r.name, peer: r.peer, addrs: JSON.parse(r.addrs), createdAt: r.created_at }))
  }

  /** The contacts naming `peer`. */
  contactsOf (peer: string): Contact[] {
    return (this.sql('SELECT * FROM contacts WHERE peer = ? ORDER BY name').all(peer) as Row[])
      .map(r => ({ name: r.name, peer: r.peer, addrs: JSON.parse(r.addrs), createdAt: r.created_at }))
  }

  contact (name: string): Contact | undefined {
    const r = this.sql('SELECT * FROM contacts WHERE name = ?').get(name) as Row | undefined
    return r == null ? undefined : { name: r.name, peer: r.peer, addrs: JSON.parse(r.addrs), createdAt: r.created_at }
  }

  // ---- files (their SQL in ./files.ts) ----

  private fileRows?: FileRows

  /** The offers made and received, and their transfers. */
  get files (): FileRows {
    this.fileRows ??= new FileRows(this.db)
    return this.fileRows
  }
}
