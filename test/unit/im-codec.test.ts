import { concat } from 'uint8arrays/concat'
import { describe, expect, it } from 'vitest'
import { Ack, ChatMessage, Frame } from '../../protocols/im/index.js'
import { hex, varint } from './im-helpers.js'

const utf8 = new TextEncoder()

function bytesOf (...values: number[]): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(values)
}

/** An unknown field of every wire type: varint (15), i64 (16), length-delimited (17), i32 (18). */
const UNKNOWN_FIELDS = concat([
  varint((15 << 3) | 0), varint(300),
  varint((16 << 3) | 1), new Uint8Array(8).fill(7),
  varint((17 << 3) | 2), varint(5), utf8.encode('extra'),
  varint((18 << 3) | 5), new Uint8Array(4).fill(9)
])

const ID = Uint8Array.from({ length: 16 }, (_, i) => i + 1)
const REPLY_TO = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 - i)

describe('/im/1.0.0 codec', () => {
  it('round-trips every field of ChatMessage', () => {
    const message: ChatMessage = {
      id: ID,
      seq: 18_446_744_073_709_551_615n, // uint64 max
      sentAt: 1_723_456_789_012n,
      body: 'héllo wörld — 你好 🎉 \u0000 end',
      contentType: 'text/markdown; charset=utf-8',
      replyTo: REPLY_TO
    }

    const decoded = Frame.decode(Frame.encode({ message }))

    expect(decoded.ack).toBeUndefined()
    expect(decoded.message).toBeDefined()
    const m = decoded.message!
    expect(hex(m.id)).toBe(hex(ID))
    expect(typeof m.seq).toBe('bigint')
    expect(m.seq).toBe(18_446_744_073_709_551_615n)
    expect(typeof m.sentAt).toBe('bigint')
    expect(m.sentAt).toBe(1_723_456_789_012n)
    expect(m.body).toBe(message.body)
    expect(m.contentType).toBe('text/markdown; charset=utf-8')
    expect(m.replyTo).toBeDefined()
    expect(hex(m.replyTo!)).toBe(hex(REPLY_TO))
  })

  it('keeps the optional fields of ChatMessage absent when they were not set', () => {
    const decoded = Frame.decode(Frame.encode({ message: { id: ID, seq: 1n, sentAt: 2n, body: 'x' } }))

    expect(decoded.message?.contentType).toBeUndefined()
    expect(decoded.message?.replyTo).toBeUndefined()
    expect(decoded.message?.seq).toBe(1n)
    expect(decoded.message?.sentAt).toBe(2n)
  })

  it('writes the fields with the numbers and wire types of the contract', () => {
    const encoded = ChatMessage.encode({
      id: bytesOf(0xaa),
      seq: 2n,
      sentAt: 3n,
      body: 'b',
      contentType: 'c',
      replyTo: bytesOf(0xbb)
    })

    // 1:bytes 2:varint 3:varint 4:string 5:string 6:bytes
    expect(hex(encoded)).toBe('0a01aa' + '1002' + '1803' + '220162' + '2a0163' + '3201bb')
    expect(hex(Frame.encode({ message: { id: bytesOf(0xaa), seq: 0n, sentAt: 0n, body: '' } }))).toBe('0a03' + '0a01aa')
    expect(hex(Frame.encode({ ack: { id: bytesOf(0xaa), status: Ack.Status.RATE_LIMITED, retryAfterMs: 1 } }))).toBe('1207' + '0a01aa' + '1005' + '1801')
  })

  it.each([
    [Ack.Status.OK, 0],
    [Ack.Status.DUPLICATE, 1],
    [Ack.Status.TOO_LARGE, 2],
    [Ack.Status.INVALID, 3],
    [Ack.Status.BLOCKED, 4],
    [Ack.Status.RATE_LIMITED, 5]
  ])('round-trips an Ack with status %s (wire value %i)', (status, wireValue) => {
    const encoded = Frame.encode({ ack: { id: ID, status } })
    const decoded = Frame.decode(encoded)

    expect(decoded.message).toBeUndefined()
    expect(decoded.ack?.status).toBe(status)
    expect(hex(decoded.ack!.id)).toBe(hex(ID))
    expect(decoded.ack?.retryAfterMs).toBeUndefined()

    // the wire value is the one of the contract (OK, the proto3 default, is not written)
    const ackBytes = Ack.encode({ id: ID, status })
    if (wireValue === 0) {
      expect(hex(ackBytes)).toBe('0a10' + hex(ID))
    } else {
      expect(hex(ackBytes)).toBe('0a10' + hex(ID) + '10' + wireValue.toString(16).padStart(2, '0'))
    }
  })

  it.each([0, 1500, 4_294_967_295])('round-trips Ack.retryAfterMs = %i', (retryAfterMs) => {
    const decoded = Frame.decode(Frame.encode({ ack: { id: ID, status: Ack.Status.RATE_LIMITED, retryAfterMs } }))

    expect(decoded.ack?.status).toBe(Ack.Status.RATE_LIMITED)
    expect(decoded.ack?.retryAfterMs).toBe(retryAfterMs)
  })

  it('ignores unknown fields appended to a Frame', () => {
    const message: ChatMessage = { id: ID, seq: 7n, sentAt: 8n, body: 'ünknown', contentType: 'text/plain', replyTo: REPLY_TO }
    const encoded = concat([Frame.encode({ message }), UNKNOWN_FIELDS])

    const decoded = Frame.decode(encoded)

    expect(decoded.ack).toBeUndefined()
    expect(decoded.message?.seq).toBe(7n)
    expect(decoded.message?.sentAt).toBe(8n)
    expect(decoded.message?.body).toBe('ünknown')
    expect(hex(decoded.message!.id)).toBe(hex(ID))
    expect(hex(decoded.message!.replyTo!)).toBe(hex(REPLY_TO))
    expect(Object.keys(decoded).sort()).toEqual(['message'])
  })

  it('ignores unknown fields inside ChatMessage and Ack', () => {
    const chat = concat([
      UNKNOWN_FIELDS,
      ChatMessage.encode({ id: ID, seq: 3n, sentAt: 4n, body: 'inner' }),
      UNKNOWN_FIELDS
    ])
    const messageFrame = concat([varint((1 << 3) | 2), varint(chat.byteLength), chat])
    const decodedMessage = Frame.decode(messageFrame).message

    expect(decodedMessage?.seq).toBe(3n)
    expect(decodedMessage?.sentAt).toBe(4n)
    expect(decodedMessage?.body).toBe('inner')
    expect(Object.keys(decodedMessage!).sort()).toEqual(['body', 'id', 'sentAt', 'seq'])

    const ack = concat([Ack.encode({ id: ID, status: Ack.Status.DUPLICATE, retryAfterMs: 9 }), UNKNOWN_FIELDS])
    const ackFrame = concat([varint((2 << 3) | 2), varint(ack.byteLength), ack])
    const decodedAck = Frame.decode(ackFrame).ack

    expect(decodedAck?.status).toBe(Ack.Status.DUPLICATE)
    expect(decodedAck?.retryAfterMs).toBe(9)
    expect(hex(decodedAck!.id)).toBe(hex(ID))
  })
})
