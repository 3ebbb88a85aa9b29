import { streamPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Ack, ChatMessage, Frame, GROUP_PROTOCOL, MAX_FRAME_BYTES, PROTOCOL, connectionPath } from '../../protocols/im/index.js'
import {
  StreamFrames, fakeConnection, hex, link, makePeer, messageId, outboundMessage, startService, streamClosed, varint, writeRawFrame
} from './im-helpers.js'
import type { Admission, ImInit, InboundMessage, Refusal, StoreResult } from '../../protocols/im/index.js'
import type { ServiceUnderTest } from './im-helpers.js'
import type { Connection, PeerId, Stream } from '@libp2p/interface'

const running: ServiceUnderTest[] = []

afterEach(async () => {
  for (const s of running.splice(0)) {
    await s.service.stop()
  }
})

async function service (init: ImInit): Promise<ServiceUnderTest> {
  const s = await startService(init)
  running.push(s)
  return s
}

/** A receiver whose callbacks are spies, plus a sender service linked to it. */
async function pair (opts: {
  store?: ImInit['store']
  admit?: ImInit['admit']
  receiver?: Partial<ImInit>
  sender?: Partial<ImInit>
  remoteAddr?: string
  limits?: Connection['limits']
  protocol?: string
} = {}) {
  const stored: InboundMessage[] = []
  const store = vi.fn<ImInit['store']>(opts.store ?? (async (message) => {
    stored.push(message)
    return 'stored' as const
  }))
  const onRefused = vi.fn<(refusal: Refusal) => void>()
  const receiver = await service({ store, onRefused, admit: opts.admit, ...opts.receiver })
  const sender = await service({ store: async () => { throw new Error('the sender stores nothing') }, ...opts.sender })
  const senderPeer = await makePeer()
  const receiverPeer = await makePeer()
  const net = link({
    senderPeer,
    receiverPeer,
    remoteAddr: opts.remoteAddr,
    limits: opts.limits,
    protocol: opts.protocol,
    onInbound: receiver.handle
  })
  return { receiver, sender, store, stored, onRefused, senderPeer, receiverPeer, net }
}

/** An initiator stream wired straight into the receiver's handler. */
async function rawStream (receiver: ServiceUnderTest, connection: Connection, protocol = PROTOCOL): Promise<{ outbound: Stream, inbound: Stream, handled: Promise<void>, acks: StreamFrames }> {
  const [outbound, inbound] = await streamPair()
  Object.assign(inbound, { protocol })
  const handled = receiver.handle(inbound, connection)
  return { outbound, inbound, handled, acks: new StreamFrames(outbound) }
}

function chatMessage (overrides: Partial<ChatMessage> = {}): ChatMessage {
  return { id: messageId(), seq: 1n, sentAt: 1_700_000_000_000n, body: 'hi', ...overrides }
}

/** A Promise with its resolve exposed, for store callbacks held by the test. */
function gate<T> (): PromiseWithResolvers<T> {
  return Promise.withResolvers<T>()
}

