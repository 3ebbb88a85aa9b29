/**
 * A data dir holds the identity key, the message history and the peer store:
 * only its owner may read it. Files are created by libraries (SQLite, LevelDB)
 * with the process umask, typically 0644, and a data dir that already existed
 * keeps its mode (0755 say) through `mkdir`: both are set here explicitly.
 * The process umask is left alone (a library must not change it for the whole
 * process); a 0700 dir is what keeps files that are created later (LevelDB's
 * new tables, SQLite's -wal and -shm) private.
 */
import { chmod, mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Creates `dir` (and its parents) if missing and makes it 0700, also when it
 * existed with another mode.
 *
 * @throws Error saying which dir and what to do, when it cannot be made private
 */
export async function makePrivateDir (dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  try {
    await chmod(dir, 0o700)
  } catch (err: any) {
    throw new Error(`cannot make ${dir} private (mode 0700): ${err.message}; use a data dir that belongs to this user`)
  }
}

/** Makes each of `files` 0600; a file that does not exist is skipped. */
export async function makePrivateFiles (files: Iterable<string>): Promise<void> {
  await Promise.all([...files].map(async file => {
    try {
      await chmod(file, 0o600)
    } catch (err: any) {
      if (err.code !== 'ENOENT') throw err
    }
  }))
}

/** Makes every file directly in `dir` 0600 (a LevelDB dir, say); subdirectories are left as they are. */
export async function makePrivateDirFiles (dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true })
  await makePrivateFiles(entries.filter(e => e.isFile()).map(e => join(dir, e.name)))
}
