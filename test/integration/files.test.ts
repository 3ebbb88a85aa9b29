import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { fileUntil, sha256Of, writeTestFile } from '../fixtures/files.js'
import { useNetwork } from '../fixtures/network.js'
import { useRawFileSenders } from '../fixtures/raw-file.js'
import { FileRequest } from '../../protocols/file/index.js'
import { MAX_CORRUPT_CHUNKS } from '../../node/files/transfers.js'
import type { RawFileSender } from '../fixtures/raw-file.js'
import type { FileInfo, ParleyNode } from '../../index.js'

const MiB = 1024 * 1024

/** The next offer the node is told of. */
async function nextOffer (node: ParleyNode): Promise<FileInfo> {
  return new Promise(resolve => { node.addEventListener('file:offer', evt => { resolve(evt.detail) }, { once: true }) })
}

describe('files between two nodes', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()

  async function pair (): Promise<{ alice: ParleyNode, bob: ParleyNode, dir: string }> {
    const dir = await tempDir()
    const alice = await net.node({ dataDir: join(dir, 'alice') })
    const bob = await net.node({ dataDir: join(dir, 'bob') })
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.libp2p.peerStore.merge(alice.peerId, { multiaddrs: alice.multiaddrs })
    return { alice, bob, dir }
  }

  it('a 50 MiB file over direct TCP, accepted by the recipient, arrives hash-verified', async () => {
    const { alice, bob, dir } = await pair()
    await bob.addContact('alice', alice.peerId.toString())
    const source = join(dir, 'big.bin')
    await writeTestFile(source, 50 * MiB + 123)

    const offered = nextOffer(bob)
    const sent = await alice.sendFile(bob.peerId, source, { type: 'application/octet-stream' })
    expect(sent.status).toBe('offering')
    const offer = await offered
    // over the 25 MiB auto-accept size: even a contact's waits
    expect(offer).toMatchObject({ id: sent.id, name: 'big.bin', size: 50 * MiB + 123, status: 'pending', direction: 'in' })

    const served: Array<{ bytes: number, rate: number }> = []
    alice.addEventListener('file:progress', evt => { if (evt.detail.id === sent.id && evt.detail.direction === 'out') served.push(evt.detail) })
    bob.acceptFile(sent.id)
    const done = await fileUntil(bob, sent.id, f => f.status === 'complete', 'bob to have the file', 110_000)
    expect(done.bytes).toBe(50 * MiB + 123)
    // the sender's progress counts what it served, and how fast
    expect(served.at(-1)?.bytes).toBe(50 * MiB + 123)
    expect(served.some(p => p.rate > 0)).toBe(true)
    expect(await sha256Of(done.path as string)).toBe(await sha256Of(source))
    expect(done.sha256).toBe(await sha256Of(source))
    await fileUntil(alice, sent.id, f => f.status === 'complete', 'alice to learn the transfer completed')
  }, 120_000)

  it('a contact\'s small file is fetched without asking; the same content again is kept once', async () => {
    const { alice, bob, dir } = await pair()
    await bob.addContact('alice', alice.peerId.toString())
    const source = join(dir, 'photo.jpg')
    await writeTestFile(source, 300_000, 7)
    // with a preview the sender made: it comes with the offer
    const thumbnail = { type: 'image/jpeg', data: new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]) }
    const offered = nextOffer(bob)
    const first = await alice.sendFile(bob.peerId, source, { type: 'image/jpeg', thumbnail })
    expect((await offered).thumbnail).toEqual({ type: 'image/jpeg', data: Buffer.from(thumbnail.data).toString('base64') })
    const a = await fileUntil(bob, first.id, f => f.status === 'complete', 'the first copy')
    expect(a.thumbnail?.type).toBe('image/jpeg')
    const second = await alice.sendFile(bob.peerId, source, { name: 'again.jpg', type: 'image/jpeg' })
    const b = await fileUntil(bob, second.id, f => f.status === 'complete', 'the second copy')
    expect(b.path).toBe(a.path)
    expect(await sha256Of(b.path as string)).toBe(await sha256Of(source))
  })

  it('a stranger\'s file waits for acceptance, whatever its size', async () => {
    const { alice, bob, dir } = await pair()
    const source = join(dir, 'note.txt')
    await writeTestFile(source, 1000, 3)
    const offered = nextOffer(bob)
    const sent = await alice.sendFile(bob.peerId, source, { type: 'text/plain' })
    expect((await offered).status).toBe('pending')
    expect(bob.file(sent.id)?.status).toBe('pending')
    expect(bob.files({ direction: 'in' }).map(f => f.id)).toEqual([sent.id])
    bob.acceptFile(sent.id)
    await fileUntil(bob, sent.id, f => f.status === 'complete', 'the accepted file')
  })

  it('a blocked peer\'s offer is refused outright: nothing is recorded and the sender learns it', async () => {
    const { alice, bob, dir } = await pair()
    bob.block(alice.peerId)
    const source = join(dir, 'spam.bin')
    await writeTestFile(source, 1000, 4)
    const sent = await alice.sendFile(bob.peerId, source)
    const failed = await fileUntil(alice, sent.id, f => f.status === 'failed', 'the offer to fail')
    expect(failed.reason).toMatch(/BLOCKED/i)
    expect(bob.files()).toEqual([])
  })

  it('a file changed after its offer is not served: the transfer fails with the reason', async () => {
    const { alice, bob, dir } = await pair()
    const source = join(dir, 'draft.bin')
    await writeTestFile(source, 200_000, 5)
    const offered = nextOffer(bob)
    const sent = await alice.sendFile(bob.peerId, source)
    await offered
    await writeTestFile(source, 200_000, 6)
    bob.acceptFile(sent.id)
    const failed = await fileUntil(bob, sent.id, f => f.status === 'failed', 'the transfer to fail')
    expect(failed.reason).toMatch(/changed/)
    expect((await fileUntil(alice, sent.id, f => f.status === 'failed', 'the offer to fail')).reason).toMatch(/changed/)
  })
})

