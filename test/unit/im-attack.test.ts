/**
 * Attacks on the message-event InboundStream / OutboundChannel: each test is
 * a scenario a hostile or unlucky peer can bring about.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it, vi } from 'vitest'
import { decodeFrame, encodeFrame } from '../../protocols/im/frames.js'
import { InboundStream } from '../../protocols/im/inbound.js'
import { OutboundChannel } from '../../protocols/im/outbound.js'
import { PROTOCOL, StreamEndedError } from '../../protocols/im/index.js'
import { StreamFrames, StubStream, writeRawFrame } from './im-helpers.js'
import type { InboundStreamInit } from '../../protocols/im/inbound.js'
import type { StoreResult } from '../../protocols/im/index.js'
import type { ChatMessage } from '../../protocols/im/pb/im.js'
import type { Connection, Stream } from '@libp2p/interface'

const log = defaultLogger().forComponent('test:im-attack')

const msg = (n: number, body = `m${n}`): ChatMessage => ({ id: new Uint8Array(16).fill(n % 256), seq: BigInt(n), sentAt: 1n, body })

async function connection (): Promise<Connection> {
  const remotePeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  return { remotePeer, remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/1'), limits: undefined } as unknown as Connection
}

async function serve (stream: Stream, handlers: InboundStreamInit['handlers'], opts: Partial<InboundStreamInit> = {}): Promise<{ inbound: InboundStream, running: Promise<void> }> {
  const inbound = new InboundStream(stream, await connection(), {
    handlers,
    maxUnacked: 64,
    ackTimeout: 10_000,
    idleTimeout: 30_000,
    log,
    ...opts
  })
  return { inbound, running: inbound.run() }
}

describe('InboundStream under attack', () => {
  it('reads the messages of a frame that carries data and FIN together while the stream is paused (yamux order: FIN, then data)', async () => {
    const [outbound, inbound] = await streamPair()
    const waiting: Array<PromiseWithResolvers<StoreResult>> = []
    const store = vi.fn((m: { seq: number }): StoreResult | Promise<StoreResult> => {
      if (m.seq > 2) return 'stored'
      const w = Promise.withResolvers<StoreResult>()
      waiting.push(w)
      return w.promise
    })
    const { running } = await serve(inbound, { store }, { maxUnacked: 2 })
    const acks = new StreamFrames(outbound)
    writeRawFrame(outbound, { message: msg(1) })
    writeRawFrame(outbound, { message: msg(2) })
    await vi.waitFor(() => { expect(store).toHaveBeenCalledTimes(2) })
    expect(inbound.readStatus).toBe('paused')
    // the peer's last yamux DATA frame carries message 3 and the FIN flag:
    // @libp2p/yamux's handleData runs processFlags (onRemoteCloseWrite) first, then onData
    const s = inbound as any
    s.onRemoteCloseWrite()
    s.onData(encodeFrame({ message: msg(3) }))
    for (const w of waiting) w.resolve('stored')
    await running
    const got: number[] = []
    for (let f = await acks.next(); f != null; f = await acks.next()) got.push(f.ack?.id[0] ?? -1)
    // expected: message 3 is read, stored and acknowledged before the stream is closed
    expect(store).toHaveBeenCalledTimes(3)
    expect(got).toEqual([1, 2, 3])
  })
})

/**
 * A stub that behaves like AbstractStream where it matters here: `send`
 * returns false once the remote stops reading (the yamux send window is
 * spent), and `close` waits for the write buffer to drain unless its
 * signal aborts it.
 */
class StuckStream extends StubStream {
  writeStatus = 'writable'
  // the remote never reads: the window is spent, nothing drains
  override room = false

  override onDrain = async (options?: { signal?: AbortSignal }): Promise<void> => new Promise((_resolve, reject) => {
    options?.signal?.addEventListener('abort', () => { reject(options.signal?.reason) })
  })

  override close = vi.fn(async (options?: { signal?: AbortSignal }) => {
    this.writeStatus = 'closing'
    // AbstractStream.close: waits for 'idle'/'drain', which never come, unless the signal aborts
    await new Promise((_resolve, reject) => {
      options?.signal?.throwIfAborted()
      options?.signal?.addEventListener('abort', () => { reject(options.signal?.reason) })
    })
  })
}

