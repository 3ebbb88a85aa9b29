import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import * as lp from 'it-length-prefixed'
import { describe, expect, it } from 'vitest'
import {
  CHUNK_BYTES, chunkCount, CorruptChunkError, FILE_PROTOCOL, FileFetchStream, FileRefusedError, FileResponse, FileServer, HASH_BYTES,
  hashChunk, hashListRoot, MAX_FRAME_BYTES, MAX_REQUEST_CHUNKS
} from '../../protocols/file/index.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { ChunkReader, FileServerInit, OfferedFile } from '../../protocols/file/index.js'
import type { Connection, PeerId, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import type { Uint8ArrayList } from 'uint8arraylist'

const OFFER = new Uint8Array(16).fill(7)
const OFFER_HEX = '07'.repeat(16)

async function makePeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function contentOf (size: number): Uint8Array<ArrayBuffer> {
  const content = new Uint8Array(size)
  for (let i = 0; i < size; i++) content[i] = (i * 7 + (i >> 10)) & 0xff
  return content
}

function hashesOf (content: Uint8Array): Uint8Array<ArrayBuffer> {
  const count = chunkCount(content.byteLength)
  const hashes = new Uint8Array(count * HASH_BYTES)
  for (let i = 0; i < count; i++) hashes.set(hashChunk(content.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES)), i * HASH_BYTES)
  return hashes
}

/** An offer whose bytes the test can change under the server's feet. */
function offered (content: Uint8Array<ArrayBuffer>): OfferedFile & { content: Uint8Array<ArrayBuffer> } {
  const file = {
    content,
    size: content.byteLength,
    hashes: hashesOf(content),
    open: async (): Promise<ChunkReader> => ({
      read: async (index: number, length: number) => file.content.slice(index * CHUNK_BYTES, index * CHUNK_BYTES + length),
      close: async () => {}
    })
  }
  return file
}

async function server (init: Partial<FileServerInit> & Pick<FileServerInit, 'lookup'>): Promise<{ connect: (peer: PeerId) => Promise<Stream>, server: FileServer, clock: FakeClock, options?: StreamHandlerOptions }> {
  const clock = new FakeClock()
  let handler: StreamHandler | undefined
  let options: StreamHandlerOptions | undefined
  const registrar = {
    async handle (_protocol: string, h: StreamHandler, o?: StreamHandlerOptions) { handler = h; options = o },
    async unhandle () { handler = undefined }
  } as unknown as Registrar
  const fileServer = new FileServer({ registrar, logger: defaultLogger() }, { clock, ...init })
  await fileServer.start()
  return {
    server: fileServer,
    clock,
    options,
    connect: async (peer) => {
      const [outbound, inbound] = await streamPair()
      Promise.resolve(handler?.(inbound, { remotePeer: peer } as unknown as Connection)).catch(() => {})
      return outbound
    }
  }
}

