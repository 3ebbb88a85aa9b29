/**
 * Errors the node's API raises. Each says what was wrong and what to do; callers
 * check `err.name`.
 */

/** The recipient is not a valid peer ID. */
export class InvalidPeerIdError extends Error {
  static override name = 'InvalidPeerIdError'
  override name = 'InvalidPeerIdError'
}

/** The message body is empty. */
export class EmptyMessageError extends Error {
  static override name = 'EmptyMessageError'
  override name = 'EmptyMessageError'
}

/** The body or content type is over the protocol's limits. */
export class MessageTooLargeError extends Error {
  static override name = 'MessageTooLargeError'
  override name = 'MessageTooLargeError'
}

/** Some other field of the message is malformed (e.g. reply_to). */
export class InvalidMessageError extends Error {
  static override name = 'InvalidMessageError'
  override name = 'InvalidMessageError'
}

/** The recipient refused the message for good (TOO_LARGE, INVALID or BLOCKED). */
export class MessageRejectedError extends Error {
  static override name = 'MessageRejectedError'
  override name = 'MessageRejectedError'
  constructor (message: string, readonly status: string) {
    super(message)
  }
}

/** No way to the peer was found: no connection, no known address, no DHT answer. */
export class PeerUnreachableError extends Error {
  static override name = 'PeerUnreachableError'
  override name = 'PeerUnreachableError'
}

/** The message was not acknowledged before the send's deadline or signal. */
export class DeliveryTimeoutError extends Error {
  static override name = 'DeliveryTimeoutError'
  override name = 'DeliveryTimeoutError'
}

/** The node is stopped (or stopping) and cannot send. */
export class NodeStoppedError extends Error {
  static override name = 'NodeStoppedError'
  override name = 'NodeStoppedError'
}

/** An invite that cannot be read. */
export class InvalidInviteError extends Error {
  static override name = 'InvalidInviteError'
  override name = 'InvalidInviteError'
}

/** No contact has this name (the API's `DELETE /v1/contacts/:name` answers it with 404). */
export class UnknownContactError extends Error {
  static override name = 'UnknownContactError'
  override name = 'UnknownContactError'
}

/** A contact name that cannot be used. */
export class InvalidContactNameError extends Error {
  static override name = 'InvalidContactNameError'
  override name = 'InvalidContactNameError'
}

/** A contact with that name exists for another peer (pass `replace` to repoint it). */
export class ContactExistsError extends Error {
  static override name = 'ContactExistsError'
  override name = 'ContactExistsError'
}

/** The message store is at its size limit: nothing more is stored until room is made. */
export class StorageFullError extends Error {
  static override name = 'StorageFullError'
  override name = 'StorageFullError'
}

/** The sender cancelled the message before it was delivered (`send` rejects with this). */
export class MessageCancelledError extends Error {
  static override name = 'MessageCancelledError'
  override name = 'MessageCancelledError'
}

/** The message was not delivered within the node's `messageExpiry` and failed (`send` rejects with this). */
export class MessageExpiredError extends Error {
  static override name = 'MessageExpiredError'
  override name = 'MessageExpiredError'
}

/** No message has this id (the API answers it with 404). */
export class UnknownMessageError extends Error {
  static override name = 'UnknownMessageError'
  override name = 'UnknownMessageError'
}

/** The message cannot be cancelled: it is delivered, failed, received, or on the wire now (the API answers it with 409). */
export class MessageNotCancellableError extends Error {
  static override name = 'MessageNotCancellableError'
  override name = 'MessageNotCancellableError'
  constructor (message: string, readonly status: string) {
    super(message)
  }
}

/** No group with that ID (or name) on this node. */
export class UnknownGroupError extends Error {
  static override name = 'UnknownGroupError'
  override name = 'UnknownGroupError'
}

/** The membership change is not allowed: this node is not an admin (or not a member), the target is not a member, the group is full. */
export class GroupChangeRefusedError extends Error {
  static override name = 'GroupChangeRefusedError'
  override name = 'GroupChangeRefusedError'
}
