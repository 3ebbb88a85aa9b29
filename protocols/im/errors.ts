/**
 * Typed errors of the /im/1.0.0 protocol. Callers check `err.name`.
 */

/** The peer broke the wire contract (bad frame, ack out of order, oversized prefix). */
export class ProtocolViolationError extends Error {
  static override name = 'ProtocolViolationError'
  override name = 'ProtocolViolationError'
}

/** The peer did not acknowledge a message within the ack timeout. */
export class AckTimeoutError extends Error {
  static override name = 'AckTimeoutError'
  override name = 'AckTimeoutError'
}

/** The stream carrying a message ended before the message was acknowledged. */
export class StreamEndedError extends Error {
  static override name = 'StreamEndedError'
  override name = 'StreamEndedError'
}

/** The receiver could not take the message right now (its handler failed). */
export class ReceiverError extends Error {
  static override name = 'ReceiverError'
  override name = 'ReceiverError'
}
