/**
 * The `files` table (migration 6): the offers this node made and received
 * and where each transfer stands. SQL only; the Store hands it its database.
 */
import { PreparedStatements } from '../../common/statements.js'
import type { DatabaseSync, StatementSync } from 'node:sqlite'

export type FileDirection = 'in' | 'out'

/** Where a transfer stands (see node/types.ts FileStatus for what each means). */
export type FileRowStatus = 'offering' | 'offered' | 'pending' | 'queued' | 'waiting' | 'transferring' | 'complete' | 'failed' | 'refused' | 'cancelled'

export interface FileRow {
  id: string
  peer: string
  direction: FileDirection
  name: string
  type: string
  size: number
  sha256: string
  root: string
  hashes?: Uint8Array<ArrayBuffer>
  path?: string
  mtime?: number
  owned: boolean
  verified: number
  status: FileRowStatus
  reason?: string
  /** The offer's preview image, if it had one. */
  thumbnail?: { type: string, data: Uint8Array }
  createdAt: number
  updatedAt: number
}

type Row = Record<string, any>

function toFile (r: Row): FileRow {
  return {
    id: r.id,
    peer: r.peer,
    direction: r.direction,
    name: r.name,
    type: r.type,
    size: r.size,
    sha256: r.sha256,
    root: r.root,
    ...(r.hashes == null ? {} : { hashes: new Uint8Array(r.hashes) }),
    ...(r.path == null ? {} : { path: r.path }),
    ...(r.mtime == null ? {} : { mtime: r.mtime }),
    owned: r.owned === 1,
    verified: r.verified,
    status: r.status,
    ...(r.reason == null ? {} : { reason: r.reason }),
    ...(r.thumbnail == null ? {} : { thumbnail: { type: r.thumbnail_type, data: new Uint8Array(r.thumbnail) } }),
    createdAt: r.created_at,
    updatedAt: r.updated_at
  }
}

/** The file offer's content type (FILE_OFFER_TYPE), as the partial index on offer messages names it. */
export const OFFER_CONTENT_TYPE = 'application/vnd.parley.file-offer+json'

/** Statuses of a transfer still under way, whose room on disk the quota counts. */
export const ACTIVE_IN: readonly FileRowStatus[] = ['queued', 'waiting', 'transferring']

export class FileRows {
  private readonly statements: PreparedStatements

  constructor (db: DatabaseSync) {
    this.statements = new PreparedStatements(db)
  }

  private sql (text: string): StatementSync {
    return this.statements.get(text)
  }

  insert (row: Omit<FileRow, 'updatedAt' | 'verified' | 'owned'> & { owned?: boolean }): boolean {
    return this.sql(`INSERT INTO files (id, peer, direction, name, type, size, sha256, root, hashes, path, mtime, owned, status, reason, thumbnail_type, thumbnail, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`).run(
      row.id, row.peer, row.direction, row.name, row.type, row.size, row.sha256, row.root, row.hashes ?? null, row.path ?? null,
      row.mtime ?? null, row.owned === true ? 1 : 0, row.status, row.reason ?? null, row.thumbnail?.type ?? null, row.thumbnail?.data ?? null,
      row.createdAt, row.createdAt
    ).changes > 0
  }

  /** The transfer `id` (an outgoing one first, if both directions share the id). */
  get (id: string): FileRow | undefined {
    const r = this.sql("SELECT * FROM files WHERE id = ? ORDER BY direction = 'out' DESC LIMIT 1").get(id) as Row | undefined
    return r == null ? undefined : toFile(r)
  }

  /** The transfer `id` in one direction (the first, should two peers have used the same id). */
  getDirected (id: string, direction: FileDirection): FileRow | undefined {
    const r = this.sql('SELECT * FROM files WHERE id = ? AND direction = ? ORDER BY created_at LIMIT 1').get(id, direction) as Row | undefined
    return r == null ? undefined : toFile(r)
  }

  one (id: string, direction: FileDirection, peer: string): FileRow | undefined {
    const r = this.sql('SELECT * FROM files WHERE id = ? AND direction = ? AND peer = ?').get(id, direction, peer) as Row | undefined
    return r == null ? undefined : toFile(r)
  }

