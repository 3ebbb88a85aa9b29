/**
 * The mailbox host's persistence (spec §7): mailboxes and the envelopes
 * deposited in them, in SQLite (node:sqlite, WAL) in the relay's data dir, or
 * in memory when the relay has none. The only module of the relay with SQL.
 *
 * Privacy: what is kept is which mailbox an envelope is for, its bytes (sealed,
 * opaque), its size and times, and a depositor tag: HMAC-SHA-256 of the
 * mailbox and the depositor's peer ID under a secret of this host
 * (`mailbox-secret`, 0600), so
 * that per-depositor quotas survive a restart without the file naming any
 * depositor. The owner's peer ID is kept: it names the mailbox.
 */
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { makePrivateDir, makePrivateFiles } from '../../common/private-files.js'
import { PreparedStatements } from '../../common/statements.js'
import type { MailboxUsage } from './limits.js'
import type { Clock, ClockTimer } from '../../common/clock.js'
import type { StatementSync } from 'node:sqlite'

/** The database file in the relay's data dir. */
export const MAILBOX_DB_FILE = 'mailboxes.sqlite'

/** The depositor-tag key in the relay's data dir. */
export const MAILBOX_SECRET_FILE = 'mailbox-secret'

const SECRET_BYTES = 32

/** Envelope ids: random, so they say nothing about order or count. */
const ID_BYTES = 16

/** The mailbox database cannot be used: corrupt, from a newer parley, or a bad secret file. */
export class MailboxStoreError extends Error {
  static override name = 'MailboxStoreError'
  override name = 'MailboxStoreError'
}

/**
 * The schema, as migrations applied in order at open; `PRAGMA user_version`
 * says how many have run. Never edit a released one: add another.
 */
export const MAILBOX_MIGRATIONS = [
  // 1: mailboxes and their envelopes
  `
CREATE TABLE mailboxes (
  owner BLOB PRIMARY KEY,            -- the owner's peer ID (multihash bytes)
  registered_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX mailboxes_by_expiry ON mailboxes (expires_at);

CREATE TABLE envelopes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- deposit order, for oldest-first delivery
  id BLOB NOT NULL UNIQUE,
  mailbox BLOB NOT NULL REFERENCES mailboxes (owner) ON DELETE CASCADE,
  bytes BLOB NOT NULL,
  size INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  depositor BLOB NOT NULL            -- HMAC-SHA-256(secret, mailbox || depositor peer ID), never the ID
);
CREATE INDEX envelopes_by_mailbox ON envelopes (mailbox, seq);
CREATE INDEX envelopes_by_depositor ON envelopes (mailbox, depositor, size);
CREATE INDEX envelopes_by_expiry ON envelopes (expires_at);
`,
  // 2: what each mailbox, and each depositor in it, holds, kept as running
  // totals by triggers on the envelopes, in the statement (and transaction)
  // that adds or removes the row: a deposit checks its quotas in two lookups
  // where it counted every envelope of the mailbox, and of the depositor.
  // Envelopes deleted with their mailbox (ON DELETE CASCADE) fire the
  // triggers too; a depositor's row goes when it holds nothing
  `
ALTER TABLE mailboxes ADD COLUMN envelopes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET
  envelopes = (SELECT COUNT(*) FROM envelopes WHERE mailbox = owner),
  bytes = (SELECT COALESCE(SUM(size), 0) FROM envelopes WHERE mailbox = owner);
CREATE TABLE depositors (
  mailbox BLOB NOT NULL REFERENCES mailboxes (owner) ON DELETE CASCADE,
  depositor BLOB NOT NULL,
  envelopes INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  PRIMARY KEY (mailbox, depositor)
) WITHOUT ROWID;
INSERT INTO depositors (mailbox, depositor, envelopes, bytes)
  SELECT mailbox, depositor, COUNT(*), SUM(size) FROM envelopes GROUP BY mailbox, depositor;
DROP INDEX envelopes_by_depositor;
CREATE TRIGGER envelopes_counted AFTER INSERT ON envelopes BEGIN
  UPDATE mailboxes SET envelopes = envelopes + 1, bytes = bytes + NEW.size WHERE owner = NEW.mailbox;
  INSERT INTO depositors (mailbox, depositor, envelopes, bytes) VALUES (NEW.mailbox, NEW.depositor, 1, NEW.size)
    ON CONFLICT (mailbox, depositor) DO UPDATE SET envelopes = envelopes + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER envelopes_uncounted AFTER DELETE ON envelopes BEGIN
  UPDATE mailboxes SET envelopes = envelopes - 1, bytes = bytes - OLD.size WHERE owner = OLD.mailbox;
  UPDATE depositors SET envelopes = envelopes - 1, bytes = bytes - OLD.size WHERE mailbox = OLD.mailbox AND depositor = OLD.depositor;
  DELETE FROM depositors WHERE mailbox = OLD.mailbox AND depositor = OLD.depositor AND envelopes = 0;
END;
`
]

