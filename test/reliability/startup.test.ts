import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import { createNode } from '../../index.js'
import { STORE_FILE } from '../../node/node.js'
import { SCHEMA_VERSION } from '../../node/store/migrations.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { useNetwork } from '../fixtures/network.js'

describe('start-up with a data dir', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()

  it('fails with an error naming a corrupt store file, and leaves the file alone', async () => {
    const dataDir = await tempDir()
    await mkdir(dataDir, { recursive: true })
    const file = join(dataDir, STORE_FILE)
    const garbage = Buffer.alloc(8192, 0x5a)
    await writeFile(file, garbage)
    const err = await createNode({ dataDir, listen: [] }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'StoreError', message: expect.stringContaining(file) })
    expect(await readFile(file)).toEqual(garbage)
    // the failed start released everything: a good store lets the node start
    await writeFile(file, '')
    const node = await net.node({ dataDir, listen: [] })
    expect(node.outbox()).toEqual([])
  })

  it('refuses an ICE bind address that is not an IP address', async () => {
    const err = await createNode({ iceBindAddress: 'eth0', listen: [] }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'InvalidConfigError', message: expect.stringContaining('iceBindAddress') })
  })

  it('fails with an error naming a store from a newer schema', async () => {
    const dataDir = await tempDir()
    const first = await createNode({ dataDir, listen: [] })
    await first.stop()
    const file = join(dataDir, STORE_FILE)
    const db = new DatabaseSync(file)
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 5}`)
    db.close()
    const before = await readFile(file)
    const err = await createNode({ dataDir, listen: [] }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'StoreError', message: expect.stringMatching(/newer parley/) })
    expect((err as Error).message).toContain(file)
    expect(await readFile(file)).toEqual(before)
  })

  it('keeps the peer ID across restarts and refuses a second node on the same data dir', async () => {
    const dataDir = await tempDir()
    const first = await net.node({ dataDir, listen: [] })
    const err = await createNode({ dataDir, listen: [] }).catch((e: Error) => e)
    expect((err as Error).message).toMatch(/another parley process/)
    await first.stop()
    const again = await net.node({ dataDir, listen: [] })
    expect(again.peerId.toString()).toBe(first.peerId.toString())
  })
})