describe('/parley/file/1.0.0 server and fetcher (in memory)', () => {
  it('serves the hash list and verified chunks to the peer the file was offered to, and runs on limited connections', async () => {
    const alice = await makePeer()
    const file = offered(contentOf(3 * CHUNK_BYTES + 100))
    const finished: string[] = []
    const s = await server({ lookup: (id, peer) => id === OFFER_HEX && peer.equals(alice) ? file : undefined, onFinish: (_id, _peer, outcome) => { finished.push(outcome) } })
    expect(s.options).toMatchObject({ runOnLimitedConnection: true })
    const fetch = new FileFetchStream(await s.connect(alice))
    const hashes = await fetch.hashes(OFFER, 0, 4)
    expect(hashListRoot(hashes)).toEqual(hashListRoot(file.hashes))
    const got: number[] = []
    for await (const chunk of fetch.chunks(OFFER, file.size, hashes, 1, 3)) got.push(chunk.index, chunk.data.byteLength)
    expect(got).toEqual([1, CHUNK_BYTES, 2, CHUNK_BYTES, 3, 100])
    await fetch.finish(OFFER, 'complete')
    expect(finished).toEqual(['complete'])
    await fetch.close()
  })

  it('answers NOT_FOUND to another peer, the same as for an offer that does not exist', async () => {
    const [alice, mallory] = await Promise.all([makePeer(), makePeer()])
    const file = offered(contentOf(1000))
    const s = await server({ lookup: (id, peer) => id === OFFER_HEX && peer.equals(alice) ? file : undefined })
    const fetch = new FileFetchStream(await s.connect(mallory))
    await expect(fetch.hashes(OFFER, 0, 1)).rejects.toMatchObject({ name: 'FileRefusedError', status: FileResponse.Status.NOT_FOUND })
    await expect(fetch.hashes(new Uint8Array(16), 0, 1)).rejects.toMatchObject({ status: FileResponse.Status.NOT_FOUND })
  })

  it('refuses ranges outside the file and counts over the bound (INVALID), and keeps the stream', async () => {
    const alice = await makePeer()
    const file = offered(contentOf(2 * CHUNK_BYTES))
    const s = await server({ lookup: () => file })
    const stream = await s.connect(alice)
    const frames = lp.decode(stream)[Symbol.asyncIterator]()
    const { FileRequest } = await import('../../protocols/file/index.js')
    for (const request of [{ first: 1, count: 2 }, { first: 0, count: 0 }, { first: 0, count: MAX_REQUEST_CHUNKS + 1 }]) {
      stream.send(lp.encode.single(FileRequest.encode({ offer: OFFER, kind: FileRequest.Kind.CHUNKS, ...request })))
      const answer = FileResponse.decode((await frames.next()).value as Uint8ArrayList)
      expect(answer.status).toBe(FileResponse.Status.INVALID)
    }
  })

  it('never serves a chunk that changed since the offer: CHANGED, and the node is told', async () => {
    const alice = await makePeer()
    const file = offered(contentOf(3 * CHUNK_BYTES))
    const told: Array<[string, boolean]> = []
    const s = await server({ lookup: () => file, onUnservable: (_id, _peer, reason, changed) => { told.push([reason, changed]) } })
    const fetch = new FileFetchStream(await s.connect(alice))
    const hashes = await fetch.hashes(OFFER, 0, 3)
    file.content = contentOf(3 * CHUNK_BYTES).map((b, i) => i === CHUNK_BYTES + 5 ? b ^ 1 : b)
    const got: number[] = []
    const error = await (async () => { for await (const c of fetch.chunks(OFFER, file.size, hashes, 0, 3)) got.push(c.index) })().catch(err => err)
    expect(got).toEqual([0])
    expect(error).toBeInstanceOf(FileRefusedError)
    expect(error.status).toBe(FileResponse.Status.CHANGED)
    expect(told).toEqual([['the file changed since it was offered', true]])
  })

  it('a fetcher refuses a chunk that does not match its hash (CorruptChunkError) and an oversized frame', async () => {
    const [outbound, inbound] = await streamPair()
    const content = contentOf(2 * CHUNK_BYTES)
    const hashes = hashesOf(content)
    const fetch = new FileFetchStream(outbound)
    const reading = (async () => { for await (const chunk of fetch.chunks(OFFER, content.byteLength, hashes, 0, 2)) expect(chunk.index).toBe(0) })()
    const bad = content.slice(CHUNK_BYTES)
    bad[0] ^= 1
    inbound.send(lp.encode.single(FileResponse.encode({ status: FileResponse.Status.OK, index: 0, data: content.slice(0, CHUNK_BYTES) })))
    inbound.send(lp.encode.single(FileResponse.encode({ status: FileResponse.Status.OK, index: 1, data: bad })))
    await expect(reading).rejects.toBeInstanceOf(CorruptChunkError)

    const [out2, in2] = await streamPair()
    const fetch2 = new FileFetchStream(out2)
    const asking = fetch2.hashes(OFFER, 0, 1)
    in2.send(lp.encode.single(new Uint8Array(MAX_FRAME_BYTES + 1)))
    await expect(asking).rejects.toMatchObject({ name: 'FileProtocolError' })
  })

  it('answers RATE_LIMITED beyond the streams one peer may hold, without reading its request', async () => {
    const [alice, bob] = await Promise.all([makePeer(), makePeer()])
    const file = offered(contentOf(1000))
    const s = await server({ lookup: () => file, maxStreamsPerPeer: 2, retryAfter: 1234 })
    const held = [new FileFetchStream(await s.connect(alice)), new FileFetchStream(await s.connect(alice))]
    await Promise.all(held.map(async f => f.hashes(OFFER, 0, 1)))
    const third = new FileFetchStream(await s.connect(alice))
    await expect(third.hashes(OFFER, 0, 1)).rejects.toMatchObject({ status: FileResponse.Status.RATE_LIMITED, retryAfterMs: 1234 })
    // another peer is not held back by alice's streams
    expect(await new FileFetchStream(await s.connect(bob)).hashes(OFFER, 0, 1)).toHaveLength(HASH_BYTES)
    expect(s.server.openStreams).toBe(3)
    expect(FILE_PROTOCOL).toBe('/parley/file/1.0.0')
  })

  it('closes a stream that carries no request within the idle timeout', async () => {
    const alice = await makePeer()
    const s = await server({ lookup: () => undefined, idleTimeout: 5_000 })
    const stream = await s.connect(alice)
    const ended = new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
    await Promise.resolve()
    s.clock.advance(5_000)
    await ended
    expect(s.server.openStreams).toBe(0)
  })
})
