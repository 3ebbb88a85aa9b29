/**
 * The groups' tables (migration 6): each group this node is in, its log of
 * signed ops, its messages, and payloads waiting for ops not known yet. Part
 * of the store: it shares its database and its transactions.
 */
import { PreparedStatements } from '../../common/statements.js'
import type { DatabaseSync, StatementSync } from 'node:sqlite'

type Row = Record<string, any>

export interface StoredOp {
  hash: string
  op: Uint8Array
  signature: Uint8Array
}

export interface StoredGroupMessage {
  group: string
  sender: string
  seq: number
  id: string
  lamport: number
  body: string
  contentType: string
  sentAt: number
  receivedAt: number
  /** How it came; none for this node's own. */
  path?: string
}

export interface PendingPayload {
  rowid: number
  group: string
  sender: string
  path: string
  receivedAt: number
  payload: Uint8Array
}

export interface GroupRow {
  id: string
  joinedAt: number
  nextSeq: number
  lamport: number
}

function toGroupMessage (r: Row): StoredGroupMessage {
  return {
    group: r.group_id,
    sender: r.sender,
    seq: r.seq,
    id: r.id,
    lamport: r.lamport,
    body: r.body,
    contentType: r.content_type,
    sentAt: r.sent_at,
    receivedAt: r.received_at,
    ...(r.path == null ? {} : { path: r.path })
  }
}

export class GroupStore {
  private readonly statements: PreparedStatements

  constructor (db: DatabaseSync) {
    this.statements = new PreparedStatements(db)
  }

  private sql (text: string): StatementSync {
    return this.statements.get(text)
  }

  all (): GroupRow[] {
    return (this.sql('SELECT * FROM groups ORDER BY joined_at').all() as Row[])
      .map(r => ({ id: r.id, joinedAt: r.joined_at, nextSeq: r.next_seq, lamport: r.lamport }))
  }

  get (id: string): GroupRow | undefined {
    const r = this.sql('SELECT * FROM groups WHERE id = ?').get(id) as Row | undefined
    return r == null ? undefined : { id: r.id, joinedAt: r.joined_at, nextSeq: r.next_seq, lamport: r.lamport }
  }

  /** Records a group (once); false if it was known. */
  addGroup (id: string, joinedAt: number): boolean {
    return this.sql('INSERT OR IGNORE INTO groups (id, joined_at) VALUES (?, ?)').run(id, joinedAt).changes > 0
  }

  /** Forgets a group and everything of it. */
  deleteGroup (id: string): void {
    for (const table of ['group_ops', 'group_messages', 'group_pending']) this.sql(`DELETE FROM ${table} WHERE group_id = ?`).run(id)
    this.sql('DELETE FROM groups WHERE id = ?').run(id)
  }

  /** Takes this node's next seq in the group and moves it on. */
  takeSeq (id: string): number {
    const row = this.sql('UPDATE groups SET next_seq = next_seq + 1 WHERE id = ? RETURNING next_seq - 1 AS seq').get(id) as Row | undefined
    if (row == null) throw new Error(`no group ${id}`)
    return row.seq
  }

  /** Raises the group's Lamport time to at least `lamport`; returns it. */
  witness (id: string, lamport: number): number {
    const row = this.sql('UPDATE groups SET lamport = max(lamport, ?) WHERE id = ? RETURNING lamport').get(lamport, id) as Row | undefined
    return row?.lamport ?? lamport
  }

  addOp (group: string, op: StoredOp): void {
    this.sql('INSERT OR IGNORE INTO group_ops (group_id, hash, op, signature) VALUES (?, ?, ?, ?)').run(group, op.hash, op.op, op.signature)
  }

  ops (group: string): StoredOp[] {
    return (this.sql('SELECT hash, op, signature FROM group_ops WHERE group_id = ?').all(group) as Row[])
      .map(r => ({ hash: r.hash, op: r.op, signature: r.signature }))
  }

  /** Stores a group message once per (group, sender, seq); false if it was there. */
  addMessage (m: StoredGroupMessage): boolean {
    return this.sql(`INSERT OR IGNORE INTO group_messages (group_id, sender, seq, id, lamport, body, content_type, sent_at, received_at, path)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(m.group, m.sender, m.seq, m.id, m.lamport, m.body, m.contentType, m.sentAt, m.receivedAt, m.path ?? null).changes > 0
  }

  /** The group's messages in display order (Lamport time, sender, seq): the `limit` last of those before `before` (a Lamport time). */
  messages (group: string, options: { limit?: number, before?: number } = {}): StoredGroupMessage[] {
    const rows = this.sql(`SELECT * FROM group_messages WHERE group_id = ? AND lamport < ?
      ORDER BY lamport DESC, sender DESC, seq DESC LIMIT ?`).all(group, options.before ?? Number.MAX_SAFE_INTEGER, options.limit ?? 100) as Row[]
    return rows.map(toGroupMessage).reverse()
  }

  /** The group's last message in display order, and how many messages of others arrived after its read mark. */
  inbox (group: string, self: string): { last?: StoredGroupMessage, unread: number } {
    const last = this.sql('SELECT * FROM group_messages WHERE group_id = ? ORDER BY lamport DESC, sender DESC, seq DESC LIMIT 1').get(group) as Row | undefined
    const unread = (this.sql(`SELECT count(*) AS n FROM group_messages
      WHERE group_id = ? AND received_at > (SELECT read_at FROM groups WHERE id = ?) AND sender != ?`).get(group, group, self) as Row).n as number
    return { ...(last == null ? {} : { last: toGroupMessage(last) }), unread }
  }

  /** Marks everything of the group that has arrived read. */
  markRead (group: string): void {
    this.sql('UPDATE groups SET read_at = max(read_at, coalesce((SELECT max(received_at) FROM group_messages WHERE group_id = ?), 0)) WHERE id = ?').run(group, group)
  }

  addPending (p: Omit<PendingPayload, 'rowid'>): void {
    this.sql('INSERT INTO group_pending (group_id, received_at, sender, path, payload) VALUES (?, ?, ?, ?, ?)').run(p.group, p.receivedAt, p.sender, p.path, p.payload)
  }

  pendingCount (group: string): number {
    return (this.sql('SELECT count(*) AS n FROM group_pending WHERE group_id = ?').get(group) as Row).n
  }

  /** Groups with payloads waiting. */
  pendingGroups (): number {
    return (this.sql('SELECT count(DISTINCT group_id) AS n FROM group_pending').get() as Row).n
  }

  pending (group: string): PendingPayload[] {
    // in the order they were kept, which is the order they were presented: not by
    // received_at, which a carrier held for an earlier seq keeps from its arrival
    return (this.sql('SELECT rowid, * FROM group_pending WHERE group_id = ? ORDER BY rowid').all(group) as Row[])
      .map(r => ({ rowid: r.rowid, group: r.group_id, sender: r.sender, path: r.path, receivedAt: r.received_at, payload: r.payload }))
  }

  deletePending (rowid: number): void {
    this.sql('DELETE FROM group_pending WHERE rowid = ?').run(rowid)
  }
}
