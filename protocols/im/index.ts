/**
 * The `/im/1.0.0` chat protocol as a libp2p service. It knows frames, limits and
 * the exchange of the contract in README.md beside this file; it does not know
 * about databases, contacts or retries. It is handed a `store` callback and an
 * `admit` check, and returns acks.
 */
import { DefaultImService } from './im.js'
import type { Path } from './path.js'
import type { Ack } from './pb/im.js'
import type { AbortOptions, ComponentLogger, Connection, PeerId } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'

export { PROTOCOL, GROUP_PROTOCOL, MAX_GROUP_BYTES, MAX_BODY_BYTES, MAX_CONTENT_TYPE_BYTES, MAX_FRAME_BYTES, MAX_UNACKED, ID_BYTES, DEFAULT_CONTENT_TYPE } from './constants.js'
export { AckTimeoutError, ProtocolViolationError, ReceiverError, StreamEndedError } from './errors.js'
export { connectionPath } from './path.js'
export type { Path } from './path.js'
export { Ack, ChatMessage, Frame } from './pb/im.js'
export { inboundMessage } from './inbound.js'
export { isMediaType, refusalFor, utf8Length } from './validate.js'

/** A message read off an inbound stream, already checked against the limits. */
export interface InboundMessage {
  id: Uint8Array
  /** The authenticated remote peer of the connection: the only source of the sender. */
  from: PeerId
  seq: number
  sentAt: number
  body: string
  contentType: string
  replyTo?: Uint8Array
  /** An encoded group payload (only on /im/1.1.0, or from a mailbox; the body is then empty). */
  group?: Uint8Array
  /** How it came: on an /im stream over a direct or relayed connection, or sealed through the recipient's mailbox (protocols/mailbox). */
  path: Path | 'mailbox'
  /** The connection it came on; none for a message fetched from a mailbox. */
  connection?: Connection
}

/**
 * What `store` did with a message: kept it for the first time, had it
 * already, or would not keep it now (a quota is full: answered RATE_LIMITED,
 * the sender keeps it and tries again after `retryAfterMs`).
 */
export type StoreResult = 'stored' | 'duplicate' | RateLimited

/** The receiver will not take the message now; the sender retries after `retryAfterMs`. */
export interface RateLimited {
  status: 'rate-limited'
  retryAfterMs?: number
}

/** Whether a peer may send now. */
export type Admission =
  | { status: 'accept' }
  | { status: 'block' }
  | { status: 'rate-limit', retryAfterMs?: number }

/** A message answered TOO_LARGE, INVALID or BLOCKED (it still fills its seq, spec 6). */
export interface Refusal {
  from: PeerId
  id: Uint8Array
  seq: bigint
  status: Ack.Status
}

export interface OutboundMessage {
  id: Uint8Array<ArrayBuffer>
  seq: number
  sentAt: number
  body: string
  contentType?: string
  replyTo?: Uint8Array<ArrayBuffer>
  /** An encoded group payload: sent only on a stream negotiated as /im/1.1.0; to a peer that speaks only 1.0.0 it is answered INVALID without being sent. */
  group?: Uint8Array<ArrayBuffer>
}

/** The recipient's answer to one message, with the path it travelled. */
export interface Acknowledgement {
  id: Uint8Array
  status: Ack.Status
  retryAfterMs?: number
  path: Path
  connection: Connection
}

export interface ImInit {
  /**
   * Stores a message durably, or reports that this (sender, id) was stored
   * before. The ack is written only after it resolves; if it throws, no ack is
   * sent and the stream is aborted so that the sender retries. A result
   * returned at once (not a promise) is acknowledged within the read of its
   * frame.
   */
  store(message: InboundMessage, options: AbortOptions): StoreResult | Promise<StoreResult>

  /**
   * May this peer send now? Called for every message before it is checked.
   *
   * @default every peer is accepted
   */
  admit?(peer: PeerId, options: AbortOptions): Admission | Promise<Admission>

  /** Told of every message answered TOO_LARGE, INVALID or BLOCKED. */
  onRefused?(refusal: Refusal): void

  /**
   * Messages kept unacknowledged on one outbound stream.
   *
   * @default 64
   */
  maxUnacked?: number

  /**
   * How long the receiver has to ack a message, in ms; also bounds the inbound
   * store callback.
   *
   * @default 10000
   */
  ackTimeout?: number

  /**
   * Streams with no frame for this long are closed, in ms.
   *
   * @default 30000
   */
  idleTimeout?: number

  /**
   * @default 8
   */
  maxInboundStreams?: number

  /**
   * @default 8
   */
  maxOutboundStreams?: number

  /**
   * Serve and dial the protocol on limited (relayed) connections. The contract
   * requires it; turning it off is for experiments only.
   *
   * @default true
   */
  runOnLimitedConnection?: boolean
}

export interface ImComponents {
  registrar: Registrar
  logger: ComponentLogger
}

export interface ImService {
  readonly protocol: string

  /**
   * Sends one message on the connection's /im stream (opened on first use and
   * reused) and resolves with the recipient's ack. Rejects when the stream ends
   * first; the message was then not delivered and may be retried with the same
   * id and seq.
   */
  send(connection: Connection, message: OutboundMessage, options?: AbortOptions): Promise<Acknowledgement>

  /**
   * Sends one message within this call, as `send` does, when the connection
   * has an open /im stream that can take it now: its frame is handed to the
   * stream before this returns. `undefined` when it has none (or one that
   * would have to wait): nothing was sent, and `send` is the way.
   */
  sendAtOnce(connection: Connection, message: OutboundMessage, options?: AbortOptions): Promise<Acknowledgement> | undefined
}

export function im (init: ImInit): (components: ImComponents) => ImService {
  return (components) => new DefaultImService(components, init)
}
