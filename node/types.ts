import type { FileInfo, FileProgress } from './files/transfers.js'
/**
 * The library's public types: what a ParleyNode takes and gives. Kept apart
 * from the node itself so that the daemon's API contract and the CLI can use
 * them without loading libp2p.
 */
import type { GroupChange, GroupMessage, GroupStatusChange } from './group/types.js'
import type { MailboxStatus } from './mailbox/receiver.js'
import type { PathChange } from './network/paths.js'
import type { RelayReservationStatus } from './network/reservations.js'
import type { Path } from '../protocols/im/index.js'
import type { AbortOptions } from '@libp2p/interface'

/**
 * Where an outbound message stands: written to the outbox (`queued`), on the
 * wire (`sending`), sealed and left in the recipient's mailbox on a relay while
 * the recipient is offline (`stored`), acknowledged by the recipient
 * (`delivered`), or refused by it for good (`failed`).
 */
export type OutboundStatus = 'queued' | 'sending' | 'stored' | 'delivered' | 'failed'

/**
 * How a message travelled: over a direct connection, over a relay circuit, or
 * through a mailbox (sealed, stored on a relay, fetched later).
 */
export type MessagePath = Path | 'mailbox'

/** A change in an outbound message's state. */
export interface StatusChange {
  id: string
  peer: string
  status: OutboundStatus
  seq: number
  path?: MessagePath
  /** Why it failed, or why the last attempt did not get through. */
  reason?: string
  attempts?: number
}

/** A message as the user receives it. */
export interface ReceivedMessage {
  /** UUID of the message, as the sender chose it. */
  id: string
  /** Peer ID of the sender: always the authenticated peer of the connection. */
  from: string
  seq: number
  body: string
  contentType: string
  /** Sender's clock, ms since the Unix epoch. */
  sentAt: number
  /** This node's clock when it stored the message. */
  receivedAt: number
  path: MessagePath
  replyTo?: string
  /** From a stranger: a message request, shown apart until the user accepts, declines or blocks it. */
  request?: true
}

/** A message of a conversation, in either direction, as `history` lists it. */
export interface HistoryEntry {
  id: string
  from: string
  to: string
  direction: 'in' | 'out'
  seq: number
  body: string
  contentType: string
  sentAt: number
  receivedAt?: number
  /** out: queued | sending | stored | delivered | failed; in: received */
  status: OutboundStatus | 'received'
  path?: MessagePath
  reason?: string
  replyTo?: string
  /** A stranger's message waiting for the user's decision (see `requests`). */
  request?: true
}

/** An outbound message still waiting for its ack. */
export interface OutboxItem extends HistoryEntry {
  attempts: number
  nextAttemptAt: number
  lastError?: string
}

export interface SendOptions extends AbortOptions {
  /** @default 'text/plain' */
  contentType?: string
  /** UUID of an earlier message in the conversation this one answers. */
  replyTo?: string
  /**
   * Stop waiting for the ack after this many ms. The message stays queued and
   * is still delivered later. @default the node's `sendTimeout`
   */
  timeout?: number
}

/**
 * What `send` resolves with: the recipient acknowledged the message
 * (`delivered`, with the path it took), or could not be reached in time but a
 * mailbox host holds it sealed for the recipient (`stored`, path `mailbox`).
 */
export type Receipt =
  | { id: string, status: 'delivered', path: MessagePath }
  | { id: string, status: 'stored', path: 'mailbox' }

/**
 * Whether other machines, outside this node's LAN, can reach it: through a
 * relay it holds a reservation on, at a public address, or not at all.
 */
export interface Reachability {
  reachable: boolean
  via: 'relay' | 'public address' | 'lan only'
  /** The relay reached through (its address), when `via` is `relay`. */
  relay?: string
  /** The public address, when `via` is `public address`. */
  address?: string
  /** What stands in the way: relays without a reservation and why, no relay configured, no public address. */
  reasons: string[]
}

