import { generateKeyPair } from '@libp2p/crypto/keys'
import { StreamMessageEvent } from '@libp2p/interface'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { describe, expect, it, vi } from 'vitest'
import { FrameReader, decodeFrame, encodeFrame } from '../../protocols/im/frames.js'
import { InboundStream } from '../../protocols/im/inbound.js'
import { OutboundChannel } from '../../protocols/im/outbound.js'
import { Ack, MAX_FRAME_BYTES, ProtocolViolationError, StreamEndedError } from '../../protocols/im/index.js'
import type { Frame } from '../../protocols/im/index.js'
import { StreamFrames, StubStream, writeRawFrame, yamuxFrameTypes } from './im-helpers.js'
import type { InboundStreamInit } from '../../protocols/im/inbound.js'
import type { Admission, StoreResult } from '../../protocols/im/index.js'
import type { Connection, Stream } from '@libp2p/interface'

async function serve (store: InboundStreamInit['handlers']['store'], maxUnacked = 64, admit?: InboundStreamInit['handlers']['admit']): Promise<{ stream: StubStream, running: Promise<void> }> {
  const remotePeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const stream = new StubStream()
  const connection = { remotePeer, remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/1'), limits: undefined } as unknown as Connection
  const running = new InboundStream(stream as unknown as Stream, connection, {
    handlers: { store, admit },
    maxUnacked,
    ackTimeout: 10_000,
    idleTimeout: 30_000,
    log: defaultLogger().forComponent('test')
  }).run()
  return { stream, running }
}

const seqOf = (ack: Ack): number => ack.id[0]

describe('InboundStream (one /im stream, read in its message event)', () => {
  it('acknowledges a store that answers at once before the chunk\'s event returns, all of a chunk in one write', async () => {
    const { stream, running } = await serve(() => 'stored')
    stream.feed(1)
    // no turn of the event loop, no promise: the ack is already written
    expect(stream.sent.map(seqOf)).toEqual([1])
    stream.feed(2, 3, 4)
    expect(stream.sent.map(seqOf)).toEqual([1, 2, 3, 4])
    expect(stream.send).toHaveBeenCalledTimes(2)
    // as one buffer: Noise would run a cipher update, and TCP a socket write, per buffer of a list
    expect(stream.send.mock.calls.every(([data]) => data instanceof Uint8Array)).toBe(true)
    expect(stream.sent.every(a => a.status === Ack.Status.OK)).toBe(true)
    stream.end()
    await running
    expect(stream.close).toHaveBeenCalled()
    expect(stream.abort).not.toHaveBeenCalled()
  })

  it('cuts frames split across chunks, and answers each once its last byte came', async () => {
    const { stream, running } = await serve(() => 'stored')
    const frame = encodeFrame({ message: { id: new Uint8Array(16).fill(7), seq: 7n, sentAt: 1n, body: 'split' } }).subarray()
    for (const byte of frame.subarray(0, -1)) stream.dispatchEvent(new StreamMessageEvent(Uint8Array.of(byte)))
    expect(stream.sent).toEqual([])
    stream.dispatchEvent(new StreamMessageEvent(frame.subarray(-1)))
    expect(stream.sent.map(seqOf)).toEqual([7])
    stream.end()
    await running
  })

  it('answers a store that settles later when it settles, in stream order, and meanwhile stores the frames behind it', async () => {
    const later = Promise.withResolvers<StoreResult>()
    const store = vi.fn((message: { seq: number }) => message.seq === 1 ? later.promise : 'duplicate' as const)
    const { stream, running } = await serve(store)
    stream.feed(1, 2)
    // 2 is stored (in order, after 1) but not answered ahead of 1
    expect(store.mock.calls.map(([m]) => m.seq)).toEqual([1, 2])
    expect(stream.sent).toEqual([])
    later.resolve('stored')
    await vi.waitFor(() => { expect(stream.sent.map(a => [seqOf(a), a.status])).toEqual([[1, Ack.Status.OK], [2, Ack.Status.DUPLICATE]]) })
    stream.end()
    await running
  })

  it('pauses the stream at maxUnacked unanswered, and reads the rest once answers leave', async () => {
    const waiting: Array<PromiseWithResolvers<StoreResult>> = []
    const store = vi.fn(() => {
      const w = Promise.withResolvers<StoreResult>()
      waiting.push(w)
      return w.promise
    })
    const { stream, running } = await serve(store, 2)
    stream.feed(1, 2, 3)
    expect(store).toHaveBeenCalledTimes(2)
    expect(stream.pauses).toEqual(['pause'])
    waiting[0].resolve('stored')
    // the third frame, already buffered, is read as soon as there is room
    await vi.waitFor(() => { expect(store).toHaveBeenCalledTimes(3) })
    expect(stream.sent.map(seqOf)).toEqual([1])
    expect(stream.readStatus).toBe('paused')
    waiting[1].resolve('stored')
    waiting[2].resolve('stored')
    await vi.waitFor(() => { expect(stream.sent.map(seqOf)).toEqual([1, 2, 3]) })
    expect(stream.pauses).toEqual(['pause', 'resume'])
    stream.end()
    await running
  })

  it('reads nothing more while a message waits for an admit that answers later, and pauses the stream meanwhile', async () => {
    const admissions: Array<PromiseWithResolvers<Admission>> = []
    const store = vi.fn(() => 'stored' as const)
    const { stream, running } = await serve(store, 64, () => {
      const a = Promise.withResolvers<Admission>()
      admissions.push(a)
      return a.promise
    })
    stream.feed(1, 2)
    stream.feed(3)
    // the first is being admitted: the rest wait unread, in order, and the stream is paused
    expect(admissions).toHaveLength(1)
    expect(stream.pauses).toEqual(['pause'])
    admissions[0].resolve({ status: 'accept' })
    await vi.waitFor(() => { expect(admissions).toHaveLength(2) })
    admissions[1].resolve({ status: 'block' })
    await vi.waitFor(() => { expect(admissions).toHaveLength(3) })
    admissions[2].resolve({ status: 'accept' })
    await vi.waitFor(() => { expect(stream.sent.map(a => [seqOf(a), a.status])).toEqual([[1, Ack.Status.OK], [2, Ack.Status.BLOCKED], [3, Ack.Status.OK]]) })
    expect(store.mock.calls.map(([m]: any) => m.seq)).toEqual([1, 3])
    expect(stream.readStatus).toBe('readable')
    stream.end()
    await running
  })

  it('answers the frames before a bad one, then aborts; and aborts a stream that ends inside a frame', async () => {
    const { stream, running } = await serve(() => 'stored')
    const out = new Uint8ArrayList(encodeFrame({ message: { id: new Uint8Array(16).fill(1), seq: 1n, sentAt: 1n, body: 'ok' } }))
    out.append(encodeFrame({ ack: { id: new Uint8Array(16), status: Ack.Status.OK } }))
    stream.dispatchEvent(new StreamMessageEvent(out))
    await running
    expect(stream.sent.map(seqOf)).toEqual([1])
    expect(stream.abort.mock.calls[0][0]).toBeInstanceOf(ProtocolViolationError)

    const cut = await serve(() => 'stored')
    cut.stream.dispatchEvent(new StreamMessageEvent(encodeFrame({ message: { id: new Uint8Array(16).fill(2), seq: 2n, sentAt: 1n, body: 'cut' } }).subarray(0, 5)))
    cut.stream.end()
    await cut.running
    expect(cut.stream.sent).toEqual([])
    expect(cut.stream.abort.mock.calls[0][0].message).toMatch('ended inside a frame')
  })

  it('closes a stream idle for idleTimeout, and bytes that never finish a frame do not keep it open', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
    try {
      const { stream, running } = await serve(() => 'stored')
      stream.feed(1)
      const frame = encodeFrame({ message: { id: new Uint8Array(16).fill(2), seq: 2n, sentAt: 1n, body: 'never finished' } }).subarray()
      // a byte of the next frame every 10 s: the stream is idle all the same, 30 s after its last answer
      for (let i = 0; i < 2; i++) {
        vi.advanceTimersByTime(10_000)
        stream.dispatchEvent(new StreamMessageEvent(frame.subarray(i, i + 1)))
      }
      expect(stream.close).not.toHaveBeenCalled()
      vi.advanceTimersByTime(10_000)
      expect(stream.close).toHaveBeenCalled()
      await running
      expect(stream.sent.map(seqOf)).toEqual([1])
    } finally {
      vi.useRealTimers()
    }
  })

  it('aborts without an ack when store throws, so that the sender retries', async () => {
    const { stream, running } = await serve(() => { throw new Error('disk I/O error') })
    stream.feed(1)
    await running
    expect(stream.sent).toEqual([])
    expect(stream.abort.mock.calls[0][0].message).toMatch('disk I/O error')
  })
})

