/**
 * What a backup takes from a data dir and puts back: the identity key, the
 * message store (contacts, block list and accepted peers, history, outbox,
 * message requests), the mailbox keys (without them, mail sealed to this node
 * while it moved could never be read) and config.json. Not the libp2p datastore (peer store,
 * DHT records: a cache the node rebuilds) nor api.json (a running daemon's
 * address and token).
 */
import { access, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { CONFIG_FILE } from '../../common/config.js'
import { openDatastore } from '../../common/datastore.js'
import { IDENTITY_FILE } from '../../common/identity.js'
import { makePrivateDir } from '../../common/private-files.js'
import { MAILBOX_KEYS_FILE } from '../../node/mailbox/keys.js'
import { STORE_FILE } from '../../node/node.js'
import { checkStoreSnapshot, snapshotStore } from '../../node/store/snapshot.js'
import { API_FILE } from '../api/file.js'
import { BackupFormatError, packArchive } from './format.js'
import type { OpenDatastore } from '../../common/datastore.js'
import type { BackupArchive, BackupFileName } from './format.js'

/** What a data dir's node state is made of: one of these present means there is a node to overwrite. */
const NODE_FILES = [IDENTITY_FILE, STORE_FILE, CONFIG_FILE]

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

async function readOptional (path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path)
  } catch (err: any) {
    if (err.code === 'ENOENT') return undefined
    throw err
  }
}

function peerIdOf (identity: Uint8Array, where: string): string {
  try {
    return peerIdFromPrivateKey(privateKeyFromProtobuf(identity)).toString()
  } catch (err: any) {
    throw new BackupFormatError(`${where} is not a valid private key (${err.message as string})`)
  }
}

/**
 * The archive of a data dir, whether a node runs on it or not: the store is
 * copied with a read transaction (see snapshotStore), the identity key and
 * config.json are read as they are. Nothing in the data dir is written.
 */
export async function archiveDataDir (dataDir: string, now = new Date()): Promise<{ archive: Uint8Array, peerId: string, files: BackupFileName[] }> {
  const identity = await readOptional(join(dataDir, IDENTITY_FILE))
  if (identity == null) throw new Error(`${dataDir} holds no parley identity (${IDENTITY_FILE}): nothing to export`)
  const peerId = peerIdOf(identity, join(dataDir, IDENTITY_FILE))
  const files = new Map<BackupFileName, Uint8Array>([['identity.key', identity]])
  const config = await readOptional(join(dataDir, CONFIG_FILE))
  if (config != null) files.set('config.json', config)
  const mailboxKeys = await readOptional(join(dataDir, MAILBOX_KEYS_FILE))
  if (mailboxKeys != null) files.set('mailbox-keys.json', mailboxKeys)
  const store = join(dataDir, STORE_FILE)
  if (await exists(store)) {
    // inside the data dir (0700): the copy is the whole history, in clear, and stays where the store is
    const scratch = await mkdtemp(join(dataDir, '.export-'))
    try {
      const copy = join(scratch, STORE_FILE)
      snapshotStore(store, copy)
      files.set('messages.db', await readFile(copy))
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  }
  return { archive: packArchive({ createdAt: now.toISOString(), peerId }, files), peerId, files: [...files.keys()] }
}

/** No node may run on the data dir (while an import writes it); a running one holds its datastore's lock. */
export class DataDirBusyError extends Error {
  static override name = 'DataDirBusyError'
  override name = 'DataDirBusyError'
}

/** The data dir already holds a node, and `--force` was not given. */
export class DataDirNotEmptyError extends Error {
  static override name = 'DataDirNotEmptyError'
  override name = 'DataDirNotEmptyError'
}

async function lockDataDir (dataDir: string): Promise<OpenDatastore> {
  try {
    return await openDatastore(dataDir)
  } catch (err: any) {
    throw new DataDirBusyError(`a parley node (or another parley process) is using ${dataDir}: stop it first, then import again; nothing was written (${err.message as string})`)
  }
}

/**
 * Refuses early, before a passphrase is asked for: a node runs on the data
 * dir, or it holds a node and `force` is off. (restoreDataDir checks again
 * under the lock.)
 */
export async function checkRestoreTarget (dataDir: string, force: boolean): Promise<void> {
  if (await exists(join(dataDir, 'datastore'))) await (await lockDataDir(dataDir)).close()
  if (!force) await refuseNodeThere(dataDir)
}

async function refuseNodeThere (dataDir: string): Promise<void> {
  const present = []
  for (const name of NODE_FILES) {
    if (await exists(join(dataDir, name))) present.push(name)
  }
  if (present.length > 0) {
    throw new DataDirNotEmptyError(`${dataDir} already holds a parley node (${present.join(', ')}); importing would replace it and its identity for good. Import into another data dir (--data-dir), or run again with --force; nothing was written`)
  }
}

/**
 * Checks a decrypted archive: the identity key is a private key whose peer ID
 * is the manifest's, config.json is a JSON object. (The store is checked once
 * written, by SQLite.)
 */
export function checkArchive (archive: BackupArchive): void {
  const identity = archive.files.get('identity.key')
  if (identity == null) throw new BackupFormatError('the backup holds no identity key')
  const peerId = peerIdOf(identity, 'the backup\'s identity key')
  if (peerId !== archive.manifest.peerId) throw new BackupFormatError(`the backup's identity key is ${peerId}, its manifest says ${archive.manifest.peerId}`)
  const config = archive.files.get('config.json')
  if (config != null) {
    let value: unknown
    try {
      value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(config))
    } catch (err: any) {
      throw new BackupFormatError(`the backup's config.json is not JSON (${err.message as string})`)
    }
    if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new BackupFormatError('the backup\'s config.json is not a JSON object')
  }
}

