/**
 * Test doubles for the /im/1.0.0 unit tests: a fake registrar that captures the
 * stream handler, fake connections whose `newStream` hands out one end of an
 * in-memory `streamPair()`, and raw frame helpers for driving a stream by hand.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import { Uint8ArrayList } from 'uint8arraylist'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { vi } from 'vitest'
import { FrameReader, decodeFrame, encodeFrame } from '../../protocols/im/frames.js'
import { im, Frame, PROTOCOL } from '../../protocols/im/index.js'
import type { Ack, ImInit, ImService, OutboundMessage } from '../../protocols/im/index.js'
import type { Connection, ConnectionLimits, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

export type StartedService = ImService & Startable

export async function makePeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

export interface FakeRegistrar {
  registrar: Registrar
  handles: Array<{ protocol: string, options?: StreamHandlerOptions }>
  /** the handler registered by the service, throws when none is */
  handler(): StreamHandler
}

export function fakeRegistrar (): FakeRegistrar {
  const handlers = new Map<string, StreamHandler>()
  const handles: FakeRegistrar['handles'] = []
  const registrar = {
    async handle (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void> {
      handlers.set(protocol, handler)
      handles.push({ protocol, options })
    },
    async unhandle (protocol: string): Promise<void> {
      handlers.delete(protocol)
    }
  }
  return {
    registrar: registrar as unknown as Registrar,
    handles,
    handler () {
      const handler = handlers.get('/im/1.0.0')
      if (handler == null) {
        throw new Error('no /im/1.0.0 handler registered')
      }
      return handler
    }
  }
}

export interface ServiceUnderTest {
  service: StartedService
  registrar: FakeRegistrar
  /** invokes the captured /im handler */
  handle(stream: Stream, connection: Connection): Promise<void>
}

export async function startService (init: ImInit): Promise<ServiceUnderTest> {
  const registrar = fakeRegistrar()
  const service = im(init)({ registrar: registrar.registrar, logger: defaultLogger() }) as StartedService
  await service.start()
  return {
    service,
    registrar,
    handle: async (stream, connection) => { await registrar.handler()(stream, connection) }
  }
}

export interface FakeConnectionInit {
  remotePeer: PeerId
  remoteAddr?: Multiaddr | string
  limits?: ConnectionLimits
  newStream?(protocol: string | string[], options?: any): Promise<Stream>
}

let nextConnectionId = 0

export function fakeConnection (init: FakeConnectionInit): Connection {
  const remoteAddr = init.remoteAddr ?? '/ip4/127.0.0.1/tcp/1'
  return {
    id: `fake-conn-${nextConnectionId++}`,
    remotePeer: init.remotePeer,
    remoteAddr: typeof remoteAddr === 'string' ? multiaddr(remoteAddr) : remoteAddr,
    limits: init.limits,
    newStream: init.newStream ?? (async () => { throw new Error('newStream not expected') })
  } as unknown as Connection
}

export interface Link {
  /** the sender's view: remotePeer is the receiver */
  senderConnection: Connection
  /** the receiver's view: remotePeer is the sender */
  receiverConnection: Connection
  /** every stream pair opened by the sender, outbound first */
  pairs: Array<[outbound: Stream, inbound: Stream]>
  /** what the receiver's handler returned for each inbound stream */
  handled: Array<Promise<void>>
  newStreamCalls: Array<{ protocol: string | string[], options?: any }>
}

/**
 * Connects a sender to a receiver: each `newStream` on the sender's connection
 * makes a fresh stream pair and gives the inbound end to `onInbound` (the
 * receiver's captured handler, or the test itself).
 */
export function link (init: {
  senderPeer: PeerId
  receiverPeer: PeerId
  onInbound(stream: Stream, connection: Connection): Promise<void> | void
  remoteAddr?: Multiaddr | string
  limits?: ConnectionLimits
  /** What multistream-select settles on: the receiver's only version, or by default the first the sender proposes. */
  protocol?: string
}): Link {
  const pairs: Link['pairs'] = []
  const handled: Link['handled'] = []
  const newStreamCalls: Link['newStreamCalls'] = []
  const receiverConnection = fakeConnection({
    remotePeer: init.senderPeer,
    remoteAddr: init.remoteAddr,
    limits: init.limits
  })
  const senderConnection = fakeConnection({
    remotePeer: init.receiverPeer,
    remoteAddr: init.remoteAddr,
    limits: init.limits,
    newStream: async (protocol, options) => {
      newStreamCalls.push({ protocol, options })
      const [outbound, inbound] = await streamPair()
      const negotiated = init.protocol ?? (Array.isArray(protocol) ? protocol[0] : protocol)
      Object.assign(outbound, { protocol: negotiated })
      Object.assign(inbound, { protocol: negotiated })
      pairs.push([outbound, inbound])
      handled.push(Promise.resolve().then(async () => { await init.onInbound(inbound, receiverConnection) }))
      return outbound
    }
  })
  return { senderConnection, receiverConnection, pairs, handled, newStreamCalls }
}

/** The yamux frame types in what a muxer wrote, in order (0 data, 1 window update). */
export function yamuxFrameTypes (chunks: Array<Uint8Array | Uint8ArrayList>): number[] {
  const types: number[] = []
  for (const chunk of chunks) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    for (let at = 0; at + 12 <= bytes.byteLength;) {
      const type = bytes[at + 1]
      types.push(type)
      // a data frame's length field is its body's; a window update's is the window's delta
      at += 12 + (type === 0 ? new DataView(bytes.buffer, bytes.byteOffset + at + 8, 4).getUint32(0) : 0)
    }
  }
  return types
}

