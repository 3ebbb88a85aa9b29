import { existsSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js'
import type { StatementSync } from 'node:sqlite'

/** The database cannot be used: corrupt, from a newer parley, or not a parley store. */
export class StoreError extends Error {
  static override name = 'StoreError'
  override name = 'StoreError'
}

export type Direction = 'in' | 'out'
export type OutStatus = 'queued' | 'sending' | 'delivered' | 'failed'
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
  status: OutStatus | InStatus
  path?: 'direct' | 'relayed'
  reason?: string
  /** Inbound from a stranger, waiting for the user to accept the request. */
  request: boolean
}

/** A message waiting in the outbox, with its retry state. */
export interface OutboxEntry extends StoredMessage {
  attempts: number
  nextAttemptAt: number
  lastError?: string
}

export interface NewOutbound {
  peer: string
  id: string
  body: string
  contentType: string
  replyTo?: string
  sentAt: number
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
  path: 'direct' | 'relayed'
  /** From a stranger: kept as a message request. @default false */
  request?: boolean
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

/** Seqs ahead of the next expected one that a refused message may fill; beyond, it is not recorded (the gap is given up in time). */
export const REFUSED_SEQ_WINDOW = 1024

export interface Contact {
  name: string
  peer: string
  addrs: string[]
  createdAt: number
}

type Row = Record<string, any>

function toMessage (row: Row, sending?: ReadonlySet<string>): StoredMessage {
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
    // 'sending' lives in memory only (see Store.markSending)
    status: row.status === 'queued' && row.direction === 'out' && sending?.has(row.id) === true ? 'sending' : row.status,
    path: row.path ?? undefined,
    reason: row.reason ?? undefined,
    request: row.request === 1
  }
}

function toOutboxEntry (row: Row, sending?: ReadonlySet<string>): OutboxEntry {
  return {
    ...toMessage(row, sending),
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error ?? undefined
  }
}

