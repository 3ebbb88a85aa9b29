/** The protocol id negotiated with multistream-select (spec section 1). */
export const PROTOCOL = '/im/1.0.0'

/** The same exchange, where a ChatMessage may also carry a group payload (`group`, protocols/group/README.md). */
export const GROUP_PROTOCOL = '/im/1.1.0'

/** Largest `group` field: what fits in a frame beside the ChatMessage's other fields. */
export const MAX_GROUP_BYTES = 61_440

/** Largest protobuf `Frame` a peer may send, length prefix excluded (section 2). */
export const MAX_FRAME_BYTES = 65_536

/** Largest `body`, in UTF-8 bytes (section 6). */
export const MAX_BODY_BYTES = 32_768

/** Largest `content_type`, in UTF-8 bytes (section 6). */
export const MAX_CONTENT_TYPE_BYTES = 128

/** Length of a message id and of `reply_to` (section 3). */
export const ID_BYTES = 16

/**
 * The protocol's send window: messages a sender may keep unacknowledged on
 * one stream (section 4.1). A receiver reads no further than this many
 * unanswered messages, so a sender that keeps more in flight only waits; a
 * sender's own window (how many messages it puts on the wire at once) should
 * be at most this.
 */
export const MAX_UNACKED = 64

/** A receiver acknowledges within this many ms of reading a message (section 4.4). */
export const ACK_TIMEOUT_MS = 10_000

/** A stream with no frame for this long may be closed by either side (section 4.5). */
export const IDLE_TIMEOUT_MS = 30_000

/** Inbound /im streams one connection may hold open at once. */
export const MAX_INBOUND_STREAMS = 8

/** Outbound /im streams one connection may hold open at once. */
export const MAX_OUTBOUND_STREAMS = 8

/** What an absent `content_type` means. */
export const DEFAULT_CONTENT_TYPE = 'text/plain'