/** Writes one frame with its varint length prefix. */
export function writeRawFrame (stream: Stream, frame: Partial<Frame>): void {
  stream.send(lp.encode.single(Frame.encode(frame)))
}

/** Pulls decoded frames off a stream, one `next()` at a time. */
export class StreamFrames {
  private readonly frames: AsyncIterator<Uint8ArrayList>

  constructor (stream: Stream) {
    this.frames = lp.decode(stream)[Symbol.asyncIterator]()
  }

  /** the next frame, or `undefined` when the stream ended */
  async next (): Promise<Frame | undefined> {
    const { done, value } = await this.frames.next()
    if (done === true) {
      return undefined
    }
    return Frame.decode(value)
  }

  /** the next frame, failing when the stream ended instead */
  async expectFrame (): Promise<Frame> {
    const frame = await this.next()
    if (frame == null) {
      throw new Error('stream ended before a frame arrived')
    }
    return frame
  }
}

/** Resolves once the stream is no longer open, with its final status. */
export async function streamClosed (stream: Stream): Promise<string> {
  if (stream.status !== 'open' && stream.status !== 'closing') {
    return stream.status
  }
  return new Promise(resolve => {
    stream.addEventListener('close', () => { resolve(stream.status) }, { once: true })
  })
}

let idCounter = 0

/** A fresh 16-byte message id whose last bytes count up. */
export function messageId (): Uint8Array<ArrayBuffer> {
  const id = new Uint8Array(16)
  crypto.getRandomValues(id)
  new DataView(id.buffer).setUint32(12, ++idCounter)
  return id
}

export function outboundMessage (overrides: Partial<OutboundMessage> = {}): OutboundMessage {
  return {
    id: messageId(),
    seq: 1,
    sentAt: 1_700_000_000_000,
    body: 'hello',
    ...overrides
  }
}

export function hex (bytes: Uint8Array): string {
  return uint8ArrayToString(bytes, 'base16')
}

/** A protobuf / multiformats unsigned varint, for tests that write raw bytes. */
export function varint (value: number): Uint8Array {
  const out: number[] = []
  let v = value
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80)
    v = Math.floor(v / 128)
  }
  out.push(v)
  return Uint8Array.from(out)
}

/**
 * A stream stub: an EventTarget that records what is sent and whether it is
 * paused, and is fed chunks by dispatching `message` events, as a muxer's
 * stream does from inside its read of a frame.
 */
export class StubStream extends EventTarget {
  readonly protocol = PROTOCOL
  status = 'open'
  readStatus = 'readable'
  remoteWriteStatus = 'writable'
  readBufferLength = 0
  readonly sent: Ack[] = []
  readonly pauses: string[] = []
  /** Whether `send` says there is room for more (false: the remote reads nothing, and nothing drains). */
  room = true
  send = vi.fn((data: Uint8Array | Uint8ArrayList) => {
    const frames = new FrameReader()
    frames.push(data)
    for (let buf = frames.next(); buf != null; buf = frames.next()) this.sent.push(decodeFrame(buf).ack as Ack)
    return this.room
  })

  pause (): void { this.readStatus = 'paused'; this.pauses.push('pause') }
  resume (): void { this.readStatus = 'readable'; this.pauses.push('resume') }
  close = vi.fn(async () => { this.status = 'closed'; this.dispatchEvent(new StreamCloseEvent(true)) })
  abort = vi.fn((err: Error) => { this.status = 'aborted'; this.dispatchEvent(new StreamCloseEvent(true, err)) })
  onDrain = async (): Promise<void> => {}

  /** The remote's bytes arriving: the chunk's `message` event. */
  feed (...messages: number[]): void {
    const out = new Uint8ArrayList()
    for (const n of messages) out.append(encodeFrame({ message: { id: new Uint8Array(16).fill(n), seq: BigInt(n), sentAt: 1n, body: `m${n}` } }))
    this.dispatchEvent(new StreamMessageEvent(out))
  }

  /** The remote closes its end. */
  end (): void {
    this.remoteWriteStatus = 'closed'
    this.dispatchEvent(new Event('end'))
  }
}
