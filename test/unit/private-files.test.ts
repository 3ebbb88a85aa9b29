import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Key } from 'interface-datastore'
import { describe, expect, it } from 'vitest'
import { openDatastore } from '../../common/datastore.js'
import { IDENTITY_FILE, loadIdentity } from '../../common/identity.js'
import { makePrivateDir, makePrivateFiles } from '../../common/private-files.js'
import { useTempDirs } from '../fixtures/dirs.js'

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777

describe('a data dir', () => {
  const tempDir = useTempDirs()

  it('that existed as 0755 is made 0700, with its identity key and datastore files 0600', async () => {
    const dataDir = join(await tempDir(), 'data')
    await mkdir(dataDir, { mode: 0o755 })
    await chmod(dataDir, 0o755)
    // a datastore dir left world-readable by an older version
    await mkdir(join(dataDir, 'datastore'), { mode: 0o755 })
    await chmod(join(dataDir, 'datastore'), 0o755)

    await loadIdentity(dataDir)
    const { datastore, close } = await openDatastore(dataDir)
    try {
      await datastore.put(new Key('/some/record'), new TextEncoder().encode('private'))
    } finally {
      await close()
    }
    expect(await mode(dataDir)).toBe(0o700)
    expect(await mode(join(dataDir, IDENTITY_FILE))).toBe(0o600)
    expect(await mode(join(dataDir, 'datastore'))).toBe(0o700)

    // LevelDB's files, made with the process umask, are set 0600 at the next open
    const reopened = await openDatastore(dataDir)
    await reopened.close()
    const files = await readdir(join(dataDir, 'datastore'))
    expect(files.length).toBeGreaterThan(0)
    for (const file of files) expect({ file, mode: await mode(join(dataDir, 'datastore', file)) }).toEqual({ file, mode: 0o600 })
  })

  it('files listed for it are made 0600, missing ones skipped', async () => {
    const dir = await tempDir()
    await chmod(dir, 0o755)
    await makePrivateDir(dir)
    expect(await mode(dir)).toBe(0o700)
    const db = join(dir, 'messages.db')
    await writeFile(db, 'x', { mode: 0o644 })
    await writeFile(`${db}-wal`, 'x', { mode: 0o666 })
    await chmod(`${db}-wal`, 0o666)
    await makePrivateFiles([db, `${db}-wal`, `${db}-shm`])
    expect([await mode(db), await mode(`${db}-wal`)]).toEqual([0o600, 0o600])
  })
})
