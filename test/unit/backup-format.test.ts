import { open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BackupFormatError, HEADER_BYTES, MAX_BACKUP_BYTES, openBackup, packArchive, readBackupFile, sealBackup, unpackArchive } from '../../daemon/backup/format.js'
import { useTempDirs } from '../fixtures/dirs.js'
import type { BackupFileName } from '../../daemon/backup/format.js'

// cheap parameters: the format, not scrypt's cost, is under test
const FAST = { logN: 10, r: 8, p: 1 }

const files = (): Map<BackupFileName, Uint8Array> => new Map<BackupFileName, Uint8Array>([
  ['identity.key', new Uint8Array([1, 2, 3])],
  ['config.json', new TextEncoder().encode('{"relays":[]}')],
  ['messages.db', new Uint8Array(1000).fill(7)]
])
const meta = { createdAt: '2026-12-01T00:00:00.000Z', peerId: '12D3KooWtest' }

/** An archive whose manifest is `manifest` (any JSON) followed by `rest`. */
function rawArchive (manifest: unknown, rest = new Uint8Array()): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(manifest))
  const bytes = new Uint8Array(4 + json.length + rest.length)
  new DataView(bytes.buffer).setUint32(0, json.length)
  bytes.set(json, 4)
  bytes.set(rest, 4 + json.length)
  return bytes
}

