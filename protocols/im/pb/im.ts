import { decodeMessage, encodeMessage, enumeration, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Frame {
  message?: ChatMessage
  ack?: Ack
}

export namespace Frame {
  let _codec: Codec<Frame>

  export const codec = (): Codec<Frame> => {
    if (_codec == null) {
      _codec = message<Frame>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.message != null) {
          w.uint32(10)
          ChatMessage.codec().encode(obj.message, w)
        }

        if (obj.ack != null) {
          w.uint32(18)
          Ack.codec().encode(obj.ack, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {}

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.message = ChatMessage.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.message
              })
              break
            }
            case 2: {
              obj.ack = Ack.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.ack
              })
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield * ChatMessage.codec().stream(reader, reader.uint32(), `${prefix}.message`, {
                limits: opts.limits?.message
              })

              break
            }
            case 2: {
              yield * Ack.codec().stream(reader, reader.uint32(), `${prefix}.ack`, {
                limits: opts.limits?.ack
              })

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface FrameMessageIdFieldEvent {
    field: '$.message.id'
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameMessageSeqFieldEvent {
    field: '$.message.seq'
    value: bigint
  }

  export interface FrameMessageSentAtFieldEvent {
    field: '$.message.sentAt'
    value: bigint
  }

  export interface FrameMessageBodyFieldEvent {
    field: '$.message.body'
    value: string
  }

  export interface FrameMessageContentTypeFieldEvent {
    field: '$.message.contentType'
    value: string
  }

  export interface FrameMessageReplyToFieldEvent {
    field: '$.message.replyTo'
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameMessageGroupFieldEvent {
    field: '$.message.group'
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameAckIdFieldEvent {
    field: '$.ack.id'
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameAckStatusFieldEvent {
    field: '$.ack.status'
    value: Ack.Status
  }

  export interface FrameAckRetryAfterMsFieldEvent {
    field: '$.ack.retryAfterMs'
    value: number
  }

  export function encode (obj: Partial<Frame>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Frame.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Frame>): Frame {
    return decodeMessage(buf, Frame.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Frame>): Generator<FrameMessageIdFieldEvent | FrameMessageSeqFieldEvent | FrameMessageSentAtFieldEvent | FrameMessageBodyFieldEvent | FrameMessageContentTypeFieldEvent | FrameMessageReplyToFieldEvent | FrameMessageGroupFieldEvent | FrameAckIdFieldEvent | FrameAckStatusFieldEvent | FrameAckRetryAfterMsFieldEvent> {
    return streamMessage(buf, Frame.codec(), opts)
  }
}

export interface ChatMessage {
  id: Uint8Array<ArrayBuffer>
  seq: bigint
  sentAt: bigint
  body: string
  contentType?: string
  replyTo?: Uint8Array<ArrayBuffer>
  group?: Uint8Array<ArrayBuffer>
}

export namespace ChatMessage {
  let _codec: Codec<ChatMessage>

  export const codec = (): Codec<ChatMessage> => {
    if (_codec == null) {
      _codec = message<ChatMessage>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.id)
        }

        if ((obj.seq != null && obj.seq !== 0n)) {
          w.uint32(16)
          w.uint64(obj.seq)
        }

        if ((obj.sentAt != null && obj.sentAt !== 0n)) {
          w.uint32(24)
          w.uint64(obj.sentAt)
        }

        if ((obj.body != null && obj.body !== '')) {
          w.uint32(34)
          w.string(obj.body)
        }

        if (obj.contentType != null) {
          w.uint32(42)
          w.string(obj.contentType)
        }

        if (obj.replyTo != null) {
          w.uint32(50)
          w.bytes(obj.replyTo)
        }

        if (obj.group != null) {
          w.uint32(58)
          w.bytes(obj.group)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: uint8ArrayAlloc(0),
          seq: 0n,
          sentAt: 0n,
          body: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.bytes()
              break
            }
            case 2: {
              obj.seq = reader.uint64()
              break
            }
            case 3: {
              obj.sentAt = reader.uint64()
              break
            }
            case 4: {
              obj.body = reader.string()
              break
            }
            case 5: {
              obj.contentType = reader.string()
              break
            }
            case 6: {
              obj.replyTo = reader.bytes()
              break
            }
            case 7: {
              obj.group = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.id`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.sentAt`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.body`,
                value: reader.string()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.contentType`,
                value: reader.string()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.replyTo`,
                value: reader.bytes()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.group`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface ChatMessageIdFieldEvent {
    field: '$.id'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ChatMessageSeqFieldEvent {
    field: '$.seq'
    value: bigint
  }

  export interface ChatMessageSentAtFieldEvent {
    field: '$.sentAt'
    value: bigint
  }

  export interface ChatMessageBodyFieldEvent {
    field: '$.body'
    value: string
  }

  export interface ChatMessageContentTypeFieldEvent {
    field: '$.contentType'
    value: string
  }

  export interface ChatMessageReplyToFieldEvent {
    field: '$.replyTo'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ChatMessageGroupFieldEvent {
    field: '$.group'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<ChatMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ChatMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ChatMessage>): ChatMessage {
    return decodeMessage(buf, ChatMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ChatMessage>): Generator<ChatMessageIdFieldEvent | ChatMessageSeqFieldEvent | ChatMessageSentAtFieldEvent | ChatMessageBodyFieldEvent | ChatMessageContentTypeFieldEvent | ChatMessageReplyToFieldEvent | ChatMessageGroupFieldEvent> {
    return streamMessage(buf, ChatMessage.codec(), opts)
  }
}

export interface Ack {
  id: Uint8Array<ArrayBuffer>
  status: Ack.Status
  retryAfterMs?: number
}

export namespace Ack {
  export enum Status {
    OK = 'OK',
    DUPLICATE = 'DUPLICATE',
    TOO_LARGE = 'TOO_LARGE',
    INVALID = 'INVALID',
    BLOCKED = 'BLOCKED',
    RATE_LIMITED = 'RATE_LIMITED'
  }

  enum __StatusValues {
    OK = 0,
    DUPLICATE = 1,
    TOO_LARGE = 2,
    INVALID = 3,
    BLOCKED = 4,
    RATE_LIMITED = 5
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<Ack>

  export const codec = (): Codec<Ack> => {
    if (_codec == null) {
      _codec = message<Ack>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.id)
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(16)
          Ack.Status.codec().encode(obj.status, w)
        }

        if (obj.retryAfterMs != null) {
          w.uint32(24)
          w.uint32(obj.retryAfterMs)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: uint8ArrayAlloc(0),
          status: Status.OK
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.bytes()
              break
            }
            case 2: {
              obj.status = Ack.Status.codec().decode(reader)
              break
            }
            case 3: {
              obj.retryAfterMs = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.id`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.status`,
                value: Ack.Status.codec().decode(reader)
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.retryAfterMs`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface AckIdFieldEvent {
    field: '$.id'
    value: Uint8Array<ArrayBuffer>
  }

  export interface AckStatusFieldEvent {
    field: '$.status'
    value: Ack.Status
  }

  export interface AckRetryAfterMsFieldEvent {
    field: '$.retryAfterMs'
    value: number
  }

  export function encode (obj: Partial<Ack>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Ack.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Ack>): Ack {
    return decodeMessage(buf, Ack.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Ack>): Generator<AckIdFieldEvent | AckStatusFieldEvent | AckRetryAfterMsFieldEvent> {
    return streamMessage(buf, Ack.codec(), opts)
  }
}