/** An inbound message as `history` will show it once presented, without reading it back. */
function inboundAsPresented (message: NewInbound): StoredMessage {
  return {
    id: message.id,
    peer: message.peer,
    direction: 'in',
    seq: message.seq,
    body: message.body,
    contentType: message.contentType,
    replyTo: message.replyTo,
    sentAt: message.sentAt,
    receivedAt: message.receivedAt,
    createdAt: message.receivedAt,
    status: 'presented',
    path: message.path,
    reason: undefined,
    request: message.request === true
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
  private readonly statements = new Map<string, StatementSync>()
  /**
   * The last history position handed out. Kept here rather than read with
   * max(position) for every message, which scans the whole index (no index
   * leads with position) and made each write slower as history grew.
   */
  private position = 0
  /** Transactions open: calls inside a transaction join it. */
  private depth = 0
  /** Outbound messages on the wire now (see `markSending`). */
  private readonly sending = new Set<string>()

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
    } catch (err: any) {
      throw new StoreError(`cannot open the message store ${location}: ${err.message}`)
    }
    try {
      this.migrate(existed)
      this.position = (this.db.prepare('SELECT max(position) AS p FROM messages').get() as Row).p ?? 0
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
    if (this.db.isOpen) this.db.close()
  }

  private sql (text: string): StatementSync {
    let statement = this.statements.get(text)
    if (statement == null) {
      statement = this.db.prepare(text)
      this.statements.set(text, statement)
    }
    return statement
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
    const durable = options.durable ?? true
    const position = this.position
    if (!durable) this.db.exec('PRAGMA synchronous = NORMAL')
    try {
      this.db.exec('BEGIN IMMEDIATE')
      this.depth++
      try {
        const result = fn()
        this.db.exec('COMMIT')
        return result
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK')
        this.position = position
        throw err
      } finally {
        this.depth--
      }
    } finally {
      // FULL: a message is on disk before its ack leaves, even across a power loss
      if (!durable) this.db.exec('PRAGMA synchronous = FULL')
    }
  }

  /** Runs `fn` in a savepoint of the open transaction: if it throws, only its own writes are undone. */
  private savepoint<T> (fn: () => T): T {
    const position = this.position
    this.db.exec('SAVEPOINT step')
    try {
      const result = fn()
      this.db.exec('RELEASE step')
      return result
    } catch (err) {
      this.db.exec('ROLLBACK TO step')
      this.db.exec('RELEASE step')
      this.position = position
      throw err
    }
  }

  /** History order: messages take the next position when sent or when presented. */
  private nextPosition (): number {
    return ++this.position
  }

  private conversation (peer: string): { nextOutSeq: number, nextInSeq: number, gapSince?: number } {
    const row = this.sql('SELECT next_out_seq, next_in_seq, gap_since FROM conversations WHERE peer = ?').get(peer) as Row | undefined
    if (row == null) {
      this.sql('INSERT INTO conversations (peer) VALUES (?)').run(peer)
      return { nextOutSeq: 1, nextInSeq: 1 }
    }
    return { nextOutSeq: row.next_out_seq, nextInSeq: row.next_in_seq, gapSince: row.gap_since ?? undefined }
  }

  // ---- outbound ----

  /** Writes a new outbound message and its outbox entry, giving it the conversation's next seq. */
  enqueue (message: NewOutbound): StoredMessage {
    return this.transaction(() => {
      const seq = this.conversation(message.peer).nextOutSeq
      this.sql('UPDATE conversations SET next_out_seq = ? WHERE peer = ?').run(seq + 1, message.peer)
      this.sql(`INSERT INTO messages (id, peer, direction, seq, body, content_type, reply_to, sent_at, created_at, status, position)
        VALUES (?, ?, 'out', ?, ?, ?, ?, ?, ?, 'queued', ?)`)
        .run(message.id, message.peer, seq, message.body, message.contentType, message.replyTo ?? null, message.sentAt, message.sentAt, this.nextPosition())
      this.sql('INSERT INTO outbox (id, peer, seq, next_attempt_at) VALUES (?, ?, ?, ?)').run(message.id, message.peer, seq, message.sentAt)
      // the row as written, without reading it back
      return {
        id: message.id,
        peer: message.peer,
        direction: 'out' as const,
        seq,
        body: message.body,
        contentType: message.contentType,
        replyTo: message.replyTo,
        sentAt: message.sentAt,
        receivedAt: undefined,
        createdAt: message.sentAt,
        status: 'queued' as const,
        path: undefined,
        reason: undefined,
        request: false
      }
    })
  }

  private getOutbound (id: string): StoredMessage | undefined {
    const row = this.sql("SELECT * FROM messages WHERE id = ? AND direction = 'out'").get(id) as Row | undefined
    return row == null ? undefined : toMessage(row, this.sending)
  }

  /** Outbox entries of `peer` due at `now`, in seq order (only those after seq `after`, if given). */
  due (peer: string, now: number, limit = 256, after = 0): OutboxEntry[] {
    // called for every batch a sender puts on the wire: rows as arrays (cheaper than objects), read once
    const statement = this.sql(`SELECT m.id, m.seq, m.body, m.content_type, m.reply_to, m.sent_at, m.received_at, m.created_at, m.status,
      m.path, m.reason, o.attempts, o.next_attempt_at, o.last_error FROM outbox o
      JOIN messages m ON m.id = o.id AND m.direction = 'out' AND m.peer = o.peer
      WHERE o.peer = ? AND o.seq > ? AND o.next_attempt_at <= ? ORDER BY o.seq LIMIT ?`)
    statement.setReturnArrays(true)
    return (statement.all(peer, after, now, limit) as unknown as unknown[][]).map((r: any[]) => ({
      id: r[0],
      peer,
      direction: 'out' as const,
      seq: r[1],
      body: r[2],
      contentType: r[3],
      replyTo: r[4] ?? undefined,
      sentAt: r[5],
      receivedAt: r[6] ?? undefined,
      createdAt: r[7],
      status: r[8] === 'queued' && this.sending.has(r[0]) ? 'sending' : r[8],
      path: r[9] ?? undefined,
      reason: r[10] ?? undefined,
      request: false,
      attempts: r[11],
      nextAttemptAt: r[12],
      lastError: r[13] ?? undefined
    }))
  }

  /** Each peer with queued messages and when its earliest one is due. */
  outboxPeers (): Array<{ peer: string, nextAttemptAt: number }> {
    return (this.sql('SELECT peer, min(next_attempt_at) AS next FROM outbox GROUP BY peer').all() as Row[])
      .map(r => ({ peer: r.peer, nextAttemptAt: r.next }))
  }

  /** When the earliest outbox entry of `peer` is due, if it has any. */
  nextAttempt (peer: string): number | undefined {
    return (this.sql('SELECT min(next_attempt_at) AS next FROM outbox WHERE peer = ?').get(peer) as Row).next ?? undefined
  }

  /** How many messages wait in the outbox. */
  outboxSize (): number {
    return (this.sql('SELECT count(*) AS n FROM outbox').get() as Row).n
  }

  /** Everything not yet delivered or failed, oldest first. */
  outbox (): OutboxEntry[] {
    return (this.sql(`SELECT m.*, o.attempts, o.next_attempt_at, o.last_error FROM outbox o
      JOIN messages m ON m.id = o.id AND m.direction = 'out' AND m.peer = o.peer
      ORDER BY m.created_at, o.seq`).all() as Row[]).map(row => toOutboxEntry(row, this.sending))
  }

  /**
   * Marks queued messages as on the wire: their status reads `sending` until
   * they are delivered, failed or rescheduled. Kept in memory, not written: a
   * restart queues every message on the wire again anyway, so the row stays
   * `queued` (and a write per message is saved).
   */
  markSending (ids: string[]): void {
    for (const id of ids) this.sending.add(id)
  }

  /** The message was acknowledged (OK or DUPLICATE): out of the outbox for good. */
  markDelivered (id: string, path: 'direct' | 'relayed', at: number): StoredMessage | undefined {
    this.sending.delete(id)
    return this.transaction(() => {
      this.sql("UPDATE messages SET status = 'delivered', path = ?, received_at = ?, reason = NULL WHERE id = ? AND direction = 'out'").run(path, at, id)
      this.sql('DELETE FROM outbox WHERE id = ?').run(id)
      return this.getOutbound(id)
    })
  }

  /** `markDelivered` for many messages, without reading them back (inside a `transaction`, one commit for all). */
  markDeliveredMany (delivered: Array<{ id: string, path: 'direct' | 'relayed' }>, at: number): void {
    this.transaction(() => {
      for (const { id, path } of delivered) {
        this.sending.delete(id)
        this.sql("UPDATE messages SET status = 'delivered', path = ?, received_at = ?, reason = NULL WHERE id = ? AND direction = 'out'").run(path, at, id)
        this.sql('DELETE FROM outbox WHERE id = ?').run(id)
      }
    })
  }

  /** Permanent failure (the recipient refused it): out of the outbox, with the reason. */
  markFailed (id: string, reason: string): StoredMessage | undefined {
    this.sending.delete(id)
    return this.transaction(() => {
      this.sql("UPDATE messages SET status = 'failed', reason = ? WHERE id = ? AND direction = 'out'").run(reason, id)
      this.sql('DELETE FROM outbox WHERE id = ?').run(id)
      return this.getOutbound(id)
    })
  }

  /** Not delivered this time: try again at `nextAttemptAt`. */
  reschedule (ids: string[], nextAttemptAt: number, error: string, countAttempt = true): void {
    this.transaction(() => {
      for (const id of ids) {
        this.sending.delete(id)
        this.sql('UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?, last_error = ? WHERE id = ?')
          .run(countAttempt ? 1 : 0, nextAttemptAt, error, id)
        this.sql("UPDATE messages SET status = 'queued' WHERE id = ? AND direction = 'out' AND status = 'sending'").run(id)
      }
    })
  }

  /** Makes every queued message of `peer` due no earlier than `at` (the recipient asked to wait). */
  deferPeer (peer: string, at: number, error: string): void {
    this.sql('UPDATE outbox SET next_attempt_at = max(next_attempt_at, ?), last_error = ? WHERE peer = ?').run(at, error, peer)
  }

  /** Makes every queued message of `peer` due now. */
  retryNow (peer: string, now: number): void {
    this.sql('UPDATE outbox SET next_attempt_at = ? WHERE peer = ? AND next_attempt_at > ?').run(now, peer, now)
  }

  /** After a restart, messages that were in flight are queued again (and rows an older parley marked `sending`). */
  requeueSending (): void {
    this.sending.clear()
    this.sql("UPDATE messages SET status = 'queued' WHERE direction = 'out' AND status = 'sending'").run()
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
    const exists = this.sql("SELECT 1 FROM messages WHERE peer = ? AND direction = 'in' AND id = ?").get(message.peer, message.id)
    if (exists != null) {
      return { result: 'duplicate', presented: [] }
    }
    const { nextInSeq, gapSince } = this.conversation(message.peer)
    // the next seq (the usual case), or one below it that arrived after its gap
    // was given up (shown at once, never dropped): presented now. Later seqs wait.
    const status: InStatus = message.seq <= nextInSeq ? 'presented' : 'held'
    if (status === 'held' && this.heldCount(message.peer, maxHeld) >= maxHeld) {
      return { result: 'held-full', presented: [] }
    }
    this.sql(`INSERT INTO messages (id, peer, direction, seq, body, content_type, reply_to, sent_at, received_at, created_at, status, path, position, request)
      VALUES (?, ?, 'in', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(message.id, message.peer, message.seq, message.body, message.contentType, message.replyTo ?? null,
        message.sentAt, message.receivedAt, message.receivedAt, status, message.path, status === 'presented' ? this.nextPosition() : null,
        message.request === true ? 1 : 0)
    if (message.seq < nextInSeq) {
      return { result: 'stored', presented: [inboundAsPresented(message)] }
    }
    if (message.seq === nextInSeq) {
      return { result: 'stored', presented: [inboundAsPresented(message), ...this.advance(message.peer, message.receivedAt, nextInSeq + 1, gapSince != null)] }
    }
    return { result: 'stored', presented: this.advance(message.peer, message.receivedAt, nextInSeq, true) }
  }

  /** A refused inbound message still fills its seq (spec section 6). */
  refuseSeq (peer: string, seq: number, now: number): StoredMessage[] {
    return this.transaction(() => this.refuseOne(peer, seq, now))
  }

  /** Messages of `peer` held for an earlier seq, counted up to `atMost` (an index-only count, bounded). */
  private heldCount (peer: string, atMost: number): number {
    if (!Number.isFinite(atMost)) return 0
    return (this.sql(`SELECT count(*) AS n FROM (SELECT 1 FROM messages INDEXED BY messages_held
      WHERE peer = ? AND direction = 'in' AND status = 'held' LIMIT ?)`).get(peer, atMost) as Row).n
  }

  private refuseOne (peer: string, seq: number, now: number): StoredMessage[] {
    const { nextInSeq, gapSince } = this.conversation(peer)
    // a seq far ahead is not recorded: a peer could otherwise grow the table
    // without end; its gap is given up after the gap timeout like any other
    if (seq < nextInSeq || seq >= nextInSeq + REFUSED_SEQ_WINDOW) return []
    this.sql('INSERT OR IGNORE INTO refused_seqs (peer, seq) VALUES (?, ?)').run(peer, seq)
    return this.advance(peer, now, nextInSeq, gapSince != null)
  }

  private present (peer: string, id: string): void {
    this.sql("UPDATE messages SET status = 'presented', position = ? WHERE peer = ? AND direction = 'in' AND id = ?").run(this.nextPosition(), peer, id)
  }

  /**
   * Presents held messages from seq `next` on, while there is no gap, and
   * records where the conversation now stands. `mayHold`: whether messages may
   * be held (false when the conversation had no gap open and nothing new was
   * held: then there is nothing to look up).
   */
  private advance (peer: string, now: number, from: number, mayHold: boolean): StoredMessage[] {
    let next = from
    const presented: StoredMessage[] = []
    for (;;) {
      const held = mayHold ? this.sql("SELECT * FROM messages INDEXED BY messages_held WHERE peer = ? AND direction = 'in' AND status = 'held' AND seq = ?").all(peer, next) as Row[] : []
      if (held.length > 0) {
        for (const row of held) this.present(peer, row.id)
        presented.push(...held.map(r => ({ ...toMessage(r), status: 'presented' as const })))
        next++
        continue
      }
      const refused = this.sql('DELETE FROM refused_seqs WHERE peer = ? AND seq = ?').run(peer, next)
      if (refused.changes > 0) {
        next++
        continue
      }
      break
    }
    const stillHeld = mayHold && this.sql("SELECT 1 FROM messages INDEXED BY messages_held WHERE peer = ? AND direction = 'in' AND status = 'held' LIMIT 1").get(peer) != null
    this.sql('UPDATE conversations SET next_in_seq = ?, gap_since = CASE WHEN ? THEN coalesce(gap_since, ?) ELSE NULL END WHERE peer = ?')
      .run(next, stillHeld ? 1 : 0, now, peer)
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
      const expired = this.sql('SELECT peer FROM conversations WHERE gap_since IS NOT NULL AND gap_since <= ? ORDER BY gap_since').all(now - timeout) as Row[]
      const presented: StoredMessage[] = []
      for (const { peer } of expired) {
        const room = limit - presented.length
        if (room <= 0) return { presented, more: true }
        const held = (this.sql(`SELECT * FROM messages INDEXED BY messages_held WHERE peer = ? AND direction = 'in' AND status = 'held'
          ORDER BY seq LIMIT ?`).all(peer, room + 1) as Row[]).map(row => toMessage(row))
        const all = held.length <= room
        const page = all ? held : held.slice(0, room)
        for (const m of page) this.present(peer, m.id)
        const last = page.at(-1)?.seq ?? 0
        if (all) {
          this.sql('DELETE FROM refused_seqs WHERE peer = ?').run(peer)
          this.sql('UPDATE conversations SET gap_since = NULL, next_in_seq = max(next_in_seq, ?) WHERE peer = ?').run(last + 1, peer)
        } else {
          this.sql('DELETE FROM refused_seqs WHERE peer = ? AND seq <= ?').run(peer, last)
          this.sql('UPDATE conversations SET next_in_seq = max(next_in_seq, ?) WHERE peer = ?').run(last + 1, peer)
        }
        presented.push(...page.map(m => ({ ...m, status: 'presented' as const })))
        if (!all) return { presented, more: true }
      }
      return { presented, more: false }
    })
  }

  /** When the oldest open gap expires (its `gap_since`), if any. */
  oldestGap (): number | undefined {
    const row = this.sql('SELECT min(gap_since) AS since FROM conversations').get() as Row
    return row.since ?? undefined
  }

  // ---- queries ----

  /** The conversation with `peer`, oldest first: the `limit` newest messages created before `before`. */
  history (peer: string, options: { limit?: number, before?: number } = {}): StoredMessage[] {
    const rows = this.sql(`SELECT * FROM messages WHERE peer = ? AND created_at < ? AND position IS NOT NULL
      ORDER BY position DESC LIMIT ?`).all(peer, options.before ?? Number.MAX_SAFE_INTEGER, options.limit ?? 100) as Row[]
    return rows.map(row => toMessage(row, this.sending)).reverse()
  }

  /** A message by id, outbound first (ids are unique per sender). */
  getMessage (id: string): StoredMessage | undefined {
    const row = this.sql("SELECT * FROM messages WHERE id = ? ORDER BY direction = 'out' DESC LIMIT 1").get(id) as Row | undefined
    return row == null ? undefined : toMessage(row, this.sending)
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
}