describe('the backup file format', () => {
  const tempDir = useTempDirs()

  it('round-trips: the files come back byte for byte, with the manifest', async () => {
    const sealed = await sealBackup(packArchive(meta, files()), 'correct horse', FAST)
    expect(new TextDecoder().decode(sealed.subarray(0, 8))).toBe('PARLEYBK')
    expect([...sealed.subarray(8, 13)]).toEqual([1, 1, 10, 8, 1])
    const { manifest, files: back } = unpackArchive(await openBackup(sealed, 'correct horse'))
    expect(manifest).toEqual({ format: 'parley-backup', version: 1, ...meta, files: [{ name: 'identity.key', size: 3 }, { name: 'config.json', size: 13 }, { name: 'messages.db', size: 1000 }] })
    expect(back).toEqual(files())
  })

  it('takes the passphrase in NFC, whatever composition it was typed in', async () => {
    const sealed = await sealBackup(packArchive(meta, files()), 'caf\u00e9', FAST)
    expect(unpackArchive(await openBackup(sealed, 'cafe\u0301')).files).toEqual(files())
  })

  it('uses a fresh salt and nonce each time', async () => {
    const archive = packArchive(meta, files())
    const [a, b] = await Promise.all([sealBackup(archive, 'pw', FAST), sealBackup(archive, 'pw', FAST)])
    expect(a.subarray(13, HEADER_BYTES)).not.toEqual(b.subarray(13, HEADER_BYTES))
  })

  it('refuses a wrong passphrase', async () => {
    const sealed = await sealBackup(packArchive(meta, files()), 'right', FAST)
    await expect(openBackup(sealed, 'wrong')).rejects.toThrow(/wrong passphrase, or the file is damaged or was altered/)
  })

  it('refuses a file with any one byte changed, in the header or the ciphertext', async () => {
    const sealed = await sealBackup(packArchive(meta, files()), 'pw', FAST)
    // the salt, the nonce, the ciphertext, the tag (the parameters are checked by their own tests)
    for (const offset of [13, 30, HEADER_BYTES + 5, sealed.length - 1]) {
      const tampered = sealed.slice()
      tampered[offset] ^= 0x01
      await expect(openBackup(tampered, 'pw'), `byte ${offset}`).rejects.toThrow(/does not authenticate/)
    }
    const tampered = sealed.slice()
    tampered[10] = 11 // another N: another key
    await expect(openBackup(tampered, 'pw')).rejects.toThrow(/does not authenticate/)
  })

  it('refuses a truncated file, at any length', async () => {
    const sealed = await sealBackup(packArchive(meta, files()), 'pw', FAST)
    for (const length of [0, 4, 8, 20, HEADER_BYTES, HEADER_BYTES + 15, HEADER_BYTES + 16, sealed.length - 1]) {
      await expect(openBackup(sealed.subarray(0, length), 'pw'), `length ${length}`).rejects.toThrow(BackupFormatError)
    }
  })

  it('refuses what is not a backup, a newer version, and scrypt parameters that would take too much memory', async () => {
    await expect(openBackup(new TextEncoder().encode('SQLite format 3\0 and more bytes than a header'), 'pw')).rejects.toThrow(/not a parley backup/)
    const sealed = await sealBackup(packArchive(meta, files()), 'pw', FAST)
    const newer = sealed.slice()
    newer[8] = 2
    await expect(openBackup(newer, 'pw')).rejects.toThrow(/format version 2: this parley reads version 1/)
    const greedy = sealed.slice()
    greedy[10] = 30 // N = 2^30: 1 TiB
    await expect(openBackup(greedy, 'pw')).rejects.toThrow(/scrypt parameters N=2\^30.*outside/)
    const parallel = sealed.slice()
    parallel[12] = 200
    await expect(openBackup(parallel, 'pw')).rejects.toThrow(/outside/)
    await expect(sealBackup(new Uint8Array(1), '', FAST)).rejects.toThrow(/passphrase is empty/)
  })

  it('refuses archive lengths that do not add up: oversize manifest, files past the end, bytes left over', () => {
    const huge = new Uint8Array(8)
    new DataView(huge.buffer).setUint32(0, 0xffffffff)
    expect(() => unpackArchive(huge)).toThrow(/manifest length 4294967295 is over its limit/)
    expect(() => unpackArchive(new Uint8Array(2))).toThrow(/truncated/)

    const manifest = { format: 'parley-backup', version: 1, ...meta, files: [{ name: 'identity.key', size: 3 }] }
    expect(unpackArchive(rawArchive(manifest, new Uint8Array(3))).files.get('identity.key')).toEqual(new Uint8Array(3))
    expect(() => unpackArchive(rawArchive(manifest, new Uint8Array(2)))).toThrow(/runs past the end/)
    expect(() => unpackArchive(rawArchive(manifest, new Uint8Array(4)))).toThrow(/1 bytes its manifest does not account for/)
    expect(() => unpackArchive(rawArchive({ ...manifest, files: [{ name: 'identity.key', size: MAX_BACKUP_BYTES }] }, new Uint8Array(3)))).toThrow(/runs past the end/)
    expect(() => unpackArchive(rawArchive({ ...manifest, files: [{ name: 'identity.key', size: MAX_BACKUP_BYTES + 1 }] }))).toThrow(/malformed/)
  })

  it('refuses a manifest naming files outside the data dir\'s, twice the same, or no identity', () => {
    const manifest = { format: 'parley-backup', version: 1, ...meta }
    expect(() => unpackArchive(rawArchive({ ...manifest, files: [{ name: '../../.bashrc', size: 0 }] }))).toThrow(/malformed/)
    expect(() => unpackArchive(rawArchive({ ...manifest, files: [{ name: 'identity.key', size: 0 }, { name: 'identity.key', size: 0 }] }))).toThrow(/twice/)
    expect(() => unpackArchive(rawArchive({ ...manifest, files: [{ name: 'config.json', size: 0 }] }))).toThrow(/no identity.key/)
    expect(() => unpackArchive(rawArchive({ ...manifest, extra: true, files: [] }))).toThrow(/malformed/)
    expect(() => unpackArchive(rawArchive('not an object'))).toThrow(/malformed/)
    expect(() => unpackArchive(rawArchive({ ...manifest, createdAt: '\x1b]0;retitled\x07', files: [] }))).toThrow(/malformed/)
    const notJson = new Uint8Array(8)
    new DataView(notJson.buffer).setUint32(0, 4)
    expect(() => unpackArchive(notJson)).toThrow(/not JSON/)
  })

  it('reads a file only up to the size limit, and reads a backup whole', async () => {
    const dir = await tempDir()
    const sealed = await sealBackup(packArchive(meta, files()), 'pw', FAST)
    await writeFile(join(dir, 'backup'), sealed)
    expect(await readBackupFile(join(dir, 'backup'))).toEqual(sealed)

    // a sparse file: over the limit without taking the disk
    const handle = await open(join(dir, 'huge'), 'w')
    await handle.truncate(MAX_BACKUP_BYTES + 1)
    await handle.close()
    await expect(readBackupFile(join(dir, 'huge'))).rejects.toThrow(/over the 1073741824-byte limit/)
  })
})
