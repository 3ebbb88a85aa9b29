/**
 * The backup file (`parley export` / `parley import`), as docs/backup-format.md
 * specifies it: a fixed 54-byte header (magic, version, scrypt parameters,
 * salt, cipher, nonce) and one XChaCha20-Poly1305 ciphertext that
 * authenticates the header too. Inside, an archive: a JSON manifest and the
 * files back to back. The cryptography is @noble/hashes' scrypt and
 * @noble/ciphers' AEAD; this module only lays bytes out and checks lengths.
 */
import { open } from 'node:fs/promises'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { randomBytes } from '@noble/ciphers/utils.js'
import { scryptAsync } from '@noble/hashes/scrypt.js'
import { z } from 'zod'

export const BACKUP_MAGIC = 'PARLEYBK'
export const BACKUP_VERSION = 1
const KDF_SCRYPT = 1
const CIPHER_XCHACHA20_POLY1305 = 1
const SALT_BYTES = 16
const NONCE_BYTES = 24
const TAG_BYTES = 16
export const HEADER_BYTES = 8 + 1 + 1 + 3 + SALT_BYTES + 1 + NONCE_BYTES

/** A backup file is never read past this: a hostile or damaged file cannot make import take more memory. */
export const MAX_BACKUP_BYTES = 1024 * 1024 * 1024
const MAX_MANIFEST_BYTES = 64 * 1024

/** scrypt's cost: N = 2^logN, r, p (RFC 7914). */
export interface ScryptParams { logN: number, r: number, p: number }

/** What export writes: N = 2^17, r = 8, p = 1 (128 MiB, about a second). */
export const DEFAULT_SCRYPT: ScryptParams = { logN: 17, r: 8, p: 1 }

/** scrypt takes 128·N·r bytes: a file's parameters may ask for at most this much. */
const MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
const MAX_SCRYPT_P = 4

/** The file is not a backup, is damaged, was altered, or the passphrase is wrong; the message says which and that nothing was written. */
export class BackupFormatError extends Error {
  static override name = 'BackupFormatError'
  override name = 'BackupFormatError'
}

function checkScrypt ({ logN, r, p }: ScryptParams): void {
  if (!Number.isInteger(logN) || !Number.isInteger(r) || !Number.isInteger(p) || logN < 1 || r < 1 || p < 1 ||
    p > MAX_SCRYPT_P || 128 * 2 ** logN * r > MAX_SCRYPT_MEMORY) {
    throw new BackupFormatError(`scrypt parameters N=2^${logN}, r=${r}, p=${p} are outside what parley accepts (128·N·r ≤ 256 MiB, p ≤ ${MAX_SCRYPT_P})`)
  }
}

async function deriveKey (passphrase: string, salt: Uint8Array, params: ScryptParams): Promise<Uint8Array> {
  // NFC: the same passphrase typed on another system may arrive composed differently
  const secret = new TextEncoder().encode(passphrase.normalize('NFC'))
  return scryptAsync(secret, salt, { N: 2 ** params.logN, r: params.r, p: params.p, dkLen: 32, maxmem: MAX_SCRYPT_MEMORY + 1024 * 1024 })
}

function header (params: ScryptParams, salt: Uint8Array, nonce: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES)
  bytes.set(new TextEncoder().encode(BACKUP_MAGIC), 0)
  bytes[8] = BACKUP_VERSION
  bytes[9] = KDF_SCRYPT
  bytes[10] = params.logN
  bytes[11] = params.r
  bytes[12] = params.p
  bytes.set(salt, 13)
  bytes[13 + SALT_BYTES] = CIPHER_XCHACHA20_POLY1305
  bytes.set(nonce, 14 + SALT_BYTES)
  return bytes
}