describe('files from a sender written from the spec', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()
  const rawSender = useRawFileSenders()

  async function setUp (size: number): Promise<{ bob: ParleyNode, raw: RawFileSender, content: Uint8Array, contentSha: string }> {
    const dir = await tempDir()
    const bob = await net.node({ dataDir: join(dir, 'bob') })
    const raw = await rawSender()
    await bob.libp2p.peerStore.merge(raw.libp2p.peerId, { multiaddrs: raw.libp2p.getMultiaddrs() })
    await bob.addContact('raw', raw.libp2p.peerId.toString())
    const content = new Uint8Array(size)
    for (let i = 0; i < size; i++) content[i] = (i * 31 + (i >> 12)) & 0xff
    return { bob, raw, content, contentSha: createHash('sha256').update(content).digest('hex') }
  }

  it('a corrupted chunk is refused and fetched again; the file completes intact', async () => {
    const { bob, raw, content, contentSha } = await setUp(1 * MiB)
    raw.corruptOnce.add(5)
    const { id, ack } = await raw.offer(bob.multiaddrs, content, 'data.bin')
    expect(ack.status).toBe('OK')
    const done = await fileUntil(bob, id, f => f.status === 'complete', 'the file to complete')
    expect(await sha256Of(done.path as string)).toBe(contentSha)
    const chunkRequests = raw.requests.filter(r => r.kind === FileRequest.Kind.CHUNKS)
    // asked again from the refused chunk, not from the start
    expect(chunkRequests.map(r => r.first)).toEqual([0, 5])
    expect(raw.finished).toEqual([FileRequest.Outcome.COMPLETE])
  })

  it('a sender whose chunks keep failing their hash is given up on, with the reason', async () => {
    const { bob, raw, content } = await setUp(256 * 1024)
    raw.corruptAlways.add(3)
    const { id } = await raw.offer(bob.multiaddrs, content, 'bad.bin')
    const failed = await fileUntil(bob, id, f => f.status === 'failed', 'the transfer to fail')
    expect(failed.reason).toMatch(/do not match their hashes/)
    expect(raw.requests.filter(r => r.kind === FileRequest.Kind.CHUNKS && r.first === 3)).toHaveLength(MAX_CORRUPT_CHUNKS - 1)
  })

  it('a transfer cut mid-way resumes from the last verified chunk', async () => {
    const { bob, raw, content, contentSha } = await setUp(8 * MiB)
    raw.cutAfterChunks = 100
    const { id } = await raw.offer(bob.multiaddrs, content, 'cut.bin')
    const done = await fileUntil(bob, id, f => f.status === 'complete', 'the file to complete after the cut')
    expect(await sha256Of(done.path as string)).toBe(contentSha)
    const chunkRequests = raw.requests.filter(r => r.kind === FileRequest.Kind.CHUNKS)
    expect(chunkRequests.length).toBeGreaterThanOrEqual(2)
    // the second attempt asks for what the first did not verify, and only that
    const resumedAt = chunkRequests[1].first
    expect(resumedAt).toBeGreaterThan(0)
    expect(resumedAt).toBeLessThanOrEqual(100)
    expect(resumedAt + chunkRequests[1].count).toBe(256)
    // the hash list was fetched once, and kept across the cut
    expect(raw.requests.filter(r => r.kind === FileRequest.Kind.HASHES)).toHaveLength(1)
  })
})