export interface NodeStatus {
  peerId: string
  addrs: string[]
  relays: RelayReservationStatus[]
  reachability: Reachability
  connections: number
  dhtPeers: number
  outbox: number
  /** The message store's size against its limit; `full`: nothing more is stored or sent until room is made. */
  storage: { usedBytes: number, limitBytes: number, full: boolean }
  /** Strangers with messages waiting for a decision. */
  requests: number
  blocked: number
  /** The relays keeping this node's mailbox, and how full each is. */
  mailboxes: MailboxStatus[]
}

/** A stranger's messages waiting for the user to accept, decline or block them. */
export interface MessageRequest {
  peerId: string
  messages: number
  bytes: number
  firstAt: number
  lastAt: number
  /** The oldest message's body, cut to 200 characters. */
  preview: string
}

export interface BlockedPeer {
  peerId: string
  since: number
  /** The contact's name, when the peer is one. */
  name?: string
}

/** What `acceptRequest` did: the stranger's waiting messages joined the history. */
export interface AcceptedRequest {
  peerId: string
  /** Messages that left the request and joined the history. */
  accepted: number
  /** The contact added, when a name was given. */
  contact?: ContactInfo
}

/** What `declineRequest` and `block` did to a peer's waiting request messages. */
export interface DeletedRequests {
  peerId: string
  deleted: number
}

/** A contact: a name for a peer, and the addresses its invite gave. */
export interface ContactInfo {
  name: string
  peerId: string
  addrs: string[]
}

/** One connected peer and how it is reached. */
export interface PeerInfo {
  peerId: string
  path: Path
  transport: string
  remoteAddr: string
  /** Round-trip time of the last heartbeat, in ms, once measured. */
  rtt?: number
  /** True for a relay this node is configured to use (not a person to talk to). */
  relay?: boolean
}

export interface ParleyNodeEvents {
  message: CustomEvent<ReceivedMessage>
  'message:status': CustomEvent<StatusChange>
  'path:change': CustomEvent<PathChange>
  /** This node became reachable from outside its LAN, or stopped being, or the reason changed. */
  reachability: CustomEvent<Reachability>
  /** One of this node's mailboxes changed: a session with its host opened or ended, envelopes were fetched. */
  'mailbox:change': CustomEvent<MailboxStatus>
  /** A relay was added or removed (`addRelay`, `removeRelay`): the relays the node uses now, their addresses. */
  'relays:change': CustomEvent<string[]>
  /** A group message arrived (once per group, sender and seq; each sender's in order). */
  'group:message': CustomEvent<GroupMessage>
  /** A group's membership or name changed: this node changed it, or learnt of a change (a group it was put in included). */
  'group:change': CustomEvent<GroupChange>
  /** A member's copy of a group message this node sent changed status (queued, sending, stored, delivered, failed). */
  'group:status': CustomEvent<GroupStatusChange>
  /** A file was offered to this node (see `files`): `status` says whether it is fetched already or waits for `acceptFile`. */
  'file:offer': CustomEvent<FileInfo>
  /** Bytes of a file transfer, in either direction (at most four a second per transfer, and at its end). */
  'file:progress': CustomEvent<FileProgress>
  /** A file transfer changed status. */
  'file:status': CustomEvent<FileInfo>
}

/** One relay the node reserves on, and why it holds no reservation there when it does not. */
export interface RelayStatus extends RelayReservationStatus {
  /** Why the last attempt got no reservation (none once it holds one). */
  lastError?: string
}

/** One conversation of the inbox, as `conversations` lists it. */
export interface Conversation {
  peerId: string
  /** The user's contact name for the peer (the first by name), when it has one. */
  name?: string
  /** The last message of the conversation's history, in either direction. */
  last: {
    id: string
    direction: 'in' | 'out'
    /** The body, cut to 100 characters (the cut ends with `…`). */
    preview: string
    contentType: string
    /** This node's clock when the message was written: sent or received. */
    at: number
    status: HistoryEntry['status']
  }
  /** Inbound messages after the read mark; a message request's are not counted (see `requests`). */
  unread: number
  /** The peer is a stranger whose messages wait as a message request. */
  request: boolean
}

/** What `markRead` did. */
export interface ReadMark {
  peerId: string
  /** Inbound messages still unread after the mark (0 when everything was marked). */
  unread: number
}