/** The schema version this code writes. */
export const MAILBOX_SCHEMA_VERSION = MAILBOX_MIGRATIONS.length

export interface MailboxRow {
  registeredAt: number
  expiresAt: number
}

export interface StoredEnvelopeRow {
  /** Deposit order within the host. */
  seq: number
  id: Uint8Array<ArrayBuffer>
  storedAt: number
  expiresAt: number
  envelope: Uint8Array<ArrayBuffer>
}

export interface NewEnvelope {
  mailbox: Uint8Array
  envelope: Uint8Array
  storedAt: number
  expiresAt: number
  /** `depositorTag(mailbox, depositor)`. */
  depositor: Uint8Array
}

export interface MailboxTotals {
  mailboxes: number
  envelopes: number
  bytes: number
}

export interface MailboxStoreInit {
  /** The relay's data dir; omitted: in memory, with a secret for this run only. */
  dataDir?: string
  clock: Clock
}

type Row = Record<string, any>

/** Reads the depositor-tag secret, creating it (0600) on first use. */
async function loadSecret (dataDir: string): Promise<Uint8Array> {
  const file = join(dataDir, MAILBOX_SECRET_FILE)
  try {
    await writeFile(file, randomBytes(SECRET_BYTES), { mode: 0o600, flag: 'wx' })
  } catch (err: any) {
    if (err.code !== 'EEXIST') throw err
  }
  await makePrivateFiles([file])
  const secret = new Uint8Array(await readFile(file))
  if (secret.byteLength !== SECRET_BYTES) {
    throw new MailboxStoreError(`${file} holds ${secret.byteLength} bytes, not ${SECRET_BYTES}: restore it from a backup, or delete it together with ${MAILBOX_DB_FILE} to start afresh`)
  }
  return secret
}

export class MailboxStore {
  private readonly db: DatabaseSync
  /** Prepared once per SQL text, for the life of the store. */
  private readonly statements: PreparedStatements
  private readonly totals: MailboxTotals
  private sweepTimer?: ClockTimer
  private closed = false

  /** Opens (creating if need be) the store of `init.dataDir`, or one in memory. */
  static async open (init: MailboxStoreInit): Promise<MailboxStore> {
    if (init.dataDir == null) return new MailboxStore(':memory:', randomBytes(SECRET_BYTES), init.clock)
    await makePrivateDir(init.dataDir)
    const secret = await loadSecret(init.dataDir)
    const file = join(init.dataDir, MAILBOX_DB_FILE)
    const store = new MailboxStore(file, secret, init.clock)
    await makePrivateFiles([file, `${file}-wal`, `${file}-shm`])
    return store
  }