describe('InboundStream on yamux: the muxer\'s window updates', () => {
  /**
   * A sender's yamux stream to an InboundStream on the other muxer.
   * `written`: what the recipient's muxer wrote; `inTurn()`: the frame types it
   * writes from now until its first write's synchronous run is over (what
   * goes out in the turn that read a message, up to its ack and right after).
   */
  async function yamuxInbound (store: InboundStreamInit['handlers']['store'], maxUnacked = 64): Promise<{ outbound: Stream, running: Promise<void>, written: Array<Uint8Array | Uint8ArrayList>, inTurn(): Promise<number[]>, close(): void }> {
    const muxers = yamux({ enableKeepAlive: false })()
    const [senderConnection, recipientConnection] = multiaddrConnectionPair()
    const written: Array<Uint8Array | Uint8ArrayList> = []
    let watching: ((types: number[]) => void) | undefined
    const send = recipientConnection.send.bind(recipientConnection)
    recipientConnection.send = (data) => {
      const from = written.length
      written.push(data)
      const resolve = watching
      watching = undefined
      if (resolve != null) queueMicrotask(() => { resolve(yamuxFrameTypes(written.slice(from))) })
      return send(data)
    }
    const client = muxers.createStreamMuxer(senderConnection)
    const server = muxers.createStreamMuxer(recipientConnection)
    const remotePeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const connection = { remotePeer, remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/1'), limits: undefined } as unknown as Connection
    const running = new Promise<void>(resolve => {
      server.addEventListener('stream', evt => {
        resolve(new InboundStream(evt.detail, connection, { handlers: { store }, maxUnacked, ackTimeout: 10_000, idleTimeout: 30_000, log: defaultLogger().forComponent('test') }).run())
      }, { once: true })
    })
    const outbound = await client.createStream()
    return {
      outbound,
      running,
      written,
      inTurn: async () => new Promise(resolve => { watching = resolve }),
      close: () => {
        client.abort(new Error('test over'))
        server.abort(new Error('test over'))
      }
    }
  }

  const message = (seq: number): Partial<Frame> => ({ message: { id: new Uint8Array(16).fill(seq), seq: BigInt(seq), sentAt: 1n, body: 'hi' } })
  const nextTurn = async (): Promise<void> => new Promise(resolve => setImmediate(resolve))

  it('writes the ack of a message read alone with no window update in that turn, and the update in the next', async () => {
    const { outbound, running, written, inTurn, close } = await yamuxInbound(() => 'stored')
    try {
      const acks = new StreamFrames(outbound)
      for (const seq of [1, 2, 3]) {
        const before = written.length
        const turn = inTurn()
        writeRawFrame(outbound, message(seq))
        // the ack alone: yamux would write the read's window update right behind it
        expect(await turn).toEqual([0])
        expect(seqOf((await acks.expectFrame()).ack as Ack)).toBe(seq)
        await nextTurn()
        await nextTurn()
        expect(yamuxFrameTypes(written.slice(before))).toEqual([0, 1])
      }
      await outbound.close()
      await running
    } finally {
      close()
    }
  })

  it('keeps flow control: paused at maxUnacked while a read\'s update is held, every message answered in order', async () => {
    const waiting: Array<PromiseWithResolvers<StoreResult>> = []
    const store = vi.fn((): StoreResult | Promise<StoreResult> => {
      const w = Promise.withResolvers<StoreResult>()
      waiting.push(w)
      return w.promise
    })
    const { outbound, running, close } = await yamuxInbound(store, 2)
    try {
      const acks = new StreamFrames(outbound)
      for (let seq = 1; seq <= 20; seq++) writeRawFrame(outbound, message(seq))
      const got: number[] = []
      while (got.length < 20) {
        await vi.waitFor(() => { expect(waiting.length).toBeGreaterThan(got.length) })
        // never more than maxUnacked stored and unanswered
        expect(waiting.length - got.length).toBeLessThanOrEqual(2)
        waiting[got.length].resolve('stored')
        got.push(seqOf((await acks.expectFrame()).ack as Ack))
      }
      expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
      await outbound.close()
      await running
    } finally {
      close()
    }
  })
})

describe('OutboundChannel (acks read in the stream\'s message event)', () => {
  function channel (): { stream: StubStream, channel: OutboundChannel, frames: Array<Uint8Array | Uint8ArrayList> } {
    const stream = new StubStream()
    const frames: Array<Uint8Array | Uint8ArrayList> = []
    stream.send = vi.fn((data: Uint8Array | Uint8ArrayList) => { frames.push(data); return true })
    const channel = new OutboundChannel(stream as unknown as Stream, { maxUnacked: 64, ackTimeout: 10_000, idleTimeout: 30_000, log: defaultLogger().forComponent('test'), onEnd: () => {} })
    return { stream, channel, frames }
  }
  const message = (n: number): any => ({ id: new Uint8Array(16).fill(n), seq: BigInt(n), sentAt: 1n, body: `m${n}` })
  const ack = (n: number): Uint8Array => encodeFrame({ ack: { id: new Uint8Array(16).fill(n), status: Ack.Status.OK } }).subarray()

  it('settles each send with its own ack, acks split across chunks or several in one', async () => {
    const { stream, channel: c, frames } = channel()
    const sends = [1, 2, 3].map(async n => c.send(message(n), {}))
    await vi.waitFor(() => { expect(frames).toHaveLength(1) })
    const bytes = Uint8Array.from([...ack(1), ...ack(2), ...ack(3)])
    stream.dispatchEvent(new StreamMessageEvent(bytes.subarray(0, 5)))
    stream.dispatchEvent(new StreamMessageEvent(bytes.subarray(5)))
    expect((await Promise.all(sends)).map(a => a.id[0])).toEqual([1, 2, 3])
    expect(c.open).toBe(true)
  })

  it('rejects what is in flight when the stream ends inside an ack, or before every ack came', async () => {
    const cut = channel()
    const first = cut.channel.send(message(1), {})
    await vi.waitFor(() => { expect(cut.frames).toHaveLength(1) })
    cut.stream.dispatchEvent(new StreamMessageEvent(ack(1).subarray(0, 4)))
    cut.stream.dispatchEvent(new Event('remoteCloseWrite'))
    await expect(first).rejects.toThrow(ProtocolViolationError)
    expect(cut.channel.open).toBe(false)

    const ended = channel()
    const second = ended.channel.send(message(2), {})
    await vi.waitFor(() => { expect(ended.frames).toHaveLength(1) })
    ended.stream.dispatchEvent(new Event('remoteCloseWrite'))
    await expect(second).rejects.toThrow(StreamEndedError)
  })
})

describe('FrameReader', () => {
  it('hands out whole frames only, across chunks, and tells whether it stopped inside one', () => {
    const frames = new FrameReader()
    const a = encodeFrame({ message: { id: new Uint8Array(16), seq: 1n, sentAt: 1n, body: 'a' } }).subarray()
    const b = encodeFrame({ message: { id: new Uint8Array(16), seq: 2n, sentAt: 1n, body: 'bb' } }).subarray()
    frames.push(a.subarray(0, 1))
    expect(frames.next()).toBeUndefined()
    expect(frames.inFrame).toBe(true)
    frames.push(Uint8Array.from([...a.subarray(1), ...b.subarray(0, 3)]))
    expect(decodeFrame(frames.next() as Uint8ArrayList).message?.seq).toBe(1n)
    expect(frames.next()).toBeUndefined()
    frames.push(b.subarray(3))
    expect(decodeFrame(frames.next() as Uint8ArrayList).message?.seq).toBe(2n)
    expect(frames.inFrame).toBe(false)
  })

  it('refuses a length over the limit before buffering its frame, and a length prefix that never ends', () => {
    const over = new FrameReader()
    over.push(varint.encode(MAX_FRAME_BYTES + 1))
    expect(() => over.next()).toThrow(ProtocolViolationError)
    const exact = new FrameReader()
    exact.push(varint.encode(MAX_FRAME_BYTES))
    expect(exact.next()).toBeUndefined()
    const endless = new FrameReader()
    endless.push(new Uint8Array(8).fill(0x80))
    expect(() => endless.next()).toThrow('frame length prefix too long')
    // 5 written in two bytes: another place to cut the stream than the sender meant
    const padded = new FrameReader()
    padded.push(Uint8Array.of(0x85, 0x00, 1, 2, 3, 4, 5))
    expect(() => padded.next()).toThrow('not minimally encoded')
  })
})
