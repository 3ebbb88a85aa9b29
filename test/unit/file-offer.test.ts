import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bytesToHex } from '@noble/hashes/utils.js'
import { describe, expect, it } from 'vitest'
import { digestFile, writeAndDigest } from '../../node/files/hashing.js'
import { encodeOffer, FILE_OFFER_TYPE, MAX_THUMBNAIL_BYTES, parseOffer, thumbnailProblem } from '../../node/files/offer.js'
import { Store } from '../../node/store/index.js'
import { OFFER_CONTENT_TYPE } from '../../node/store/files.js'
import type { PreparedStatements } from '../../common/statements.js'
import type { DatabaseSync } from 'node:sqlite'
import { CHUNK_BYTES, hashChunk, hashListRoot, MAX_FILE_BYTES } from '../../protocols/file/index.js'

const offer = { name: 'photo.jpg', size: 1234, type: 'image/jpeg', sha256: 'a'.repeat(64), root: 'b'.repeat(64) }

describe('file offers', () => {
  it('round-trip through a message body that says what it is to clients that do not know files', () => {
    const body = encodeOffer(offer)
    expect(parseOffer(body)).toEqual(offer)
    expect(JSON.parse(body).summary).toMatch(/photo\.jpg/)
    expect(FILE_OFFER_TYPE).toBe('application/vnd.parley.file-offer+json')
  })

  it.each([
    ['not JSON', 'hello'],
    ['no file', '{}'],
    ['a size over the bound', JSON.stringify({ file: { ...offer, size: MAX_FILE_BYTES + 1 } })],
    ['a negative size', JSON.stringify({ file: { ...offer, size: -1 } })],
    ['a fractional size', JSON.stringify({ file: { ...offer, size: 1.5 } })],
    ['a hash that is not hex', JSON.stringify({ file: { ...offer, sha256: 'z'.repeat(64) } })],
    ['an uppercase hash', JSON.stringify({ file: { ...offer, root: 'B'.repeat(64) } })],
    ['a name with a control character', JSON.stringify({ file: { ...offer, name: 'a\nb' } })],
    ['an empty name', JSON.stringify({ file: { ...offer, name: '' } })],
    ['a name over 255 bytes', JSON.stringify({ file: { ...offer, name: 'é'.repeat(128) } })],
    ['a type that is not a media type', JSON.stringify({ file: { ...offer, type: 'jpeg' } })]
  ])('refuses a body with %s', (_what, body) => {
    expect(parseOffer(body)).toBeUndefined()
  })
})

describe('an offer\'s thumbnail', () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3])
  const withThumbnail = (thumbnail: unknown): string => {
    const body = JSON.parse(encodeOffer(offer))
    body.file.thumbnail = thumbnail
    return JSON.stringify(body)
  }

  it('travels with the offer, as the image type it says it is', () => {
    const parsed = parseOffer(encodeOffer({ ...offer, thumbnail: { type: 'image/png', data: png } }))
    expect(parsed).toEqual({ ...offer, thumbnail: { type: 'image/png', data: png } })
    const webp = new Uint8Array([0x52, 0x49, 0x46, 0x46, 0, 0, 0, 0, 0x57, 0x45, 0x42, 0x50, 9])
    expect(thumbnailProblem({ type: 'image/webp', data: webp })).toBeUndefined()
    expect(thumbnailProblem({ type: 'image/jpeg', data: new Uint8Array([0xff, 0xd8, 0xff, 0xe0]) })).toBeUndefined()
  })

  it('is refused to a sender when it is not a small image of its own type', () => {
    expect(thumbnailProblem({ type: 'image/svg+xml', data: png })).toMatch(/image\/png/)
    expect(thumbnailProblem({ type: 'image/jpeg', data: png })).toMatch(/not image\/jpeg/)
    expect(thumbnailProblem({ type: 'image/png', data: new Uint8Array(0) })).toMatch(/1 to/)
    const big = new Uint8Array(MAX_THUMBNAIL_BYTES + 1)
    big.set(png)
    expect(thumbnailProblem({ type: 'image/png', data: big })).toMatch(/1 to/)
  })

  it('is dropped, and the offer kept, when a peer sends one that breaks the rules', () => {
    const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')
    const svg = new TextEncoder().encode('<svg onload="alert(1)"/>')
    for (const bad of [
      { type: 'image/svg+xml', data: b64(svg) },
      { type: 'image/png', data: b64(svg) },
      { type: 'image/png', data: 'not base64!' },
      { type: 'image/png', data: b64(new Uint8Array(MAX_THUMBNAIL_BYTES * 2).fill(0x89)) },
      { type: 'image/png' },
      'a string',
      42
    ]) {
      expect(parseOffer(withThumbnail(bad)), JSON.stringify(bad).slice(0, 80)).toEqual(offer)
    }
  })
})