describe('/im/1.0.0 service', () => {
  it('registers its handler on start, for limited connections too', async () => {
    const { registrar } = await service({ store: async () => 'stored' as const })

    // both versions: 1.1.0 is 1.0.0 with the group field
    expect(registrar.handles.map(h => h.protocol)).toEqual([PROTOCOL, GROUP_PROTOCOL])
    expect(registrar.handles.every(h => h.options?.runOnLimitedConnection === true)).toBe(true)
    expect(typeof registrar.handler()).toBe('function')
  })

  it('carries a group payload on /im/1.1.0, and never sends one to a peer that speaks only /im/1.0.0', async () => {
    const group = new Uint8Array([1, 2, 3])
    const newer = await pair()
    const ack = await newer.sender.service.send(newer.net.senderConnection, { ...outboundMessage(), body: '', group })
    expect(ack.status).toBe(Ack.Status.OK)
    expect(newer.stored[0].group).toEqual(group)

    const older = await pair({ protocol: PROTOCOL })
    const refused = await older.sender.service.send(older.net.senderConnection, { ...outboundMessage(), body: '', group })
    expect(refused.status).toBe(Ack.Status.INVALID)
    expect(older.stored).toHaveLength(0)
    expect(older.onRefused).not.toHaveBeenCalled()
    // a one-to-one message still goes
    expect((await older.sender.service.send(older.net.senderConnection, outboundMessage())).status).toBe(Ack.Status.OK)
  })

  it('answers INVALID a group payload on a /im/1.0.0 stream, or beside a body', async () => {
    const { receiver, net } = await pair({ protocol: PROTOCOL })
    const old = await rawStream(receiver, net.receiverConnection, PROTOCOL)
    writeRawFrame(old.outbound, { message: chatMessage({ body: '', group: new Uint8Array([1]) }) })
    expect((await old.acks.next())?.ack?.status).toBe(Ack.Status.INVALID)
    const newer = await rawStream(receiver, net.receiverConnection, GROUP_PROTOCOL)
    writeRawFrame(newer.outbound, { message: chatMessage({ body: 'text too', group: new Uint8Array([1]) }) })
    expect((await newer.acks.next())?.ack?.status).toBe(Ack.Status.INVALID)
  })

  it('opens the outbound stream with the protocol and runOnLimitedConnection', async () => {
    const { sender, net } = await pair()

    const ack = await sender.service.send(net.senderConnection, outboundMessage())

    expect(ack.status).toBe(Ack.Status.OK)
    expect(net.newStreamCalls).toHaveLength(1)
    // the newest version first, so that multistream-select settles on what both speak
    expect(net.newStreamCalls[0].protocol).toEqual([GROUP_PROTOCOL, PROTOCOL])
    expect(net.newStreamCalls[0].options?.runOnLimitedConnection).toBe(true)
  })

  it('delivers every field of a message to store', async () => {
    const { sender, stored, net } = await pair()
    const replyTo = messageId()
    const message = outboundMessage({ seq: 42, sentAt: 1_723_456_789_012, body: 'grüße 🎉', contentType: 'text/markdown', replyTo })

    const ack = await sender.service.send(net.senderConnection, message)

    expect(ack.status).toBe(Ack.Status.OK)
    expect(hex(ack.id)).toBe(hex(message.id))
    expect(stored).toHaveLength(1)
    expect(hex(stored[0].id)).toBe(hex(message.id))
    expect(stored[0].seq).toBe(42)
    expect(stored[0].sentAt).toBe(1_723_456_789_012)
    expect(stored[0].body).toBe('grüße 🎉')
    expect(stored[0].contentType).toBe('text/markdown')
    expect(hex(stored[0].replyTo!)).toBe(hex(replyTo))
    expect(stored[0].connection).toBe(net.receiverConnection)
  })

  it('reports an absent content_type as text/plain', async () => {
    const { sender, stored, net } = await pair()

    await sender.service.send(net.senderConnection, outboundMessage())

    expect(stored[0].contentType).toBe('text/plain')
    expect(stored[0].replyTo).toBeUndefined()
  })

  describe('limits (spec section 6)', () => {
    const ascii = (n: number): string => 'a'.repeat(n)

    it.each([
      ['a body of exactly 32,768 ASCII bytes', Ack.Status.OK, { body: ascii(32_768) }],
      ['a body of 32,768 bytes in 4-byte characters', Ack.Status.OK, { body: '🎉'.repeat(8192) }],
      ['a body of 32,768 bytes in 3-byte characters', Ack.Status.OK, { body: '€'.repeat(10_922) + 'ab' }],
      ['a body of 32,769 ASCII bytes', Ack.Status.TOO_LARGE, { body: ascii(32_769) }],
      ['a body of 32,769 bytes in 3-byte characters', Ack.Status.TOO_LARGE, { body: '€'.repeat(10_923) }],
      ['a body of 32,769 bytes, 4-byte characters and one ASCII', Ack.Status.TOO_LARGE, { body: '🎉'.repeat(8192) + 'a' }],
      ['a body of 10,923 two-byte characters (21,846 bytes)', Ack.Status.OK, { body: 'é'.repeat(10_923) }],
      ['a body of 16,385 two-byte characters (32,770 bytes)', Ack.Status.TOO_LARGE, { body: 'é'.repeat(16_385) }],
      ['a content_type of 128 bytes', Ack.Status.OK, { contentType: 'text/' + ascii(123) }],
      ['a content_type with parameters', Ack.Status.OK, { contentType: 'text/markdown; charset=utf-8' }],
      ['a content_type with a quoted parameter', Ack.Status.OK, { contentType: 'text/plain; x="a; b"' }],
      ['a content_type that is not a media type', Ack.Status.INVALID, { contentType: 'text' }],
      ['an empty content_type', Ack.Status.INVALID, { contentType: '' }],
      ['a content_type with an escape sequence', Ack.Status.INVALID, { contentType: 'text/plain\x1b[2K' }],
      ['a content_type with a non-ASCII character', Ack.Status.INVALID, { contentType: 'text/plaïn' }],
      ['a content_type of 129 bytes', Ack.Status.TOO_LARGE, { contentType: ascii(129) }],
      ['a content_type of 129 bytes in 43 three-byte characters', Ack.Status.TOO_LARGE, { contentType: '€'.repeat(43) }],
      ['an id of 15 bytes', Ack.Status.INVALID, { id: new Uint8Array(15).fill(1) }],
      ['an id of 17 bytes', Ack.Status.INVALID, { id: new Uint8Array(17).fill(1) }],
      ['an empty id', Ack.Status.INVALID, { id: new Uint8Array(0) }],
      ['seq 0', Ack.Status.INVALID, { seq: 0 }],
      ['a reply_to of 8 bytes', Ack.Status.INVALID, { replyTo: new Uint8Array(8).fill(2) }],
      ['a reply_to of 17 bytes', Ack.Status.INVALID, { replyTo: new Uint8Array(17).fill(2) }],
      ['a reply_to of 16 bytes', Ack.Status.OK, { replyTo: new Uint8Array(16).fill(2) }]
    ] as const)('%s is answered %s through service.send', async (_, status, overrides) => {
      const { sender, store, onRefused, senderPeer, net } = await pair()
      const message = outboundMessage(overrides)

      const ack = await sender.service.send(net.senderConnection, message)

      expect(ack.status).toBe(status)
      expect(hex(ack.id)).toBe(hex(message.id))
      if (status === Ack.Status.OK) {
        expect(store).toHaveBeenCalledTimes(1)
        expect(onRefused).not.toHaveBeenCalled()
      } else {
        expect(store).not.toHaveBeenCalled()
        expect(onRefused).toHaveBeenCalledTimes(1)
        const refusal = onRefused.mock.calls[0][0]
        expect(refusal.status).toBe(status)
        expect(refusal.from.equals(senderPeer)).toBe(true)
        expect(hex(refusal.id)).toBe(hex(message.id))
        expect(refusal.seq).toBe(BigInt(message.seq))
      }
    })

    it.each([
      ['a body of 32,769 bytes', Ack.Status.TOO_LARGE, { body: 'a'.repeat(32_769) }],
      ['a multi-byte body over the limit', Ack.Status.TOO_LARGE, { body: 'ß'.repeat(16_385) }],
      ['a content_type of 129 bytes', Ack.Status.TOO_LARGE, { contentType: 'x'.repeat(129) }],
      ['a content_type with control characters', Ack.Status.INVALID, { contentType: 'text/plain\r\n\u0000' }],
      ['a content_type without a subtype', Ack.Status.INVALID, { contentType: 'text/' }],
      ['an id of 15 bytes', Ack.Status.INVALID, { id: new Uint8Array(15) }],
      ['an id of 17 bytes', Ack.Status.INVALID, { id: new Uint8Array(17) }],
      ['seq 0', Ack.Status.INVALID, { seq: 0n }],
      ['a reply_to of 8 bytes', Ack.Status.INVALID, { replyTo: new Uint8Array(8) }]
    ] as const)('a raw frame with %s is answered %s, and the stream carries on', async (_, status, overrides) => {
      const { receiver, store, onRefused, net } = await pair()
      const { outbound, handled, acks } = await rawStream(receiver, net.receiverConnection)
      const refused = chatMessage(overrides)
      const fine = chatMessage({ seq: 2n })

      writeRawFrame(outbound, { message: refused })
      writeRawFrame(outbound, { message: fine })

      const first = await acks.expectFrame()
      expect(first.message).toBeUndefined()
      expect(first.ack?.status).toBe(status)
      expect(hex(first.ack!.id)).toBe(hex(refused.id))
      expect(onRefused).toHaveBeenCalledTimes(1)
      expect(onRefused.mock.calls[0][0].status).toBe(status)

      const second = await acks.expectFrame()
      expect(second.ack?.status).toBe(Ack.Status.OK)
      expect(hex(second.ack!.id)).toBe(hex(fine.id))
      expect(store).toHaveBeenCalledTimes(1)
      expect(hex(store.mock.calls[0][0].id)).toBe(hex(fine.id))

      await outbound.close()
      expect(await acks.next()).toBeUndefined()
      await expect(handled).resolves.toBeUndefined()
    })

    it('answers BLOCKED when admit blocks the peer, without storing', async () => {
      const admit = vi.fn<(peer: PeerId) => Admission>(() => ({ status: 'block' }))
      const { sender, store, onRefused, senderPeer, net } = await pair({ admit })
      const message = outboundMessage({ seq: 3 })

      const ack = await sender.service.send(net.senderConnection, message)

      expect(ack.status).toBe(Ack.Status.BLOCKED)
      expect(hex(ack.id)).toBe(hex(message.id))
      expect(admit).toHaveBeenCalledTimes(1)
      expect(admit.mock.calls[0][0].equals(senderPeer)).toBe(true)
      expect(store).not.toHaveBeenCalled()
      expect(onRefused).toHaveBeenCalledTimes(1)
      expect(onRefused.mock.calls[0][0]).toMatchObject({ status: Ack.Status.BLOCKED, seq: 3n })
      expect(onRefused.mock.calls[0][0].from.equals(senderPeer)).toBe(true)
    })

    it('answers RATE_LIMITED with retry_after_ms when admit rate-limits, without storing', async () => {
      const { sender, store, onRefused, net } = await pair({
        admit: async () => ({ status: 'rate-limit', retryAfterMs: 1500 })
      })
      const message = outboundMessage()

      const ack = await sender.service.send(net.senderConnection, message)

      expect(ack.status).toBe(Ack.Status.RATE_LIMITED)
      expect(ack.retryAfterMs).toBe(1500)
      expect(hex(ack.id)).toBe(hex(message.id))
      expect(store).not.toHaveBeenCalled()
      // a rate-limited message is not refused for good: it does not fill its seq
      expect(onRefused).not.toHaveBeenCalled()
    })

    it('answers RATE_LIMITED without retry_after_ms when admit gives none', async () => {
      const { receiver, store, net } = await pair({ admit: () => ({ status: 'rate-limit' }) })
      const { outbound, acks } = await rawStream(receiver, net.receiverConnection)
      const message = chatMessage()

      writeRawFrame(outbound, { message })
      const frame = await acks.expectFrame()

      expect(frame.ack?.status).toBe(Ack.Status.RATE_LIMITED)
      expect(frame.ack?.retryAfterMs).toBeUndefined()
      expect(store).not.toHaveBeenCalled()
    })

    it('answers DUPLICATE when store reports a duplicate', async () => {
      const seen = new Set<string>()
      const { sender, store, onRefused, net } = await pair({
        store: async (message): Promise<StoreResult> => {
          const key = `${message.from.toString()}/${hex(message.id)}`
          if (seen.has(key)) {
            return 'duplicate'
          }
          seen.add(key)
          return 'stored'
        }
      })
      const message = outboundMessage()

      const first = await sender.service.send(net.senderConnection, message)
      const again = await sender.service.send(net.senderConnection, message)

      expect(first.status).toBe(Ack.Status.OK)
      expect(again.status).toBe(Ack.Status.DUPLICATE)
      expect(hex(again.id)).toBe(hex(message.id))
      expect(store).toHaveBeenCalledTimes(2)
      expect(onRefused).not.toHaveBeenCalled()
    })

    // the spec: any 16 bytes are an id; a receiver must not require a UUID version or variant
    it.each([
      ['16 x 0xff', new Uint8Array(16).fill(0xff)],
      ['all zeros', new Uint8Array(16)],
      ['16 x 0x01 (version 0, variant 0)', new Uint8Array(16).fill(0x01)],
      ['version 15 and an invalid variant', Uint8Array.from({ length: 16 }, (_, i) => i === 6 ? 0xf0 : i === 8 ? 0xc0 : 0xab)]
    ])('stores and acks OK a 16-byte id that is not a valid UUID: %s', async (_, id) => {
      const { receiver, stored, onRefused, net } = await pair()
      const { outbound, handled, acks } = await rawStream(receiver, net.receiverConnection)
      const message = chatMessage({ id, replyTo: id })

      writeRawFrame(outbound, { message })
      const frame = await acks.expectFrame()

      expect(frame.ack?.status).toBe(Ack.Status.OK)
      expect(hex(frame.ack!.id)).toBe(hex(id))
      expect(stored).toHaveLength(1)
      expect(hex(stored[0].id)).toBe(hex(id))
      expect(hex(stored[0].replyTo!)).toBe(hex(id))
      expect(onRefused).not.toHaveBeenCalled()
      await outbound.close()
      await expect(handled).resolves.toBeUndefined()
    })

    it('answers RATE_LIMITED with retry_after_ms when store reports rate-limited, in order with the other acks', async () => {
      const { receiver, store, onRefused, net } = await pair({
        store: async (message): Promise<StoreResult> => {
          if (message.body === 'over quota') return { status: 'rate-limited', retryAfterMs: 5000 }
          if (message.body === 'over quota, no hint') return { status: 'rate-limited' }
          return 'stored'
        }
      })
      const { outbound, handled, acks } = await rawStream(receiver, net.receiverConnection)
      const messages = [
        chatMessage({ seq: 1n, body: 'before' }),
        chatMessage({ seq: 2n, body: 'over quota' }),
        chatMessage({ seq: 3n, body: 'after' }),
        chatMessage({ seq: 4n, body: 'over quota, no hint' }),
        chatMessage({ seq: 5n, body: 'last' })
      ]

      for (const message of messages) writeRawFrame(outbound, { message })
      const frames: Frame[] = []
      while (frames.length < messages.length) frames.push(await acks.expectFrame())

      expect(frames.map(f => hex(f.ack!.id))).toEqual(messages.map(m => hex(m.id)))
      expect(frames.map(f => f.ack?.status)).toEqual([
        Ack.Status.OK, Ack.Status.RATE_LIMITED, Ack.Status.OK, Ack.Status.RATE_LIMITED, Ack.Status.OK
      ])
      expect(frames.map(f => f.ack?.retryAfterMs)).toEqual([undefined, 5000, undefined, undefined, undefined])
      expect(store).toHaveBeenCalledTimes(5)
      // not refused for good: a rate-limited message does not fill its seq
      expect(onRefused).not.toHaveBeenCalled()
      await outbound.close()
      expect(await acks.next()).toBeUndefined()
      await expect(handled).resolves.toBeUndefined()
    })

    it('resolves send with RATE_LIMITED and retryAfterMs when store reports rate-limited', async () => {
      const { sender, net } = await pair({
        store: async () => ({ status: 'rate-limited', retryAfterMs: 5000 })
      })
      const message = outboundMessage()

      const ack = await sender.service.send(net.senderConnection, message)

      expect(ack.status).toBe(Ack.Status.RATE_LIMITED)
      expect(ack.retryAfterMs).toBe(5000)
      expect(hex(ack.id)).toBe(hex(message.id))
    })

    it('accepts a message with unknown fields (spec section 7)', async () => {
      const { receiver, stored, net } = await pair()
      const { outbound, acks } = await rawStream(receiver, net.receiverConnection)
      const message = chatMessage({ body: 'from the future' })
      const unknown = Uint8Array.from([(9 << 3) | 0, 0x2a, (10 << 3) | 2, 1, 0xff])
      const inner = new Uint8Array([...ChatMessage.encode(message), ...unknown])
      const frame = new Uint8Array([0x0a, ...lp.encode.single(inner).subarray(), ...unknown])

      outbound.send(lp.encode.single(frame))
      const answer = await acks.expectFrame()

      expect(answer.ack?.status).toBe(Ack.Status.OK)
      expect(stored.map(m => m.body)).toEqual(['from the future'])
    })
  })

  describe('misbehaving streams (spec sections 2 and 6)', () => {
    /** Sends a valid message on a fresh stream of the same service and expects OK. */
    async function expectServiceStillWorks (receiver: ServiceUnderTest, connection: Connection): Promise<void> {
      const { outbound, handled, acks } = await rawStream(receiver, connection)
      const message = chatMessage()
      writeRawFrame(outbound, { message })
      const frame = await acks.expectFrame()
      expect(frame.ack?.status).toBe(Ack.Status.OK)
      expect(hex(frame.ack!.id)).toBe(hex(message.id))
      await outbound.close()
      await expect(handled).resolves.toBeUndefined()
    }

    it.each([
      ['65,537', 65_537],
      ['10 MB', 10 * 1024 * 1024],
      ['2^31', 2 ** 31]
    ])('aborts the stream on a length prefix of %s without waiting for the frame', async (_, length) => {
      const { receiver, store, onRefused, net } = await pair()
      const { outbound, inbound, handled } = await rawStream(receiver, net.receiverConnection)

      // only the prefix and a few bytes: the receiver must not wait for the rest
      outbound.send(lp.encode.single(new Uint8Array(16)).subarray(0, 0))
      outbound.send(new Uint8Array([...varint(length), 1, 2, 3]))

      await expect(handled).resolves.toBeUndefined()
      expect(['aborted', 'reset']).toContain(inbound.status)
      expect(['aborted', 'reset']).toContain(await streamClosed(outbound))
      expect(store).not.toHaveBeenCalled()
      expect(onRefused).not.toHaveBeenCalled()

      await expectServiceStillWorks(receiver, net.receiverConnection)
      expect(store).toHaveBeenCalledTimes(1)
    })

    it('aborts an oversized stream while another stream of the connection carries on', async () => {
      const held = gate<StoreResult>()
      const { receiver, store, net } = await pair({ store: async () => held.promise })
      const good = await rawStream(receiver, net.receiverConnection)
      const bad = await rawStream(receiver, net.receiverConnection)
      const message = chatMessage()

      writeRawFrame(good.outbound, { message })
      await vi.waitFor(() => { expect(store).toHaveBeenCalledTimes(1) }, { timeout: 10_000 })

      bad.outbound.send(varint(MAX_FRAME_BYTES + 1))
      await expect(bad.handled).resolves.toBeUndefined()
      expect(['aborted', 'reset']).toContain(bad.inbound.status)

      expect(good.inbound.status).toBe('open')
      held.resolve('stored')
      const frame = await good.acks.expectFrame()
      expect(frame.ack?.status).toBe(Ack.Status.OK)
      expect(hex(frame.ack!.id)).toBe(hex(message.id))
      expect(store).toHaveBeenCalledTimes(1)
    })

    it('accepts a frame of exactly 65,536 bytes (and answers TOO_LARGE for its body)', async () => {
      const { receiver, store, net } = await pair()
      const { outbound, inbound, acks } = await rawStream(receiver, net.receiverConnection)
      const base = chatMessage({ body: '' })
      const overhead = Frame.encode({ message: { ...base, body: 'a'.repeat(40_000) } }).byteLength - 40_000
      const message = { ...base, body: 'a'.repeat(MAX_FRAME_BYTES - overhead) }
      const encoded = Frame.encode({ message })
      expect(encoded.byteLength).toBe(MAX_FRAME_BYTES)

      outbound.send(lp.encode.single(encoded))
      const frame = await acks.expectFrame()

      expect(frame.ack?.status).toBe(Ack.Status.TOO_LARGE)
      expect(inbound.status).toBe('open')
      expect(store).not.toHaveBeenCalled()
    })

    const CHAT = Frame.encode({ message: { id: new Uint8Array(16).fill(5), seq: 1n, sentAt: 1n, body: 'x' } })
    const ACK = Frame.encode({ ack: { id: new Uint8Array(16).fill(5), status: Ack.Status.OK } })

    it.each([
      ['a field with the invalid wire type 7', Uint8Array.from([(3 << 3) | 7, 0, 0, 0])],
      ['a truncated length-delimited message field', Uint8Array.from([0x0a, 0x50, 0x0a, 0x10])],
      ['an overlong varint tag', new Uint8Array(12).fill(0xff)],
      ['random bytes with a bad nested message', Uint8Array.from([0x0a, 0x03, 0x0a, 0xff, 0x01])],
      ['an empty frame (neither message nor ack)', new Uint8Array(0)],
      ['a frame with only unknown fields (neither message nor ack)', Uint8Array.from([(9 << 3) | 0, 1])],
      ['a frame carrying both message and ack', new Uint8Array([...CHAT, ...ACK])],
      ['an ack sent by the initiator', ACK]
    ])('aborts the stream on %s, and the service carries on', async (_, payload) => {
      const { receiver, store, onRefused, net } = await pair()
      const { outbound, inbound, handled, acks } = await rawStream(receiver, net.receiverConnection)

      outbound.send(lp.encode.single(payload))

      await expect(handled).resolves.toBeUndefined()
      expect(['aborted', 'reset']).toContain(inbound.status)
      // no ack ever comes back on the aborted stream
      await expect(acks.next().catch(() => undefined)).resolves.toBeUndefined()
      expect(store).not.toHaveBeenCalled()
      expect(onRefused).not.toHaveBeenCalled()

      await expectServiceStillWorks(receiver, net.receiverConnection)
    })

    // regression (found by the fuzz test): it-length-prefixed ends quietly when the stream ends right after a prefix
    it.each([
      ['right after a length prefix', Uint8Array.from([...varint(10)])],
      ['right after a zero length prefix', Uint8Array.from([0])],
      ['inside a frame', Uint8Array.from([...varint(10), 0x0a, 0x02])]
    ])('aborts a stream that ends %s', async (_, bytes) => {
      const { receiver, store, net } = await pair()
      const { outbound, inbound, handled } = await rawStream(receiver, net.receiverConnection)

      outbound.send(bytes)
      await outbound.close()

      await expect(handled).resolves.toBeUndefined()
      expect(['aborted', 'reset']).toContain(inbound.status)
      expect(store).not.toHaveBeenCalled()
    })

    it('aborts after answering the good frames that came before the garbage', async () => {
      const { receiver, store, net } = await pair()
      const { outbound, inbound, handled, acks } = await rawStream(receiver, net.receiverConnection)
      const message = chatMessage()

      writeRawFrame(outbound, { message })
      outbound.send(lp.encode.single(Uint8Array.from([(3 << 3) | 7])))

      const frame = await acks.expectFrame()
      expect(frame.ack?.status).toBe(Ack.Status.OK)
      await expect(handled).resolves.toBeUndefined()
      expect(['aborted', 'reset']).toContain(inbound.status)
      expect(store).toHaveBeenCalledTimes(1)
    })

    it('aborts the stream without an ack when store throws, so the sender retries', async () => {
      const { sender, net } = await pair({
        store: async () => { throw new Error('disk full') }
      })

      await expect(sender.service.send(net.senderConnection, outboundMessage())).rejects.toThrow()
      await expect(net.handled[0]).resolves.toBeUndefined()
      expect(['aborted', 'reset']).toContain(net.pairs[0][1].status)
      expect(['aborted', 'reset']).toContain(await streamClosed(net.pairs[0][0]))
    })

    it('aborts the stream when store does not settle within ackTimeout', async () => {
      const { receiver, net } = await pair({
        store: async () => new Promise<StoreResult>(() => {}),
        receiver: { ackTimeout: 200 }
      })
      const { outbound, inbound, handled, acks } = await rawStream(receiver, net.receiverConnection)

      writeRawFrame(outbound, { message: chatMessage() })

      await expect(handled).resolves.toBeUndefined()
      expect(['aborted', 'reset']).toContain(inbound.status)
      await expect(acks.next().catch(() => undefined)).resolves.toBeUndefined()
    })
  })

  describe('pipelining (spec section 4)', () => {
    it('keeps at most 64 messages unacknowledged on one stream', async () => {
      const receiverPeer = await makePeer()
      const { service: sender } = await service({ store: async () => 'stored' as const })
      let inbound: Stream | undefined
      const opened = gate<Stream>()
      let writes = 0 // frames written
      const connection = fakeConnection({
        remotePeer: receiverPeer,
        newStream: async () => {
          const [out, inb] = await streamPair()
          inbound = inb
          const send = out.send.bind(out)
          // frames sent together go in one write: count the frames, not the writes
          out.send = (data) => {
            writes += [...lp.decode([data])].length
            return send(data)
          }
          opened.resolve(inb)
          return out
        }
      })

      const messages = Array.from({ length: 70 }, (_, i) => outboundMessage({ seq: i + 1, body: `m${i + 1}` }))
      const results = messages.map(async m => sender.send(connection, m))
      results.forEach(r => { r.catch(() => {}) })

      const frames = new StreamFrames(await opened.promise)
      const received: ChatMessage[] = []
      while (received.length < 64) {
        const frame = await frames.expectFrame()
        received.push(frame.message!)
      }

      // 64 frames are out; the 65th must not be written until an ack comes back
      expect(writes).toBe(64)
      const early = frames.next()
      let earlyArrived = false
      early.then(() => { earlyArrived = true }, () => {})
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(earlyArrived).toBe(false)
      expect(writes).toBe(64)

      // one ack frees one slot: exactly one more frame arrives
      writeRawFrame(inbound!, { ack: { id: received[0].id, status: Ack.Status.OK } })
      const sixtyFifth = await early
      received.push(sixtyFifth!.message!)
      expect(writes).toBe(65)
      const first = await results[0]
      expect(first.status).toBe(Ack.Status.OK)

      // ack everything else; every send resolves with its own ack
      let acked = 1
      while (acked < messages.length) {
        writeRawFrame(inbound!, { ack: { id: received[acked].id, status: Ack.Status.OK } })
        acked++
        if (received.length < messages.length) {
          received.push((await frames.expectFrame()).message!)
        }
      }
      const acks = await Promise.all(results)
      expect(acks.map(a => hex(a.id))).toEqual(messages.map(m => hex(m.id)))
      expect(new Set(received.map(m => hex(m.id))).size).toBe(70)
      expect(writes).toBe(70)
    })

    it('hands the frames of sends started together to the stream in a few writes, in order', async () => {
      const receiverPeer = await makePeer()
      const { service: sender } = await service({ store: async () => 'stored' as const })
      const writes: number[] = [] // frames in each write
      const opened = gate<Stream>()
      const connection = fakeConnection({
        remotePeer: receiverPeer,
        newStream: async () => {
          const [out, inb] = await streamPair()
          const send = out.send.bind(out)
          out.send = (data) => {
            writes.push([...lp.decode([data])].length)
            return send(data)
          }
          opened.resolve(inb)
          return out
        }
      })

      const messages = Array.from({ length: 40 }, (_, i) => outboundMessage({ seq: i + 1, body: 'x'.repeat(200) }))
      const results = messages.map(async m => sender.send(connection, m))
      const inbound = await opened.promise
      const frames = new StreamFrames(inbound)
      const received: ChatMessage[] = []
      while (received.length < messages.length) received.push((await frames.expectFrame()).message!)
      for (const m of received) writeRawFrame(inbound, { ack: { id: m.id, status: Ack.Status.OK } })
      await Promise.all(results)

      expect(received.map(m => Number(m.seq))).toEqual(messages.map(m => Number(m.seq)))
      expect(writes.reduce((a, b) => a + b, 0)).toBe(40)
      // about 15 frames of 200 bytes to a write: a few writes, neither one each nor all at once
      expect(writes.length).toBeGreaterThanOrEqual(2)
      expect(writes.length).toBeLessThanOrEqual(5)
    })

    it('resolves every send with the ack of its own id, in order', async () => {
      const { sender, stored, net } = await pair()
      const messages = Array.from({ length: 10 }, (_, i) => outboundMessage({ seq: i + 1, body: `n${i + 1}` }))
      const order: string[] = []

      const acks = await Promise.all(messages.map(async m => {
        const ack = await sender.service.send(net.senderConnection, m)
        order.push(hex(ack.id))
        return ack
      }))

      expect(acks.map(a => a.status)).toEqual(messages.map(() => Ack.Status.OK))
      expect(acks.map(a => hex(a.id))).toEqual(messages.map(m => hex(m.id)))
      expect(order).toEqual(messages.map(m => hex(m.id)))
      // one stream carried all ten, and the receiver saw them in the order they were sent
      expect(net.newStreamCalls).toHaveLength(1)
      expect(stored.map(m => m.seq)).toEqual(messages.map(m => m.seq))
    })

    it('matches acks to messages when the receiver answers with mixed statuses', async () => {
      let n = 0
      const { sender, net } = await pair({
        store: async () => (n++ % 2 === 0 ? 'stored' : 'duplicate')
      })
      const messages = [
        outboundMessage({ seq: 1 }),
        outboundMessage({ seq: 2 }),
        outboundMessage({ seq: 0 }),
        outboundMessage({ seq: 4, body: 'x'.repeat(40_000) }),
        outboundMessage({ seq: 5 })
      ]

      const acks = await Promise.all(messages.map(async m => sender.service.send(net.senderConnection, m)))

      expect(acks.map(a => a.status)).toEqual([
        Ack.Status.OK, Ack.Status.DUPLICATE, Ack.Status.INVALID, Ack.Status.TOO_LARGE, Ack.Status.OK
      ])
      expect(acks.map(a => hex(a.id))).toEqual(messages.map(m => hex(m.id)))
    })
  })

  describe('path', () => {
    it.each([
      ['a tcp address', '/ip4/127.0.0.1/tcp/1', undefined, 'direct'],
      ['a /p2p-circuit address', 'circuit', undefined, 'relayed'],
      ['a connection with limits', '/ip4/127.0.0.1/tcp/1', { bytes: 131_072n, seconds: 120 }, 'relayed'],
      ['a /p2p-circuit/webrtc address', 'webrtc', undefined, 'direct']
    ] as const)('is reported for %s', async (_, addr, limits, path) => {
      const relay = await makePeer()
      const target = await makePeer()
      const remoteAddr = addr === 'circuit'
        ? `/ip4/1.2.3.4/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${target}`
        : addr === 'webrtc'
          ? `/ip4/1.2.3.4/tcp/4001/p2p/${relay}/p2p-circuit/webrtc/p2p/${target}`
          : addr
      const { sender, stored, net } = await pair({ remoteAddr, limits })

      const ack = await sender.service.send(net.senderConnection, outboundMessage())

      expect(ack.status).toBe(Ack.Status.OK)
      expect(ack.path).toBe(path)
      expect(ack.connection).toBe(net.senderConnection)
      expect(stored[0].path).toBe(path)
      expect(connectionPath({ remoteAddr: multiaddr(remoteAddr), limits })).toBe(path)
    })
  })

  describe('identity (spec section 1)', () => {
    it('takes the sender only from the connection\'s remote peer', async () => {
      const { sender, stored, senderPeer, receiverPeer, net } = await pair()

      await sender.service.send(net.senderConnection, outboundMessage())

      expect(stored).toHaveLength(1)
      expect(stored[0].from.equals(senderPeer)).toBe(true)
      expect(stored[0].from.equals(receiverPeer)).toBe(false)
      expect(stored[0].from).toBe(net.receiverConnection.remotePeer)
    })

    it('attributes each stream to the peer of its own connection', async () => {
      const { receiver, stored } = await pair()
      const alice = await makePeer()
      const bob = await makePeer()
      const fromAlice = await rawStream(receiver, fakeConnection({ remotePeer: alice }))
      const fromBob = await rawStream(receiver, fakeConnection({ remotePeer: bob }))
      const a = chatMessage({ body: 'from alice' })
      const b = chatMessage({ body: 'from bob' })

      writeRawFrame(fromBob.outbound, { message: b })
      writeRawFrame(fromAlice.outbound, { message: a })
      await fromAlice.acks.expectFrame()
      await fromBob.acks.expectFrame()

      const byBody = new Map(stored.map(m => [m.body, m.from]))
      expect(byBody.get('from alice')?.equals(alice)).toBe(true)
      expect(byBody.get('from bob')?.equals(bob)).toBe(true)
    })
  })

  describe('missing acks (spec sections 4 and 5)', () => {
    /** A sender whose connection's inbound ends are read by the test and never acked. */
    async function silentReceiver (ackTimeout?: number) {
      const { service: sender } = await service({ store: async () => 'stored' as const, ackTimeout })
      const streams: Array<{ outbound: Stream, inbound: Stream, frames: StreamFrames }> = []
      const opened: Array<PromiseWithResolvers<void>> = [gate<void>(), gate<void>()]
      const connection = fakeConnection({
        remotePeer: await makePeer(),
        newStream: async () => {
          const [outbound, inbound] = await streamPair()
          streams.push({ outbound, inbound, frames: new StreamFrames(inbound) })
          opened[streams.length - 1]?.resolve()
          return outbound
        }
      })
      return { sender, connection, streams, opened }
    }

    it('rejects with AckTimeoutError when no ack comes within ackTimeout', async () => {
      const { sender, connection, streams, opened } = await silentReceiver(200)
      const message = outboundMessage()

      const started = Date.now()
      const result = sender.send(connection, message).then(() => undefined, (e: Error) => e)

      // the message did go out, and is never answered
      await opened[0].promise
      const frame = await streams[0].frames.expectFrame()
      expect(hex(frame.message!.id)).toBe(hex(message.id))

      const err = await result
      expect(err?.name).toBe('AckTimeoutError')
      expect(Date.now() - started).toBeGreaterThanOrEqual(150)
      // the failed stream is given up
      expect(['aborted', 'reset']).toContain(streams[0].outbound.status)
    })

    it('rejects every message in flight when the ack times out, and the next send opens a new stream', async () => {
      const { sender, connection, streams, opened } = await silentReceiver(200)
      const messages = [outboundMessage({ seq: 1 }), outboundMessage({ seq: 2 }), outboundMessage({ seq: 3 })]

      const errors = await Promise.all(messages.map(async m => sender.send(connection, m).then(() => undefined, (e: Error) => e)))
      expect(errors.map(e => e?.name)).toEqual(['AckTimeoutError', 'AckTimeoutError', 'AckTimeoutError'])

      // retry with the same id and seq on a fresh stream, which is answered
      const retry = sender.send(connection, messages[0])
      await opened[1].promise
      expect(streams).toHaveLength(2)
      const frame = await streams[1].frames.expectFrame()
      expect(hex(frame.message!.id)).toBe(hex(messages[0].id))
      expect(frame.message!.seq).toBe(1n)
      writeRawFrame(streams[1].inbound, { ack: { id: frame.message!.id, status: Ack.Status.OK } })
      expect((await retry).status).toBe(Ack.Status.OK)
    })

    it('rejects with StreamEndedError when the receiver closes the stream before acking', async () => {
      const { sender, connection, streams, opened } = await silentReceiver()
      const pending = [outboundMessage({ seq: 1 }), outboundMessage({ seq: 2 })]
        .map(async m => sender.send(connection, m).then(() => undefined, (e: Error) => e))

      await opened[0].promise
      await streams[0].frames.expectFrame()
      await streams[0].frames.expectFrame()
      await streams[0].inbound.close()

      const errors = await Promise.all(pending)
      expect(errors.map(e => e?.name)).toEqual(['StreamEndedError', 'StreamEndedError'])
    })

    it('rejects when the receiver resets the stream before acking', async () => {
      const { sender, connection, streams, opened } = await silentReceiver()
      const pending = sender.send(connection, outboundMessage()).then(() => undefined, (e: Error) => e)

      await opened[0].promise
      await streams[0].frames.expectFrame()
      streams[0].inbound.abort(new Error('receiver gave up'))

      const err = await pending
      expect(err).toBeInstanceOf(Error)
    })

    // regression: the head used to be shifted off before its id was checked, and its send never settled
    it('rejects and aborts the stream when an ack answers the wrong message', async () => {
      const { sender, connection, streams, opened } = await silentReceiver(60_000)
      const pending = sender.send(connection, outboundMessage()).then(() => undefined, (e: Error) => e)

      await opened[0].promise
      await streams[0].frames.expectFrame()
      writeRawFrame(streams[0].inbound, { ack: { id: messageId(), status: Ack.Status.OK } })

      // the sender gives the stream up for the protocol violation ...
      expect(['aborted', 'reset']).toContain(await streamClosed(streams[0].outbound))
      // ... and must then reject the message that was in flight on it, not leave it hanging
      const err = await Promise.race([pending, deadline(2_000)])
      expect(err).not.toBe('still pending')
      expect((err as Error | undefined)?.name).toBe('ProtocolViolationError')
    })

    it('rejects and aborts the stream when the responder sends a message frame', async () => {
      const { sender, connection, streams, opened } = await silentReceiver(60_000)
      const pending = sender.send(connection, outboundMessage()).then(() => undefined, (e: Error) => e)

      await opened[0].promise
      await streams[0].frames.expectFrame()
      writeRawFrame(streams[0].inbound, { message: chatMessage() })

      const err = await pending
      expect(err?.name).toBe('ProtocolViolationError')
      expect(['aborted', 'reset']).toContain(await streamClosed(streams[0].outbound))
    })

    it('lets a send that waits for a slot be aborted', async () => {
      const { service: sender } = await service({ store: async () => 'stored' as const, maxUnacked: 1 })
      const { connection, frames, inbound } = await manualReceiver(sender)
      const first = outboundMessage({ body: 'first' })
      const controller = new AbortController()

      const a = sender.send(connection, first)
      await (await frames).expectFrame()
      const b = sender.send(connection, outboundMessage({ body: 'second' }), { signal: controller.signal })
      controller.abort()

      await expect(b).rejects.toThrow()
      writeRawFrame(await inbound, { ack: { id: first.id, status: Ack.Status.OK } })
      expect((await a).status).toBe(Ack.Status.OK)
    })

    // regression: an aborted slot waiter used to swallow the next freed slot
    it('passes a freed slot to the next live waiter when a waiting send was aborted', async () => {
      const { service: sender } = await service({ store: async () => 'stored' as const, maxUnacked: 1, idleTimeout: 60_000 })
      const { connection, frames: framesP, inbound: inboundP } = await manualReceiver(sender)
      const first = outboundMessage({ body: 'first' })
      const third = outboundMessage({ body: 'third' })
      const controller = new AbortController()

      const a = sender.send(connection, first)
      const frames = await framesP
      await frames.expectFrame()
      const b = sender.send(connection, outboundMessage({ body: 'second' }), { signal: controller.signal })
      const c = sender.send(connection, third)
      c.catch(() => {})
      await Promise.resolve()
      controller.abort()
      await expect(b).rejects.toThrow()

      writeRawFrame(await inboundP, { ack: { id: first.id, status: Ack.Status.OK } })
      expect((await a).status).toBe(Ack.Status.OK)

      // the stream is idle with a send waiting: its frame must go out now
      const next = await Promise.race([frames.next(), deadline(2_000)])
      expect(next).not.toBe('still pending')
      expect((next as Frame).message?.body).toBe('third')
    })
  })
})

/** Resolves with 'still pending' after `ms`: bounds a wait for something that should already have happened. */
async function deadline (ms: number): Promise<'still pending'> {
  return new Promise(resolve => { setTimeout(() => { resolve('still pending') }, ms) })
}

/** A connection whose single outbound stream is read by the test itself. */
async function manualReceiver (sender: ServiceUnderTest['service']) {
  const inbound = gate<Stream>()
  const connection = fakeConnection({
    remotePeer: await makePeer(),
    newStream: async () => {
      const [outbound, inb] = await streamPair()
      inbound.resolve(inb)
      return outbound
    }
  })
  return { connection, inbound: inbound.promise, frames: inbound.promise.then(s => new StreamFrames(s)) }
}
