/** The public types of groups (see node/types.ts for the rest of the library's). */
import type { MessagePath, OutboundStatus } from '../types.js'

/** A group as this node's copy of its membership log makes it. */
export interface GroupInfo {
  /** Hex SHA-256 of the group's create op (64 hex digits). */
  id: string
  name: string
  /** Peer IDs, sorted; this node's own among them while it is a member. */
  members: string[]
  admins: string[]
  creator: string
  /** Whether this node is still a member (false once it left or was removed: the group stays readable). */
  member: boolean
}

/** A group in the inbox: its last message and how many of others' arrived since it was last marked read. */
export interface GroupConversation {
  groupId: string
  name: string
  /** Whether this node is still a member. */
  member: boolean
  last?: {
    id: string
    from: string
    /** The body, cut to 100 characters (the cut ends with `…`). */
    preview: string
    contentType: string
    /** This node's clock when the message was written here: sent or received. */
    at: number
  }
  /** Others' messages that arrived after the read mark. */
  unread: number
}

/** A group message as members receive it (`group:message`) and `groupHistory` lists it. */
export interface GroupMessage {
  groupId: string
  /** Hex of the sender's 16-byte id for it. */
  id: string
  /** The sender's peer ID (the group message's signer). */
  from: string
  /** The sender's own seq in the group. */
  seq: number
  /** The group's Lamport time: the display order across senders (then sender, then seq). */
  lamport: number
  body: string
  contentType: string
  /** The sender's clock, ms since the Unix epoch. */
  sentAt: number
  /** This node's clock when it stored it. */
  receivedAt: number
  /** How it came; absent for this node's own. */
  path?: MessagePath
}

/** A membership change this node learnt or made (`group:change`): the group as it is now. */
export interface GroupChange extends GroupInfo {
  /** The kinds of the ops applied, in the log's order: create, add, remove, leave, rename, add-admin, remove-admin. */
  ops: string[]
}

/** Where one member's copy of a group message stands when `sendGroup` resolves. */
export interface GroupRecipientStatus {
  peer: string
  /** The carrier: the /im message taking the group message to this member (its `message:status` id). */
  id: string
  /** `queued`: not reachable now (the outbox keeps trying, and leaves it in the member's mailbox). */
  status: OutboundStatus
  path?: MessagePath
  reason?: string
}

/** `group:status`: one member's copy of a group message this node sent changed status. */
export interface GroupStatusChange {
  groupId: string
  /** The group message's id (as in `groupHistory`). */
  id: string
  peer: string
  /** The carrier taking it to that member (its `message:status` id). */
  carrier: string
  status: OutboundStatus
  path?: MessagePath
  reason?: string
}

export interface GroupSendResult {
  groupId: string
  id: string
  seq: number
  lamport: number
  recipients: GroupRecipientStatus[]
}
