/** The /im version whose ChatMessage may carry a `group` payload (spec section 2). */
export const GROUP_IM_PROTOCOL = '/im/1.1.0'

/** Members of a group, its creator included (spec section 6). */
export const MAX_MEMBERS = 100
/** Operations in a group's membership log. */
export const MAX_OPS = 256
/** One encoded Op. A create naming 99 members (38-byte peer IDs) takes about 4,100 bytes. */
export const MAX_OP_BYTES = 4608
/** Parents of one op, heads of one message. */
export const MAX_PARENTS = 16
/** A group's name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 128
/** A whole encoded GroupPayload: what fits in one /im frame beside the ChatMessage's own fields. */
export const MAX_PAYLOAD_BYTES = 61_440
/** The encoded ops one payload carries at most: the full log always fits, with room for nothing else. */
export const MAX_LOG_BYTES = 57_344

export const OP_DOMAIN = 'parley-group/1 op'
export const MESSAGE_DOMAIN = 'parley-group/1 message'

/** Bytes of an op hash (SHA-256) and so of a group ID. */
export const HASH_BYTES = 32
export const NONCE_BYTES = 16
export const MESSAGE_ID_BYTES = 16