  constructor (location: string, private readonly secret: Uint8Array, private readonly clock: Clock) {
    try {
      this.db = new DatabaseSync(location)
      this.statements = new PreparedStatements(this.db)
      this.db.exec('PRAGMA journal_mode = WAL')
      // a deposit answered OK must survive a power cut
      this.db.exec('PRAGMA synchronous = FULL')
      this.db.exec('PRAGMA foreign_keys = ON')
      this.db.exec('PRAGMA busy_timeout = 5000')
      // deleted envelopes' bytes are overwritten, not left in free pages
      this.db.exec('PRAGMA secure_delete = ON')
      const version = (this.db.prepare('PRAGMA user_version').get() as Row).user_version as number
      if (version > MAILBOX_SCHEMA_VERSION) throw new MailboxStoreError(`${location} is from a newer parley (schema ${version}); upgrade parley`)
      for (let v = version; v < MAILBOX_SCHEMA_VERSION; v++) {
        this.db.exec('BEGIN IMMEDIATE')
        try {
          this.db.exec(`${MAILBOX_MIGRATIONS[v]}; PRAGMA user_version = ${v + 1}`)
          this.db.exec('COMMIT')
        } catch (err) {
          this.db.exec('ROLLBACK')
          throw err
        }
      }
    } catch (err: any) {
      if (err instanceof MailboxStoreError) throw err
      throw new MailboxStoreError(`cannot open the mailbox store ${location}: ${err.message}`)
    }
    const mailboxes = (this.sql('SELECT COUNT(*) AS n FROM mailboxes').get() as Row).n as number
    const envelopes = this.sql('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM envelopes').get() as Row
    this.totals = { mailboxes, envelopes: envelopes.n, bytes: envelopes.bytes }
  }

  /**
   * The tag of a depositor (its peer ID's multihash bytes) in one mailbox:
   * keyed, so the file alone cannot be matched to peers, and per mailbox, so
   * that it does not even show that one unknown sender writes to several
   * mailboxes. Multihashes delimit themselves: the concatenation is unambiguous.
   */
  depositorTag (mailbox: Uint8Array, depositor: Uint8Array): Uint8Array {
    const input = new Uint8Array(mailbox.byteLength + depositor.byteLength)
    input.set(mailbox)
    input.set(depositor, mailbox.byteLength)
    return hmac(sha256, this.secret, input)
  }

  /** Mailboxes, envelopes and envelope bytes held now. */
  get held (): MailboxTotals {
    return { ...this.totals }
  }

  /** Creates the owner's mailbox or renews its lease; says which. */
  register (owner: Uint8Array, now: number, expiresAt: number): { created: boolean } {
    const existing = this.sql('SELECT expires_at FROM mailboxes WHERE owner = ?').get(owner)
    if (existing != null) {
      this.sql('UPDATE mailboxes SET expires_at = MAX(expires_at, ?) WHERE owner = ?').run(expiresAt, owner)
      return { created: false }
    }
    this.sql('INSERT INTO mailboxes (owner, registered_at, expires_at) VALUES (?, ?, ?)').run(owner, now, expiresAt)
    this.totals.mailboxes++
    return { created: true }
  }

  /** The owner's mailbox, unless it has none or it has expired. */
  mailbox (owner: Uint8Array, now: number): MailboxRow | undefined {
    const row = this.sql('SELECT registered_at, expires_at FROM mailboxes WHERE owner = ? AND expires_at > ?').get(owner, now) as Row | undefined
    return row == null ? undefined : { registeredAt: row.registered_at, expiresAt: row.expires_at }
  }

  /** What the mailbox holds now: its running totals (see migration 2), one row. */
  usage (owner: Uint8Array): MailboxUsage {
    const row = this.sql('SELECT envelopes, bytes FROM mailboxes WHERE owner = ?').get(owner) as Row | undefined
    return { envelopes: row?.envelopes ?? 0, bytes: row?.bytes ?? 0 }
  }

  /** What one depositor (by tag) holds in the mailbox now: its running totals, one row. */
  depositorUsage (owner: Uint8Array, depositor: Uint8Array): MailboxUsage {
    const row = this.sql('SELECT envelopes, bytes FROM depositors WHERE mailbox = ? AND depositor = ?').get(owner, depositor) as Row | undefined
    return { envelopes: row?.envelopes ?? 0, bytes: row?.bytes ?? 0 }
  }