describe('InboundStream with a peer that never reads its acks', () => {
  it('ends the stream (close with a deadline, or abort) when it goes idle with acks stuck in the write buffer', async () => {
    const stream = new StuckStream()
    // short clocks, real timers (AbortSignal.timeout is not faked by vi)
    const { running } = await serve(stream as unknown as Stream, { store: () => 'stored' }, { idleTimeout: 200, ackTimeout: 300 })
    // one message: acked at once, but the ack sits in a full write buffer; then the peer goes quiet
    stream.feed(1)
    expect(stream.sent.map(a => a.id[0])).toEqual([1])
    // a stuck close is given up after the ack timeout (as close() does at the end of a stream), the stream aborted
    await running
    expect(stream.close).toHaveBeenCalled()
    expect(stream.abort).toHaveBeenCalled()
  })
})

describe('InboundStream with a peer that never reads its acks, and onDrain() that resolves at once', () => {
  it('writes no more acks once the write buffer is full until the stream says drain, pauses at maxUnacked, and aborts after ackTimeout', async () => {
    const stream = new StuckStream()
    // @libp2p/utils 7.4: after a stream's first drain, onDrain() resolves at once for good
    stream.onDrain = async () => {}
    const { running } = await serve(stream as unknown as Stream, { store: () => 'stored' }, { maxUnacked: 4, ackTimeout: 300, idleTimeout: 600_000 })
    stream.feed(1)
    stream.feed(2, 3, 4, 5, 6, 7)
    // the first ack filled the buffer: the rest wait, and reading stops at maxUnacked
    expect(stream.send).toHaveBeenCalledTimes(1)
    expect(stream.readStatus).toBe('paused')
    await running
    expect(stream.send).toHaveBeenCalledTimes(1)
    expect(stream.abort.mock.calls[0][0].name).toBe('TimeoutError')
  })

  it('writes the waiting acks in one write when the stream says drain', async () => {
    const stream = new StuckStream()
    const { running } = await serve(stream as unknown as Stream, { store: () => 'stored' }, { maxUnacked: 4 })
    stream.feed(1)
    stream.feed(2, 3)
    expect(stream.sent.map(a => a.id[0])).toEqual([1])
    stream.room = true
    stream.dispatchEvent(new Event('drain'))
    expect(stream.sent.map(a => a.id[0])).toEqual([1, 2, 3])
    expect(stream.send).toHaveBeenCalledTimes(2)
    stream.abort(new Error('done'))
    await running
  })
})

describe('OutboundChannel under attack', () => {
  it('fails at once on a stream whose remote closed its write end before the channel was made', async () => {
    const [outbound, inbound] = await streamPair()
    // the responder accepts the protocol and closes its end at once
    await inbound.close()
    await vi.waitFor(() => { expect(outbound.remoteWriteStatus).toBe('closed') })
    // an ack timeout far beyond the test's: only the end of the stream can settle the send
    const channel = new OutboundChannel(outbound, { maxUnacked: 64, ackTimeout: 600_000, idleTimeout: 600_000, log, onEnd: () => {} })
    // the service hands the channel over through a promise: a turn of microtasks before the first send
    await Promise.resolve()
    await expect(channel.send(msg(1), {})).rejects.toThrow(StreamEndedError)
  })
})

describe('InboundStream after multistream-select', () => {
  it('closes at once a stream whose initiator wrote its messages and closed its end in the same flight as the protocol header', async () => {
    const { handle } = await import('@libp2p/multistream-select')
    const lp = await import('it-length-prefixed')
    const [outbound, inbound] = await streamPair()
    const text = (s: string): Uint8Array => new TextEncoder().encode(s)
    // an optimistic initiator: header, protocol, two messages, then its end closed
    const out = new Uint8ArrayList(lp.encode.single(text('/multistream/1.0.0\n')), lp.encode.single(text(`${PROTOCOL}\n`)))
    out.append(encodeFrame({ message: msg(1) }), encodeFrame({ message: msg(2) }))
    outbound.send(out)
    outbound.close().catch(() => {})
    const protocol = await handle(inbound, [PROTOCOL])
    expect(protocol).toBe(PROTOCOL)
    // as the registrar does: the handler is called once the protocol is settled
    const store = vi.fn(() => 'stored' as const)
    // an idle timeout far beyond the test's: only the end of the stream can finish it
    const { running } = await serve(inbound, { store }, { idleTimeout: 600_000 })
    // both acked and the stream closed right away, as the spec says (4.3)
    await running
    expect(store).toHaveBeenCalledTimes(2)
    // what came back: multistream-select's two lines, then the acks, then the end
    const back = []
    for await (const buf of lp.decode(outbound)) back.push(buf.subarray())
    expect(back.slice(2).map(buf => decodeFrame(buf).ack?.id[0])).toEqual([1, 2])
  })
})
