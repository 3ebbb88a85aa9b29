/**
 * The node's mailbox key pairs (protocols/mailbox/README.md §2): X25519 keys,
 * separate from the libp2p identity, rotated every `rotateEvery`, each published
 * (usable by senders) until its `expiresAt`, and its private key kept `keepFor`
 * longer, so that an envelope sealed to it at the last moment can still be
 * opened when it is drained at the end of its longest TTL.
 *
 * Kept in `<dataDir>/mailbox-keys.json` (mode 0600, written to a temporary file,
 * synced and renamed over the old one): losing this file makes every envelope
 * sealed to its keys unreadable, so a damaged file is an error, never replaced.
 */
import { open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { makePrivateDir, makePrivateFiles } from '../../common/private-files.js'
import { generateMailboxKeyPair, MAILBOX_KEY_BYTES, mailboxKeyId } from '../../protocols/mailbox/envelope.js'
import { MAX_MAILBOX_RECORD_KEYS } from '../../protocols/mailbox/record.js'
import type { Clock } from '../../common/clock.js'

/** Name of the mailbox keys file inside a data dir. */
export const MAILBOX_KEYS_FILE = 'mailbox-keys.json'

const DAY = 24 * 60 * 60_000

/** How often a new key becomes current, by default. */
export const DEFAULT_ROTATE_EVERY = 7 * DAY

/** How long a private key is kept after its key expired, by default: the longest envelope TTL a host grants. */
export const DEFAULT_KEEP_FOR = 30 * DAY

/** The file's format version. */
const FILE_VERSION = 1

/** More keys than any rotation schedule keeps: a file with more is not one this code wrote. */
const MAX_STORED_KEYS = 1024

export interface MailboxKeysInit {
  /** Where `mailbox-keys.json` lives; none: the keys live in memory only. */
  dataDir?: string
  /**
   * A new key becomes current this long after the current one was made, in ms.
   *
   * @default 604800000 (7 days)
   */
  rotateEvery?: number
  /**
   * A private key is deleted this long after its key expired, in ms: at least
   * the longest TTL a host may keep an envelope.
   *
   * @default 2592000000 (30 days)
   */
  keepFor?: number
}

export interface MailboxKey {
  publicKey: Uint8Array
  privateKey: Uint8Array
  /** ms since the epoch. */
  createdAt: number
  /** ms since the epoch: published until then, as the record's `expires_at`. */
  expiresAt: number
}

/** `mailbox-keys.json` cannot be read or written; the message names the file and what to do. */
export class MailboxKeysFileError extends Error {
  static override name = 'MailboxKeysFileError'
  override name = 'MailboxKeysFileError'
}

interface StoredKey { publicKey: string, privateKey: string, createdAt: number, expiresAt: number }

function isTime (value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

function keyBytes (value: unknown): Uint8Array | undefined {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(value)) return undefined
  const bytes = uint8ArrayFromString(value, 'base64url')
  return bytes.length === MAILBOX_KEY_BYTES ? bytes : undefined
}

/** The keys in `text`, newest first, or a description of what is wrong with it. */
function parseFile (text: string): MailboxKey[] | string {
  let parsed: any
  try {
    parsed = JSON.parse(text)
  } catch (err: any) {
    return `not JSON (${err.message})`
  }
  if (typeof parsed !== 'object' || parsed === null || parsed.version !== FILE_VERSION) return `not a version ${FILE_VERSION} mailbox keys file`
  if (!Array.isArray(parsed.keys) || parsed.keys.length === 0 || parsed.keys.length > MAX_STORED_KEYS) return 'it lists no keys, or far too many'
  const keys: MailboxKey[] = []
  for (const stored of parsed.keys as unknown[]) {
    const entry = stored as Partial<Record<keyof StoredKey, unknown>> | null
    const publicKey = keyBytes(entry?.publicKey)
    const privateKey = keyBytes(entry?.privateKey)
    if (entry == null || publicKey == null || privateKey == null || !isTime(entry.createdAt) || !isTime(entry.expiresAt)) {
      return `key ${keys.length + 1} is not { publicKey, privateKey (32 bytes base64url), createdAt, expiresAt (ms) }`
    }
    keys.push({ publicKey, privateKey, createdAt: entry.createdAt, expiresAt: entry.expiresAt })
  }
  return keys.sort((a, b) => b.createdAt - a.createdAt)
}

function serialize (keys: MailboxKey[]): string {
  return JSON.stringify({
    version: FILE_VERSION,
    keys: keys.map(k => ({
      publicKey: uint8ArrayToString(k.publicKey, 'base64url'),
      privateKey: uint8ArrayToString(k.privateKey, 'base64url'),
      createdAt: k.createdAt,
      expiresAt: k.expiresAt
    }))
  }, null, 2) + '\n'
}

/** Writes `text` to `file` so that a crash leaves either the old file or the new one, both whole. */
async function writeAtomically (file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`
  // a temporary file left by a crash holds nothing the real file lacks
  await rm(tmp, { force: true })
  const handle = await open(tmp, 'wx', 0o600)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmp, file)
  // the rename itself must survive a power cut, or the old keys come back without the new one
  const dir = await open(join(file, '..'), 'r')
  try {
    await dir.sync()
  } catch {
    // some file systems refuse to sync a directory; the rename is still atomic there
  } finally {
    await dir.close()
  }
}

/** The node's mailbox keys, newest first; one of them is always current. */
export class MailboxKeys {
  private keys: MailboxKey[]
  private readonly file?: string
  private readonly clock: Clock
  private readonly rotateEvery: number
  private readonly keepFor: number
  private queue: Promise<unknown> = Promise.resolve()

  private constructor (keys: MailboxKey[], init: Required<Omit<MailboxKeysInit, 'dataDir'>> & { file?: string }, clock: Clock) {
    this.keys = keys
    this.file = init.file
    this.rotateEvery = init.rotateEvery
    this.keepFor = init.keepFor
    this.clock = clock
  }

  /**
   * Loads the keys from `init.dataDir` (creating the file with a first key when
   * there is none), then rotates if a rotation is due.
   *
   * @throws MailboxKeysFileError when the file exists but cannot be read as mailbox keys
   */
  static async open (init: MailboxKeysInit, components: { clock: Clock }): Promise<MailboxKeys> {
    const rotateEvery = init.rotateEvery ?? DEFAULT_ROTATE_EVERY
    const keepFor = init.keepFor ?? DEFAULT_KEEP_FOR
    if (!(rotateEvery > 0) || !(keepFor >= 0)) {
      throw new RangeError(`rotateEvery must be positive and keepFor not negative (got ${rotateEvery}, ${keepFor})`)
    }
    let keys: MailboxKey[] = []
    let file: string | undefined
    if (init.dataDir != null) {
      await makePrivateDir(init.dataDir)
      file = join(init.dataDir, MAILBOX_KEYS_FILE)
      let text: string | undefined
      try {
        text = await readFile(file, 'utf8')
      } catch (err: any) {
        if (err.code !== 'ENOENT') throw new MailboxKeysFileError(`cannot read the mailbox keys ${file}: ${err.message}`)
      }
      if (text != null) {
        const parsed = parseFile(text)
        if (typeof parsed === 'string') {
          throw new MailboxKeysFileError(`the mailbox keys ${file} are damaged: ${parsed}. Restore the file from a backup; moving it away starts with new keys, and mail already sealed to the old ones can never be read`)
        }
        keys = parsed
        await makePrivateFiles([file])
      }
    }
    const mailboxKeys = new MailboxKeys(keys, { rotateEvery, keepFor, file }, components.clock)
    await mailboxKeys.rotateIfDue()
    return mailboxKeys
  }

  /** The key senders should seal to now. */
  current (): MailboxKey {
    return { ...this.keys[0] }
  }

  /** The keys to publish in the mailbox record: not expired, newest first, as many as a record holds. */
  published (): Array<{ publicKey: Uint8Array, expiresAt: number }> {
    const now = this.clock.now()
    return this.keys
      .filter(k => k.expiresAt > now)
      .slice(0, MAX_MAILBOX_RECORD_KEYS)
      .map(k => ({ publicKey: k.publicKey, expiresAt: k.expiresAt }))
  }

  /** The private key of the key with this id (first 8 bytes of SHA-256 of its public key), while it is kept. */
  privateKeyFor (keyId: Uint8Array): Uint8Array | undefined {
    return this.keys.find(k => uint8ArrayEquals(mailboxKeyId(k.publicKey), keyId))?.privateKey
  }

  /**
   * Makes a new key current when the current one is `rotateEvery` old (or there
   * is none), and deletes the private keys past `keepFor`; writes the file
   * before anything changes in memory, so a key is never published unsaved.
   *
   * @returns whether a new key became current (the mailbox record should be republished)
   */
  async rotateIfDue (): Promise<boolean> {
    const run = this.queue.then(async () => this.rotateNow())
    this.queue = run.catch(() => {})
    return run
  }

  private async rotateNow (): Promise<boolean> {
    const now = this.clock.now()
    const newest = this.keys[0]
    const due = newest == null || now >= newest.createdAt + this.rotateEvery
    let keys = this.keys
    if (due) {
      let pair = await generateMailboxKeyPair()
      // a key id names one key: never two held at once (a 2^-64 chance, but cheap to rule out)
      while (this.keys.some(k => uint8ArrayEquals(mailboxKeyId(k.publicKey), mailboxKeyId(pair.publicKey)))) {
        pair = await generateMailboxKeyPair()
      }
      // published for one period past its rotation, so that a record a week
      // old (in an invite, say) still names a key senders may use
      keys = [{ ...pair, createdAt: now, expiresAt: now + 2 * this.rotateEvery }, ...keys]
    }
    // the current key is never dropped, whatever the clock says
    const kept = keys.filter((k, i) => i === 0 || k.expiresAt + this.keepFor > now)
    if (!due && kept.length === this.keys.length) return false
    if (this.file != null) {
      try {
        await writeAtomically(this.file, serialize(kept))
      } catch (err: any) {
        throw new MailboxKeysFileError(`cannot write the mailbox keys ${this.file}: ${err.message}`)
      }
    }
    this.keys = kept
    return due
  }
}