/** Encrypts `plaintext` under `passphrase`: the whole backup file. */
export async function sealBackup (plaintext: Uint8Array, passphrase: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<Uint8Array> {
  if (passphrase === '') throw new BackupFormatError('the passphrase is empty')
  checkScrypt(params)
  if (HEADER_BYTES + plaintext.length + TAG_BYTES > MAX_BACKUP_BYTES) {
    throw new BackupFormatError(`the backup would take ${HEADER_BYTES + plaintext.length + TAG_BYTES} bytes, over the ${MAX_BACKUP_BYTES}-byte limit of a backup file`)
  }
  const salt = randomBytes(SALT_BYTES)
  const nonce = randomBytes(NONCE_BYTES)
  const head = header(params, salt, nonce)
  const key = await deriveKey(passphrase, salt, params)
  const sealed = xchacha20poly1305(key, nonce, head).encrypt(plaintext)
  const file = new Uint8Array(HEADER_BYTES + sealed.length)
  file.set(head, 0)
  file.set(sealed, HEADER_BYTES)
  return file
}

/**
 * Decrypts a backup file's bytes.
 *
 * @throws BackupFormatError when it is not a parley backup, a newer format, truncated, or does not authenticate (wrong passphrase, damaged or altered)
 */
export async function openBackup (file: Uint8Array, passphrase: string): Promise<Uint8Array> {
  const params = checkBackupHeader(file)
  const head = file.subarray(0, HEADER_BYTES)
  const salt = file.subarray(13, 13 + SALT_BYTES)
  const nonce = file.subarray(14 + SALT_BYTES, HEADER_BYTES)
  const key = await deriveKey(passphrase, salt, params)
  try {
    return xchacha20poly1305(key, nonce, head).decrypt(file.subarray(HEADER_BYTES))
  } catch {
    throw new BackupFormatError('wrong passphrase, or the file is damaged or was altered (it does not authenticate)')
  }
}

/**
 * What can be checked of a backup file without its passphrase (magic,
 * version, algorithms, lengths, scrypt's cost); its scrypt parameters.
 *
 * @throws BackupFormatError when it is not a backup this parley can read
 */
export function checkBackupHeader (file: Uint8Array): ScryptParams {
  if (file.length < 8 || new TextDecoder().decode(file.subarray(0, 8)) !== BACKUP_MAGIC) {
    throw new BackupFormatError('not a parley backup (no PARLEYBK header)')
  }
  if (file.length < HEADER_BYTES + TAG_BYTES) throw new BackupFormatError(`the backup is truncated (${file.length} bytes)`)
  if (file[8] !== BACKUP_VERSION) throw new BackupFormatError(`backup format version ${file[8]}: this parley reads version ${BACKUP_VERSION}; use a newer parley`)
  if (file[9] !== KDF_SCRYPT || file[13 + SALT_BYTES] !== CIPHER_XCHACHA20_POLY1305) {
    throw new BackupFormatError('the backup names a key derivation or cipher this parley does not know')
  }
  if (file.length > MAX_BACKUP_BYTES) throw new BackupFormatError(`the backup is over the ${MAX_BACKUP_BYTES}-byte limit`)
  const params = { logN: file[10], r: file[11], p: file[12] }
  checkScrypt(params)
  return params
}

/**
 * Reads a backup file whole, refusing one over MAX_BACKUP_BYTES before
 * reading it.
 */
export async function readBackupFile (path: string): Promise<Uint8Array> {
  const handle = await open(path, 'r')
  try {
    const { size } = await handle.stat()
    if (size > MAX_BACKUP_BYTES) throw new BackupFormatError(`${path} is ${size} bytes, over the ${MAX_BACKUP_BYTES}-byte limit of a backup: not a parley backup`)
    const bytes = new Uint8Array(size)
    let read = 0
    while (read < size) {
      const { bytesRead } = await handle.read(bytes, read, size - read, read)
      if (bytesRead === 0) break
      read += bytesRead
    }
    return bytes.subarray(0, read)
  } finally {
    await handle.close()
  }
}

// ---- the archive inside the ciphertext ----

/** The files a backup may hold, by their name in the data dir. */
export const BACKUP_FILES = ['identity.key', 'config.json', 'messages.db', 'mailbox-keys.json'] as const
export type BackupFileName = typeof BACKUP_FILES[number]

const manifestSchema = z.strictObject({
  format: z.literal('parley-backup'),
  version: z.literal(BACKUP_VERSION),
  createdAt: z.iso.datetime(),
  peerId: z.string().max(128),
  files: z.array(z.strictObject({
    name: z.enum(BACKUP_FILES),
    size: z.int().min(0).max(MAX_BACKUP_BYTES)
  })).max(BACKUP_FILES.length)
})

export type BackupManifest = z.output<typeof manifestSchema>

export interface BackupArchive {
  manifest: BackupManifest
  files: Map<BackupFileName, Uint8Array>
}

/** Lays out the archive: manifest length (uint32 BE), the manifest's JSON, then the files in its order. */
export function packArchive (meta: { createdAt: string, peerId: string }, files: Map<BackupFileName, Uint8Array>): Uint8Array {
  const manifest: BackupManifest = {
    format: 'parley-backup',
    version: BACKUP_VERSION,
    ...meta,
    files: [...files].map(([name, bytes]) => ({ name, size: bytes.length }))
  }
  const json = new TextEncoder().encode(JSON.stringify(manifest))
  let total = 4 + json.length
  for (const bytes of files.values()) total += bytes.length
  if (total + HEADER_BYTES + TAG_BYTES > MAX_BACKUP_BYTES) {
    throw new BackupFormatError(`the backup would take ${total + HEADER_BYTES + TAG_BYTES} bytes, over the ${MAX_BACKUP_BYTES}-byte limit of a backup file`)
  }
  const archive = new Uint8Array(total)
  new DataView(archive.buffer).setUint32(0, json.length)
  archive.set(json, 4)
  let offset = 4 + json.length
  for (const bytes of files.values()) {
    archive.set(bytes, offset)
    offset += bytes.length
  }
  return archive
}

/**
 * Splits a decrypted archive into its manifest and files, checking every
 * length against what is there.
 *
 * @throws BackupFormatError when the manifest is malformed or the lengths do not add up
 */
export function unpackArchive (archive: Uint8Array): BackupArchive {
  if (archive.length < 4) throw new BackupFormatError('the backup\'s archive is truncated')
  const length = new DataView(archive.buffer, archive.byteOffset, archive.byteLength).getUint32(0)
  if (length > MAX_MANIFEST_BYTES || 4 + length > archive.length) {
    throw new BackupFormatError(`the backup's manifest length ${length} is over its limit or past the end of the archive`)
  }
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(archive.subarray(4, 4 + length)))
  } catch (err: any) {
    throw new BackupFormatError(`the backup's manifest is not JSON (${err.message})`)
  }
  const parsed = manifestSchema.safeParse(json)
  if (!parsed.success) throw new BackupFormatError(`the backup's manifest is malformed: ${z.prettifyError(parsed.error)}`)
  const manifest = parsed.data
  const files = new Map<BackupFileName, Uint8Array>()
  let offset = 4 + length
  for (const { name, size } of manifest.files) {
    if (files.has(name)) throw new BackupFormatError(`the backup lists ${name} twice`)
    if (offset + size > archive.length) throw new BackupFormatError(`the backup's ${name} (${size} bytes) runs past the end of the archive`)
    files.set(name, archive.subarray(offset, offset + size))
    offset += size
  }
  if (offset !== archive.length) throw new BackupFormatError(`the backup's archive has ${archive.length - offset} bytes its manifest does not account for`)
  if (!files.has('identity.key')) throw new BackupFormatError('the backup holds no identity.key')
  return { manifest, files }
}