  /** The latest first. */
  list (options: { direction?: FileDirection, peer?: string, limit?: number } = {}): FileRow[] {
    return (this.sql(`SELECT * FROM files WHERE (?1 IS NULL OR direction = ?1) AND (?2 IS NULL OR peer = ?2)
      ORDER BY updated_at DESC LIMIT ?3`).all(options.direction ?? null, options.peer ?? null, options.limit ?? 100) as Row[]).map(toFile)
  }

  /** The transfers in one of `statuses`. */
  withStatus (direction: FileDirection, statuses: readonly FileRowStatus[]): FileRow[] {
    return (this.sql('SELECT * FROM files WHERE direction = ? AND status IN (SELECT value FROM json_each(?)) ORDER BY created_at, id')
      .all(direction, JSON.stringify(statuses)) as Row[]).map(toFile)
  }

  setStatus (row: Pick<FileRow, 'id' | 'direction' | 'peer'>, status: FileRowStatus, reason: string | undefined, at: number): void {
    this.sql('UPDATE files SET status = ?, reason = ?, updated_at = ? WHERE id = ? AND direction = ? AND peer = ?')
      .run(status, reason ?? null, at, row.id, row.direction, row.peer)
  }

  setHashes (row: Pick<FileRow, 'id' | 'direction' | 'peer'>, hashes: Uint8Array): void {
    this.sql('UPDATE files SET hashes = ? WHERE id = ? AND direction = ? AND peer = ?').run(hashes, row.id, row.direction, row.peer)
  }

  setVerified (row: Pick<FileRow, 'id' | 'direction' | 'peer'>, verified: number): void {
    this.sql('UPDATE files SET verified = ? WHERE id = ? AND direction = ? AND peer = ?').run(verified, row.id, row.direction, row.peer)
  }

  setPath (row: Pick<FileRow, 'id' | 'direction' | 'peer'>, path: string | undefined): void {
    this.sql('UPDATE files SET path = ? WHERE id = ? AND direction = ? AND peer = ?').run(path ?? null, row.id, row.direction, row.peer)
  }

  /**
   * Offer messages received with no row here: what a crash caught between the
   * message's commit and the offer's (oldest first, at most `limit`).
   */
  offersWithoutRow (limit = 1_000): Array<{ id: string, peer: string, body: string, request: boolean }> {
    // the content type written out, as the partial index messages_file_offers has it, so that
    // this reads the offers alone and not the whole history (FILE_OFFER_TYPE; a test holds them equal)
    return (this.sql(`SELECT m.id, m.peer, m.body, m.request FROM messages m INDEXED BY messages_file_offers
      WHERE m.direction = 'in' AND m.content_type = '${OFFER_CONTENT_TYPE}' AND m.status = 'presented'
        AND NOT EXISTS (SELECT 1 FROM files f WHERE f.id = m.id AND f.direction = 'in' AND f.peer = m.peer)
      ORDER BY m.created_at LIMIT ?`).all(limit) as Row[]).map(r => ({ id: r.id, peer: r.peer, body: r.body, request: r.request === 1 }))
  }

  /** Whether a complete received file already holds this content. */
  completePathOf (sha256: string): string | undefined {
    return (this.sql("SELECT path FROM files WHERE direction = 'in' AND status = 'complete' AND sha256 = ? AND path IS NOT NULL LIMIT 1").get(sha256) as Row | undefined)?.path
  }

  /** Bytes the received files take or will take: each complete content once, and every transfer under way. */
  quotaUsed (): number {
    const complete = (this.sql("SELECT coalesce(sum(size), 0) AS n FROM (SELECT DISTINCT sha256, size FROM files WHERE direction = 'in' AND status = 'complete')").get() as Row).n as number
    const active = (this.sql(`SELECT coalesce(sum(size), 0) AS n FROM files WHERE direction = 'in' AND status IN (${ACTIVE_IN.map(s => `'${s}'`).join(', ')})`).get() as Row).n as number
    return complete + active
  }
}
