import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface GroupPayload {
  ops: SignedOp[]
  message?: SignedGroupMessage
}

export namespace GroupPayload {
  let _codec: Codec<GroupPayload>

  export const codec = (): Codec<GroupPayload> => {
    if (_codec == null) {
      _codec = message<GroupPayload>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.ops != null && obj.ops.length > 0) {
          for (const value of obj.ops) {
            w.uint32(10)
            SignedOp.codec().encode(value, w)
          }
        }

        if (obj.message != null) {
          w.uint32(18)
          SignedGroupMessage.codec().encode(obj.message, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          ops: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.ops != null && obj.ops.length === opts.limits.ops) {
                throw new MaxLengthError('Decode error - repeated field "ops" had too many elements')
              }

              obj.ops.push(SignedOp.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.ops$
              }))
              break
            }
            case 2: {
              obj.message = SignedGroupMessage.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.message
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
        const obj = {
          ops: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.ops != null && obj.ops === opts.limits.ops) {
                throw new MaxLengthError('Streaming decode error - repeated field "ops" had too many elements')
              }

              for (const evt of SignedOp.codec().stream(reader, reader.uint32(), `${prefix}.ops[]`, {
                limits: opts.limits?.ops$
              })) {
                yield {
                  ...evt,
                  index: obj.ops
                }
              }

              obj.ops++

              break
            }
            case 2: {
              yield * SignedGroupMessage.codec().stream(reader, reader.uint32(), `${prefix}.message`, {
                limits: opts.limits?.message
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

  export interface GroupPayloadOpsOpFieldEvent {
    field: '$.ops[].op'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface GroupPayloadOpsSignatureFieldEvent {
    field: '$.ops[].signature'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface GroupPayloadMessageMessageFieldEvent {
    field: '$.message.message'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupPayloadMessageSignatureFieldEvent {
    field: '$.message.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<GroupPayload>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, GroupPayload.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GroupPayload>): GroupPayload {
    return decodeMessage(buf, GroupPayload.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GroupPayload>): Generator<GroupPayloadOpsOpFieldEvent | GroupPayloadOpsSignatureFieldEvent | GroupPayloadMessageMessageFieldEvent | GroupPayloadMessageSignatureFieldEvent> {
    return streamMessage(buf, GroupPayload.codec(), opts)
  }
}

export interface SignedOp {
  op: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedOp {
  let _codec: Codec<SignedOp>

  export const codec = (): Codec<SignedOp> => {
    if (_codec == null) {
      _codec = message<SignedOp>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.op != null && obj.op.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.op)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          op: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.op = reader.bytes()
              break
            }
            case 2: {
              obj.signature = reader.bytes()
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
                field: `${prefix}.op`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.signature`,
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

  export interface SignedOpOpFieldEvent {
    field: '$.op'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedOpSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedOp>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedOp.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedOp>): SignedOp {
    return decodeMessage(buf, SignedOp.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedOp>): Generator<SignedOpOpFieldEvent | SignedOpSignatureFieldEvent> {
    return streamMessage(buf, SignedOp.codec(), opts)
  }
}

export interface Op {
  group: Uint8Array<ArrayBuffer>
  author: Uint8Array<ArrayBuffer>
  lamport: bigint
  parents: Uint8Array<ArrayBuffer>[]
  createdAt: bigint
  create?: Create
  add?: Uint8Array<ArrayBuffer>
  remove?: Uint8Array<ArrayBuffer>
  leave?: boolean
  rename?: string
  addAdmin?: Uint8Array<ArrayBuffer>
  removeAdmin?: Uint8Array<ArrayBuffer>
}

export namespace Op {
  let _codec: Codec<Op>

  export const codec = (): Codec<Op> => {
    if (_codec == null) {
      _codec = message<Op>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.group != null && obj.group.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.group)
        }

        if ((obj.author != null && obj.author.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.author)
        }

        if ((obj.lamport != null && obj.lamport !== 0n)) {
          w.uint32(24)
          w.uint64(obj.lamport)
        }

        if (obj.parents != null && obj.parents.length > 0) {
          for (const value of obj.parents) {
            w.uint32(34)
            w.bytes(value)
          }
        }

        if ((obj.createdAt != null && obj.createdAt !== 0n)) {
          w.uint32(40)
          w.uint64(obj.createdAt)
        }

        if (obj.create != null) {
          w.uint32(50)
          Create.codec().encode(obj.create, w)
        }

        if (obj.add != null) {
          w.uint32(58)
          w.bytes(obj.add)
        }

        if (obj.remove != null) {
          w.uint32(66)
          w.bytes(obj.remove)
        }

        if (obj.leave != null) {
          w.uint32(72)
          w.bool(obj.leave)
        }

        if (obj.rename != null) {
          w.uint32(82)
          w.string(obj.rename)
        }

        if (obj.addAdmin != null) {
          w.uint32(90)
          w.bytes(obj.addAdmin)
        }

        if (obj.removeAdmin != null) {
          w.uint32(98)
          w.bytes(obj.removeAdmin)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          group: uint8ArrayAlloc(0),
          author: uint8ArrayAlloc(0),
          lamport: 0n,
          parents: [],
          createdAt: 0n
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.group = reader.bytes()
              break
            }
            case 2: {
              obj.author = reader.bytes()
              break
            }
            case 3: {
              obj.lamport = reader.uint64()
              break
            }
            case 4: {
              if (opts.limits?.parents != null && obj.parents.length === opts.limits.parents) {
                throw new MaxLengthError('Decode error - repeated field "parents" had too many elements')
              }

              obj.parents.push(reader.bytes())
              break
            }
            case 5: {
              obj.createdAt = reader.uint64()
              break
            }
            case 6: {
              obj.create = Create.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.create
              })
              break
            }
            case 7: {
              obj.add = reader.bytes()
              break
            }
            case 8: {
              obj.remove = reader.bytes()
              break
            }
            case 9: {
              obj.leave = reader.bool()
              break
            }
            case 10: {
              obj.rename = reader.string()
              break
            }
            case 11: {
              obj.addAdmin = reader.bytes()
              break
            }
            case 12: {
              obj.removeAdmin = reader.bytes()
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
        const obj = {
          parents: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.group`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.author`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.lamport`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              if (opts.limits?.parents != null && obj.parents === opts.limits.parents) {
                throw new MaxLengthError('Streaming decode error - repeated field "parents" had too many elements')
              }

              yield {
                field: `${prefix}.parents[]`,
                index: obj.parents,
                value: reader.bytes()
              }

              obj.parents++

              break
            }
            case 5: {
              yield {
                field: `${prefix}.createdAt`,
                value: reader.uint64()
              }
              break
            }
            case 6: {
              yield * Create.codec().stream(reader, reader.uint32(), `${prefix}.create`, {
                limits: opts.limits?.create
              })

              break
            }
            case 7: {
              yield {
                field: `${prefix}.add`,
                value: reader.bytes()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.remove`,
                value: reader.bytes()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.leave`,
                value: reader.bool()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.rename`,
                value: reader.string()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.addAdmin`,
                value: reader.bytes()
              }
              break
            }
            case 12: {
              yield {
                field: `${prefix}.removeAdmin`,
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

  export interface OpGroupFieldEvent {
    field: '$.group'
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpAuthorFieldEvent {
    field: '$.author'
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpLamportFieldEvent {
    field: '$.lamport'
    value: bigint
  }

  export interface OpParentsFieldEvent {
    field: '$.parents[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpCreatedAtFieldEvent {
    field: '$.createdAt'
    value: bigint
  }

  export interface OpCreateNameFieldEvent {
    field: '$.create.name'
    value: string
  }

  export interface OpCreateMembersFieldEvent {
    field: '$.create.members[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpCreateNonceFieldEvent {
    field: '$.create.nonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpAddFieldEvent {
    field: '$.add'
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpRemoveFieldEvent {
    field: '$.remove'
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpLeaveFieldEvent {
    field: '$.leave'
    value: boolean
  }

  export interface OpRenameFieldEvent {
    field: '$.rename'
    value: string
  }

  export interface OpAddAdminFieldEvent {
    field: '$.addAdmin'
    value: Uint8Array<ArrayBuffer>
  }

  export interface OpRemoveAdminFieldEvent {
    field: '$.removeAdmin'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Op>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Op.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Op>): Op {
    return decodeMessage(buf, Op.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Op>): Generator<OpGroupFieldEvent | OpAuthorFieldEvent | OpLamportFieldEvent | OpParentsFieldEvent | OpCreatedAtFieldEvent | OpCreateNameFieldEvent | OpCreateMembersFieldEvent | OpCreateNonceFieldEvent | OpAddFieldEvent | OpRemoveFieldEvent | OpLeaveFieldEvent | OpRenameFieldEvent | OpAddAdminFieldEvent | OpRemoveAdminFieldEvent> {
    return streamMessage(buf, Op.codec(), opts)
  }
}

export interface Create {
  name: string
  members: Uint8Array<ArrayBuffer>[]
  nonce: Uint8Array<ArrayBuffer>
}

export namespace Create {
  let _codec: Codec<Create>

  export const codec = (): Codec<Create> => {
    if (_codec == null) {
      _codec = message<Create>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.name != null && obj.name !== '')) {
          w.uint32(10)
          w.string(obj.name)
        }

        if (obj.members != null && obj.members.length > 0) {
          for (const value of obj.members) {
            w.uint32(18)
            w.bytes(value)
          }
        }

        if ((obj.nonce != null && obj.nonce.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.nonce)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          name: '',
          members: [],
          nonce: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.name = reader.string()
              break
            }
            case 2: {
              if (opts.limits?.members != null && obj.members.length === opts.limits.members) {
                throw new MaxLengthError('Decode error - repeated field "members" had too many elements')
              }

              obj.members.push(reader.bytes())
              break
            }
            case 3: {
              obj.nonce = reader.bytes()
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
        const obj = {
          members: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.name`,
                value: reader.string()
              }
              break
            }
            case 2: {
              if (opts.limits?.members != null && obj.members === opts.limits.members) {
                throw new MaxLengthError('Streaming decode error - repeated field "members" had too many elements')
              }

              yield {
                field: `${prefix}.members[]`,
                index: obj.members,
                value: reader.bytes()
              }

              obj.members++

              break
            }
            case 3: {
              yield {
                field: `${prefix}.nonce`,
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

  export interface CreateNameFieldEvent {
    field: '$.name'
    value: string
  }

  export interface CreateMembersFieldEvent {
    field: '$.members[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface CreateNonceFieldEvent {
    field: '$.nonce'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Create>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Create.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Create>): Create {
    return decodeMessage(buf, Create.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Create>): Generator<CreateNameFieldEvent | CreateMembersFieldEvent | CreateNonceFieldEvent> {
    return streamMessage(buf, Create.codec(), opts)
  }
}

export interface SignedGroupMessage {
  message: Uint8Array<ArrayBuffer>
  signature: Uint8Array<ArrayBuffer>
}

export namespace SignedGroupMessage {
  let _codec: Codec<SignedGroupMessage>

  export const codec = (): Codec<SignedGroupMessage> => {
    if (_codec == null) {
      _codec = message<SignedGroupMessage>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.message != null && obj.message.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.message)
        }

        if ((obj.signature != null && obj.signature.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          message: uint8ArrayAlloc(0),
          signature: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.message = reader.bytes()
              break
            }
            case 2: {
              obj.signature = reader.bytes()
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
                field: `${prefix}.message`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.signature`,
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

  export interface SignedGroupMessageMessageFieldEvent {
    field: '$.message'
    value: Uint8Array<ArrayBuffer>
  }

  export interface SignedGroupMessageSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<SignedGroupMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, SignedGroupMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedGroupMessage>): SignedGroupMessage {
    return decodeMessage(buf, SignedGroupMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<SignedGroupMessage>): Generator<SignedGroupMessageMessageFieldEvent | SignedGroupMessageSignatureFieldEvent> {
    return streamMessage(buf, SignedGroupMessage.codec(), opts)
  }
}

export interface GroupMessage {
  group: Uint8Array<ArrayBuffer>
  sender: Uint8Array<ArrayBuffer>
  id: Uint8Array<ArrayBuffer>
  seq: bigint
  lamport: bigint
  heads: Uint8Array<ArrayBuffer>[]
  sentAt: bigint
  body: string
  contentType?: string
}

export namespace GroupMessage {
  let _codec: Codec<GroupMessage>

  export const codec = (): Codec<GroupMessage> => {
    if (_codec == null) {
      _codec = message<GroupMessage>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.group != null && obj.group.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.group)
        }

        if ((obj.sender != null && obj.sender.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.sender)
        }

        if ((obj.id != null && obj.id.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.id)
        }

        if ((obj.seq != null && obj.seq !== 0n)) {
          w.uint32(32)
          w.uint64(obj.seq)
        }

        if ((obj.lamport != null && obj.lamport !== 0n)) {
          w.uint32(40)
          w.uint64(obj.lamport)
        }

        if (obj.heads != null && obj.heads.length > 0) {
          for (const value of obj.heads) {
            w.uint32(50)
            w.bytes(value)
          }
        }

        if ((obj.sentAt != null && obj.sentAt !== 0n)) {
          w.uint32(56)
          w.uint64(obj.sentAt)
        }

        if ((obj.body != null && obj.body !== '')) {
          w.uint32(66)
          w.string(obj.body)
        }

        if (obj.contentType != null) {
          w.uint32(74)
          w.string(obj.contentType)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          group: uint8ArrayAlloc(0),
          sender: uint8ArrayAlloc(0),
          id: uint8ArrayAlloc(0),
          seq: 0n,
          lamport: 0n,
          heads: [],
          sentAt: 0n,
          body: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.group = reader.bytes()
              break
            }
            case 2: {
              obj.sender = reader.bytes()
              break
            }
            case 3: {
              obj.id = reader.bytes()
              break
            }
            case 4: {
              obj.seq = reader.uint64()
              break
            }
            case 5: {
              obj.lamport = reader.uint64()
              break
            }
            case 6: {
              if (opts.limits?.heads != null && obj.heads.length === opts.limits.heads) {
                throw new MaxLengthError('Decode error - repeated field "heads" had too many elements')
              }

              obj.heads.push(reader.bytes())
              break
            }
            case 7: {
              obj.sentAt = reader.uint64()
              break
            }
            case 8: {
              obj.body = reader.string()
              break
            }
            case 9: {
              obj.contentType = reader.string()
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
        const obj = {
          heads: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.group`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.sender`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.id`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.lamport`,
                value: reader.uint64()
              }
              break
            }
            case 6: {
              if (opts.limits?.heads != null && obj.heads === opts.limits.heads) {
                throw new MaxLengthError('Streaming decode error - repeated field "heads" had too many elements')
              }

              yield {
                field: `${prefix}.heads[]`,
                index: obj.heads,
                value: reader.bytes()
              }

              obj.heads++

              break
            }
            case 7: {
              yield {
                field: `${prefix}.sentAt`,
                value: reader.uint64()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.body`,
                value: reader.string()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.contentType`,
                value: reader.string()
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

  export interface GroupMessageGroupFieldEvent {
    field: '$.group'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupMessageSenderFieldEvent {
    field: '$.sender'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupMessageIdFieldEvent {
    field: '$.id'
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupMessageSeqFieldEvent {
    field: '$.seq'
    value: bigint
  }

  export interface GroupMessageLamportFieldEvent {
    field: '$.lamport'
    value: bigint
  }

  export interface GroupMessageHeadsFieldEvent {
    field: '$.heads[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface GroupMessageSentAtFieldEvent {
    field: '$.sentAt'
    value: bigint
  }

  export interface GroupMessageBodyFieldEvent {
    field: '$.body'
    value: string
  }

  export interface GroupMessageContentTypeFieldEvent {
    field: '$.contentType'
    value: string
  }

  export function encode (obj: Partial<GroupMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, GroupMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GroupMessage>): GroupMessage {
    return decodeMessage(buf, GroupMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GroupMessage>): Generator<GroupMessageGroupFieldEvent | GroupMessageSenderFieldEvent | GroupMessageIdFieldEvent | GroupMessageSeqFieldEvent | GroupMessageLamportFieldEvent | GroupMessageHeadsFieldEvent | GroupMessageSentAtFieldEvent | GroupMessageBodyFieldEvent | GroupMessageContentTypeFieldEvent> {
    return streamMessage(buf, GroupMessage.codec(), opts)
  }
}