describe('file digests', () => {
  it('hash chunks of 32 KiB, the root over their hashes, and the whole; a stream gives the same as its file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'parley-digest-'))
    try {
      const content = new Uint8Array(2 * CHUNK_BYTES + 10).map((_, i) => i & 0xff)
      await writeFile(join(dir, 'a'), content)
      const digest = await digestFile(join(dir, 'a'))
      const expected = [content.subarray(0, CHUNK_BYTES), content.subarray(CHUNK_BYTES, 2 * CHUNK_BYTES), content.subarray(2 * CHUNK_BYTES)].map(c => hashChunk(c))
      expect(digest.hashes).toEqual(new Uint8Array(expected.flatMap(h => [...h])))
      expect(digest.root).toBe(bytesToHex(hashListRoot(digest.hashes)))
      expect(digest.size).toBe(content.byteLength)
      // pieces that do not line up with chunks
      async function * pieces (): AsyncGenerator<Uint8Array> { for (let i = 0; i < content.byteLength; i += 1000) yield content.subarray(i, i + 1000) }
      expect(await writeAndDigest(pieces(), join(dir, 'b'))).toEqual(digest)
      expect(await digestFile(join(dir, 'b'))).toEqual(digest)
      await writeFile(join(dir, 'empty'), new Uint8Array())
      expect((await digestFile(join(dir, 'empty'))).hashes.byteLength).toBe(0)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('the files table (migration 6)', () => {
  it('counts each complete content once and every transfer under way toward the quota', () => {
    const store = new Store()
    const base = { peer: 'p', direction: 'in' as const, name: 'n', type: 'a/b', root: 'r', createdAt: 1 }
    store.files.insert({ ...base, id: '1', size: 100, sha256: 'x', status: 'complete' })
    store.files.insert({ ...base, id: '2', size: 100, sha256: 'x', status: 'complete' })
    store.files.insert({ ...base, id: '3', size: 50, sha256: 'y', status: 'transferring' })
    store.files.insert({ ...base, id: '4', size: 1000, sha256: 'z', status: 'pending' })
    store.files.insert({ ...base, id: '5', size: 1000, sha256: 'w', status: 'failed' })
    expect(store.files.quotaUsed()).toBe(150)
    // the same id from the same peer is one offer
    expect(store.files.insert({ ...base, id: '1', size: 1, sha256: 'q', status: 'pending' })).toBe(false)
    expect(store.files.withStatus('in', ['transferring', 'pending']).map(f => f.id)).toEqual(['3', '4'])
    store.close()
  })
})

describe('offers a crash left without their row', () => {
  it('are the presented inbound offer messages with no files row', () => {
    const store = new Store()
    const offerBody = encodeOffer(offer)
    const at = 1_700_000_000_000
    const inbound = (id: string, contentType: string): void => {
      store.receive({ peer: 'p', id, seq: Number(id.at(-1)), body: offerBody, contentType, sentAt: at, receivedAt: at, path: 'direct' })
    }
    inbound('00000000-0000-7000-8000-000000000001', FILE_OFFER_TYPE)
    inbound('00000000-0000-7000-8000-000000000002', FILE_OFFER_TYPE)
    inbound('00000000-0000-7000-8000-000000000003', 'text/plain')
    store.files.insert({ id: '00000000-0000-7000-8000-000000000001', peer: 'p', direction: 'in', ...offer, status: 'pending', createdAt: at })
    expect(store.files.offersWithoutRow()).toEqual([{ id: '00000000-0000-7000-8000-000000000002', peer: 'p', body: offerBody, request: false }])
    store.close()
  })

  it('are looked for among the offers alone, on their partial index, however long the history', () => {
    expect(OFFER_CONTENT_TYPE).toBe(FILE_OFFER_TYPE)
    const store = new Store()
    store.files.offersWithoutRow()
    const statements = ((store.files as any).statements as PreparedStatements).texts()
    const db = (store as any).db as DatabaseSync
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${statements.find(sql => sql.includes('messages_file_offers')) as string}`).all().map((r: any) => r.detail).join('; ')
    expect(plan).toMatch(/SCAN m USING INDEX messages_file_offers/)
    expect(plan).not.toMatch(/SCAN m( |$)(?!USING)/)
    store.close()
  })
})