/**
 * Writes a decrypted backup into `dataDir`, holding the data dir's lock (the
 * one a running node holds) throughout, so no node runs on it meanwhile.
 * Each file is written private (0600) under a temporary name and renamed into
 * place; the store's old -wal and -shm go first, as they belong to the store
 * being replaced. With `force`, a node already there is replaced: a store the
 * backup lacks is removed (it is the history of another identity) and the
 * libp2p datastore, a cache, is emptied; a config.json the backup lacks is
 * kept.
 *
 * @throws DataDirBusyError when a node runs on the data dir
 * @throws DataDirNotEmptyError when it holds a node and `force` is off
 */
export async function restoreDataDir (dataDir: string, archive: BackupArchive, options: { force: boolean }): Promise<{ peerId: string, files: BackupFileName[] }> {
  checkArchive(archive)
  await makePrivateDir(dataDir)
  const lock = await lockDataDir(dataDir)
  const staged: string[] = []
  try {
    if (!options.force) await refuseNodeThere(dataDir)
    const stage = async (name: BackupFileName, bytes: Uint8Array): Promise<string> => {
      const path = join(dataDir, `${name}.import`)
      await rm(path, { force: true })
      staged.push(path)
      await writeFile(path, bytes, { mode: 0o600, flag: 'wx' })
      return path
    }
    const incoming = new Map<BackupFileName, string>()
    for (const [name, bytes] of archive.files) incoming.set(name, await stage(name, bytes))
    const store = incoming.get('messages.db')
    if (store != null) {
      try {
        checkStoreSnapshot(store)
      } catch (err: any) {
        throw new BackupFormatError(`${err.message as string}; nothing was written`)
      }
    }

    const storeFile = join(dataDir, STORE_FILE)
    await Promise.all(['-wal', '-shm', '-journal'].map(async suffix => { await rm(`${storeFile}${suffix}`, { force: true }) }))
    if (store == null) await rm(storeFile, { force: true })
    // another identity's mailbox keys are of no use to this one
    if (!incoming.has('mailbox-keys.json')) await rm(join(dataDir, MAILBOX_KEYS_FILE), { force: true })
    await rm(join(dataDir, API_FILE), { force: true })
    // the identity last: a data dir left half-restored by a crash still has no identity, or the old one
    for (const name of ['config.json', 'messages.db', 'mailbox-keys.json', 'identity.key'] as const) {
      const path = incoming.get(name)
      if (path != null) await rename(path, join(dataDir, name))
    }
    staged.length = 0
    if (options.force) {
      // the peer store and DHT records of the node replaced: rebuilt by the next start
      for await (const key of lock.datastore.queryKeys({})) await lock.datastore.delete(key)
    }
    return { peerId: archive.manifest.peerId, files: [...archive.files.keys()] }
  } finally {
    await Promise.all(staged.map(async path => { await rm(path, { force: true }) }))
    await lock.close()
  }
}
