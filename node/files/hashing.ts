/**
 * Reading a file to offer: its chunk hashes, their root and the SHA-256 of
 * the whole (protocols/file/README.md §3), from a path or from a stream that
 * is written to a file as it is read.
 */
import { createHash } from 'node:crypto'
import { open, rm } from 'node:fs/promises'
import { CHUNK_BYTES, HASH_BYTES, MAX_FILE_BYTES } from '../../protocols/file/index.js'
import type { FileHandle } from 'node:fs/promises'

/**
 * SHA-256 by the platform (OpenSSL): about 5× @noble/hashes here, and files
 * are hashed three times over (offer, serving, receiving). The protocol
 * module keeps @noble/hashes, which a browser can run.
 */
export function sha256 (data: Uint8Array): Uint8Array<ArrayBuffer> {
  const digest = createHash('sha256').update(data).digest()
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength) as Uint8Array<ArrayBuffer>
}

/** An incremental SHA-256 of a whole file, fed in order. */
export function wholeHasher (): { update: (data: Uint8Array) => void, digest: (encoding: 'hex') => string } {
  const hash = createHash('sha256')
  return { update: (data) => { hash.update(data) }, digest: (encoding) => hash.digest(encoding) }
}

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export interface FileDigest {
  size: number
  /** The chunk hashes, concatenated. */
  hashes: Uint8Array<ArrayBuffer>
  root: string
  sha256: string
}

/** The file is over the protocol's size bound (spec §3). */
export class FileTooLargeError extends Error {
  static override name = 'FileTooLargeError'
  override name = 'FileTooLargeError'
}

class Digester {
  private readonly whole = createHash('sha256')
  private readonly chunkHashes: Uint8Array[] = []
  size = 0

  chunk (data: Uint8Array): void {
    this.size += data.byteLength
    if (this.size > MAX_FILE_BYTES) throw new FileTooLargeError(`the file is over ${MAX_FILE_BYTES} bytes, the most an offer may announce`)
    this.whole.update(data)
    this.chunkHashes.push(sha256(data))
  }

  digest (): FileDigest {
    const hashes = new Uint8Array(this.chunkHashes.length * HASH_BYTES)
    this.chunkHashes.forEach((h, i) => { hashes.set(h, i * HASH_BYTES) })
    return { size: this.size, hashes, root: hex(sha256(hashes)), sha256: this.whole.digest('hex') }
  }
}

/** Reads `handle` from the start in whole chunks. */
async function * chunksOf (handle: FileHandle): AsyncGenerator<Uint8Array> {
  let position = 0
  for (;;) {
    const buffer = new Uint8Array(CHUNK_BYTES)
    let filled = 0
    while (filled < CHUNK_BYTES) {
      const { bytesRead } = await handle.read(buffer, filled, CHUNK_BYTES - filled, position)
      if (bytesRead === 0) break
      filled += bytesRead
      position += bytesRead
    }
    if (filled === 0) return
    yield buffer.subarray(0, filled)
    if (filled < CHUNK_BYTES) return
  }
}

/** The digest of the file at `path`. */
export async function digestFile (path: string): Promise<FileDigest> {
  const handle = await open(path, 'r')
  try {
    const digester = new Digester()
    for await (const chunk of chunksOf(handle)) digester.chunk(chunk)
    return digester.digest()
  } finally {
    await handle.close()
  }
}

/** The SHA-256 (hex) of the file at `path`. */
export async function sha256OfFile (path: string): Promise<string> {
  const handle = await open(path, 'r')
  try {
    const whole = createHash('sha256')
    for await (const chunk of chunksOf(handle)) whole.update(chunk)
    return whole.digest('hex')
  } finally {
    await handle.close()
  }
}

/** Writes `source` to a new file at `path` (fsynced) and returns its digest; the file is removed if this fails. */
export async function writeAndDigest (source: AsyncIterable<Uint8Array>, path: string): Promise<FileDigest> {
  const handle = await open(path, 'wx', 0o600)
  const digester = new Digester()
  let pending = new Uint8Array(CHUNK_BYTES)
  let filled = 0
  try {
    for await (const piece of source) {
      let offset = 0
      while (offset < piece.byteLength) {
        const take = Math.min(CHUNK_BYTES - filled, piece.byteLength - offset)
        pending.set(piece.subarray(offset, offset + take), filled)
        filled += take
        offset += take
        if (filled === CHUNK_BYTES) {
          digester.chunk(pending)
          await handle.write(pending)
          pending = new Uint8Array(CHUNK_BYTES)
          filled = 0
        }
      }
    }
    if (filled > 0) {
      digester.chunk(pending.subarray(0, filled))
      await handle.write(pending, 0, filled)
    }
    await handle.datasync()
    return digester.digest()
  } catch (err) {
    await handle.close().catch(() => {})
    await rm(path, { force: true })
    throw err
  } finally {
    await handle.close().catch(() => {})
  }
}