  /** Stores an envelope (the caller has checked the limits) and returns its new id. */
  deposit (entry: NewEnvelope): { id: Uint8Array<ArrayBuffer>, seq: number } {
    const id = new Uint8Array(randomBytes(ID_BYTES))
    const result = this.sql('INSERT INTO envelopes (id, mailbox, bytes, size, stored_at, expires_at, depositor) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(id, entry.mailbox, entry.envelope, entry.envelope.byteLength, entry.storedAt, entry.expiresAt, entry.depositor)
    this.totals.envelopes++
    this.totals.bytes += entry.envelope.byteLength
    return { id, seq: Number(result.lastInsertRowid) }
  }

  /** Up to `limit` unexpired envelopes of the mailbox deposited after `afterSeq`, oldest first. */
  list (owner: Uint8Array, afterSeq: number, limit: number, now: number): StoredEnvelopeRow[] {
    const rows = this.sql('SELECT seq, id, bytes, stored_at, expires_at FROM envelopes WHERE mailbox = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?')
      .all(owner, afterSeq, now, limit) as Row[]
    return rows.map(row => ({
      seq: row.seq,
      id: new Uint8Array(row.id),
      storedAt: row.stored_at,
      expiresAt: row.expires_at,
      envelope: new Uint8Array(row.bytes)
    }))
  }

  /** Deletes those of `ids` that are in the owner's mailbox (others are ignored); returns how many went. */
  delete (owner: Uint8Array, ids: Uint8Array[]): number {
    if (ids.length === 0) return 0
    let deleted = 0
    let bytes = 0
    this.db.exec('BEGIN IMMEDIATE')
    try {
      const remove = this.sql('DELETE FROM envelopes WHERE id = ? AND mailbox = ? RETURNING size')
      for (const id of ids) {
        const row = remove.get(id, owner) as Row | undefined
        if (row == null) continue
        deleted++
        bytes += row.size as number
      }
      this.db.exec('COMMIT')
    } catch (err) {
      this.db.exec('ROLLBACK')
      throw err
    }
    this.totals.envelopes -= deleted
    this.totals.bytes -= bytes
    return deleted
  }

  /** Deletes every envelope and mailbox expired by `now`; returns how many of each went. */
  sweep (now: number): { envelopes: number, mailboxes: number } {
    // most sweeps find nothing: then no write transaction (and no sync) at all
    const due = this.sql('SELECT EXISTS (SELECT 1 FROM envelopes WHERE expires_at <= ?) OR EXISTS (SELECT 1 FROM mailboxes WHERE expires_at <= ?) AS due').get(now, now) as Row
    if (due.due === 0) return { envelopes: 0, mailboxes: 0 }
    this.db.exec('BEGIN IMMEDIATE')
    try {
      // the envelopes of expired mailboxes go with them (ON DELETE CASCADE): count them first
      const expired = this.sql('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM envelopes WHERE expires_at <= ?').get(now) as Row
      const orphaned = this.sql('SELECT COUNT(*) AS n, COALESCE(SUM(e.size), 0) AS bytes FROM mailboxes m JOIN envelopes e ON e.mailbox = m.owner WHERE m.expires_at <= ? AND e.expires_at > ?').get(now, now) as Row
      this.sql('DELETE FROM envelopes WHERE expires_at <= ?').run(now)
      const mailboxes = Number(this.sql('DELETE FROM mailboxes WHERE expires_at <= ?').run(now).changes)
      this.db.exec('COMMIT')
      const envelopes = (expired.n as number) + (orphaned.n as number)
      this.totals.envelopes -= envelopes
      this.totals.bytes -= (expired.bytes as number) + (orphaned.bytes as number)
      this.totals.mailboxes -= mailboxes
      return { envelopes, mailboxes }
    } catch (err) {
      this.db.exec('ROLLBACK')
      throw err
    }
  }

  /** Sweeps every `interval` ms on the store's clock, telling `onSwept` what went, until `close`. */
  startSweeping (interval: number, onSwept: (swept: { envelopes: number, mailboxes: number }) => void): void {
    const tick = (): void => {
      if (this.closed) return
      onSwept(this.sweep(this.clock.now()))
      this.sweepTimer = this.clock.setTimeout(tick, interval)
    }
    this.clock.clearTimeout(this.sweepTimer)
    this.sweepTimer = this.clock.setTimeout(tick, interval)
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.clock.clearTimeout(this.sweepTimer)
    this.statements.clear()
    this.db.close()
  }

  private sql (text: string): StatementSync {
    return this.statements.get(text)
  }
}
