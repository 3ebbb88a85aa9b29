import { join } from 'node:path'
import { MemoryDatastore } from 'datastore-core'
import { LevelDatastore } from 'datastore-level'
import { makePrivateDir, makePrivateDirFiles } from './private-files.js'
import type { Datastore } from 'interface-datastore'

/** An opened libp2p datastore and how to close it. */
export interface OpenDatastore {
  datastore: Datastore
  close(): Promise<void>
}

/**
 * The libp2p datastore (peer store, DHT records): in memory without a data dir,
 * else a LevelDB in `<dataDir>/datastore`. The data dir and the datastore dir
 * are made 0700 and the LevelDB files 0600, whatever they were.
 */
export async function openDatastore (dataDir?: string): Promise<OpenDatastore> {
  if (dataDir == null) {
    return { datastore: new MemoryDatastore(), close: async () => {} }
  }
  const path = join(dataDir, 'datastore')
  await makePrivateDir(dataDir)
  await makePrivateDir(path)
  const datastore = new LevelDatastore(path)
  try {
    await datastore.open()
  } catch (err: any) {
    throw new Error(`cannot open the datastore at ${path}: ${err.cause?.message ?? err.message}. Is another parley process using this data dir?`)
  }
  try {
    await makePrivateDirFiles(path)
  } catch (err) {
    await datastore.close()
    throw err
  }
  return { datastore, close: async () => { await datastore.close() } }
}
