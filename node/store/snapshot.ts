/**
 * A consistent copy of the message store, for backups, and the check of a
 * copy before it replaces a store. SQL stays in node/store.
 */
import { DatabaseSync } from 'node:sqlite'
import { SCHEMA_VERSION } from './migrations.js'
import { StoreError } from './index.js'

/**
 * Writes a consistent snapshot of the store at `file` to `target` (which must
 * not exist), also while a running node writes to it: `VACUUM INTO` reads
 * inside one read transaction, which WAL mode lets run beside the node's
 * writes without blocking them, and the connection is read-only, so the store
 * itself is never changed.
 */
export function snapshotStore (file: string, target: string): void {
  let db: DatabaseSync
  try {
    db = new DatabaseSync(file, { readOnly: true })
  } catch (err: any) {
    throw new StoreError(`cannot open the message store ${file}: ${err.message}`)
  }
  try {
    db.exec('PRAGMA busy_timeout = 5000')
    db.prepare('VACUUM INTO ?').run(target)
  } catch (err: any) {
    throw new StoreError(`cannot copy the message store ${file}: ${err.message}`)
  } finally {
    db.close()
  }
}

/**
 * Checks that `file` is a sound parley store this code can open: SQLite's
 * quick_check passes and its schema is no newer than this code's.
 *
 * @throws StoreError saying what is wrong
 */
export function checkStoreSnapshot (file: string): void {
  let db: DatabaseSync
  try {
    db = new DatabaseSync(file, { readOnly: true })
  } catch (err: any) {
    throw new StoreError(`the message store in the backup cannot be opened: ${err.message}`)
  }
  try {
    const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version
    if (version > SCHEMA_VERSION) {
      throw new StoreError(`the message store in the backup has schema version ${version}, written by a newer parley; this one knows version ${SCHEMA_VERSION}: upgrade parley`)
    }
    if (version < 1) throw new StoreError('the message store in the backup is not a parley store')
    const check = db.prepare('PRAGMA quick_check').all().map(row => Object.values(row)[0])
    if (check.length !== 1 || check[0] !== 'ok') throw new StoreError(`the message store in the backup is damaged: ${check.slice(0, 3).join('; ')}`)
  } catch (err: any) {
    if (err instanceof StoreError) throw err
    throw new StoreError(`the message store in the backup is not a SQLite database: ${err.message}`)
  } finally {
    db.close()
  }
}
