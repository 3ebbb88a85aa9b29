/**
 * The daemon's local HTTP API as one contract: each route, what its request
 * carries and what it answers. The server (server.ts) checks requests with
 * these schemas and must serve every route with these answers (the compiler
 * holds it to them); the CLI's client (cli/client.ts) builds its requests
 * from the same routes and returns the same types.
 *
 * The CLI loads this for `parley send`: zod and types only, never the node.
 */
import { CODE_P2P, CODE_P2P_CIRCUIT, multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import type { GroupChange, GroupConversation, GroupStatusChange, GroupInfo, GroupMessage, GroupSendResult } from '../../node/group/types.js'
import type { PathChange } from '../../node/network/paths.js'
import type { Path } from '../../protocols/im/path.js'
import type { FileInfo, FileProgress } from '../../node/files/transfers.js'
import type { AcceptedRequest, BlockedPeer, ContactInfo, Conversation, DeletedRequests, HistoryEntry, MessageRequest, NodeStatus, OutboxItem, PeerInfo, Reachability, ReadMark, Receipt, ReceivedMessage, RelayStatus, StatusChange } from '../../node/types.js'

// ---- what requests carry ----

/** `POST /v1/messages`. */
export const sendBody = z.strictObject({
  /** Peer ID or contact name. */
  to: z.string().min(1),
  body: z.string(),
  contentType: z.string().optional(),
  replyTo: z.string().optional(),
  /** Seconds to wait for the ack; 0 or none answers at once (202). */
  wait: z.number().min(0).max(3600).optional()
})
export type SendBody = z.input<typeof sendBody>

/** A page of a history: `?limit=&before=` (the group history route takes it as it is). */
export const historyQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(10_000).optional(),
  before: z.coerce.number().int().min(0).optional()
})

/** `GET /v1/history/:peer?limit=&before=&beforeId=`: `beforeId`, the page before that message. */
export const messageHistoryQuery = historyQuery.extend({
  beforeId: z.string().max(64).optional()
})

/** `POST /v1/contacts`. */
export const addContactBody = z.strictObject({
  name: z.string().min(1).max(64),
  /** Peer ID or invite. */
  peer: z.string().min(1),
  /** Repoint a name that is another peer's contact. */
  replace: z.boolean().optional()
})
export type AddContactBody = z.input<typeof addContactBody>

/** `PATCH /v1/contacts/:name`: renames the contact. */
export const renameContactBody = z.strictObject({
  name: z.string().min(1).max(64)
})
export type RenameContactBody = z.input<typeof renameContactBody>

/** `POST /v1/requests/:peer/accept`; no body at all accepts without adding a contact. */
export const acceptBody = z.strictObject({
  /** Also add the peer as a contact with this name. */
  name: z.string().min(1).max(64).optional()
}).optional()

/** `POST /v1/blocked`. */
export const blockBody = z.strictObject({
  /** Peer ID or contact name. */
  peer: z.string().min(1)
})

/** `POST /v1/conversations/:peer/read`; no body at all marks everything read. */
export const markReadBody = z.strictObject({
  /** Mark read up to this message (its id) rather than everything. */
  upTo: z.string().max(64).optional()
}).optional()
export type MarkReadBody = z.input<typeof markReadBody>

/** Longest `relay` a client may send: a relay link is at most 4096 characters (common/relay-link.ts), a multiaddr far less. */
const MAX_RELAY_INPUT = 4096

/** A relay link (checked whole by the server) or a multiaddr that ends in the relay's own /p2p/<peer id>. */
function isRelayInput (text: string): boolean {
  if (text.startsWith('parley-relay:')) return true
  try {
    const components = multiaddr(text).getComponents()
    return components.at(-1)?.code === CODE_P2P && !components.some(c => c.code === CODE_P2P_CIRCUIT)
  } catch {
    return false
  }
}

/** `POST /v1/relays`. */
export const addRelayBody = z.strictObject({
  /** A relay link (parley-relay:…, as `parley relay` prints it) or a multiaddr ending in /p2p/<relay peer id>. */
  relay: z.string().trim().min(1).max(MAX_RELAY_INPUT).refine(isRelayInput, { error: 'must be a relay link (parley-relay:…) or a multiaddr ending in the relay\'s /p2p/<peer id>, not through another relay' })
})
export type AddRelayBody = z.input<typeof addRelayBody>

/** `POST /v1/groups`. */
export const createGroupBody = z.strictObject({
  name: z.string().min(1).max(128),
  /** Peer IDs or contact names, this node aside: at most 99. */
  members: z.array(z.string().min(1).max(256)).max(99)
})
export type CreateGroupBody = z.input<typeof createGroupBody>

/** `POST /v1/groups/:group/members`. */
export const addMemberBody = z.strictObject({
  /** Peer ID or contact name. */
  peer: z.string().min(1).max(256)
})

/** `POST /v1/groups/:group/messages`. */
export const sendGroupBody = z.strictObject({
  body: z.string(),
  contentType: z.string().optional(),
  /** Seconds to wait for the members (each delivered, stored in its mailbox, or found unreachable); 0 or none answers at once (202). */
  wait: z.number().min(0).max(3600).optional()
})
export type SendGroupBody = z.input<typeof sendGroupBody>

/** `POST /v1/files`. */
export const sendFileBody = z.strictObject({
  /** Peer ID or contact name. */
  to: z.string().min(1),
  /** The file, as an absolute path on the daemon's machine (the daemon reads it, not the client). */
  path: z.string().min(1).max(4096).refine(p => p.startsWith('/') || /^[A-Za-z]:[\\/]/.test(p), { error: 'must be an absolute path' }),
  /** The name the recipient sees (default: the path's last part). */
  name: z.string().min(1).max(255).optional(),
  /** The media type (default application/octet-stream). */
  type: z.string().min(1).max(127).optional(),
  /** Serve a copy made now, so that the file may change or go meanwhile. */
  copy: z.boolean().optional(),
  /** A preview image for the offer: image/png, image/jpeg or image/webp, at most 8 KiB, base64. */
  thumbnail: z.strictObject({
    type: z.string().max(32),
    data: z.base64().max(12 * 1024)
  }).optional()
})
export type SendFileBody = z.input<typeof sendFileBody>

/** `GET /v1/files?direction=&peer=&limit=`. */
export const filesQuery = z.strictObject({
  direction: z.enum(['in', 'out']).optional(),
  peer: z.string().min(1).max(256).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional()
})

/** The schemas a route's request is checked with. */
export interface RequestSchemas {
  body?: z.ZodType
  query?: z.ZodType
}

/** The routes whose body or querystring is checked, and the schema that checks it. */
export const REQUEST_SCHEMAS = {
  'POST /v1/messages': { body: sendBody },
  'GET /v1/history/:peer': { query: messageHistoryQuery },
  'POST /v1/contacts': { body: addContactBody },
  'PATCH /v1/contacts/:name': { body: renameContactBody },
  'POST /v1/requests/:peer/accept': { body: acceptBody },
  'POST /v1/blocked': { body: blockBody },
  'POST /v1/conversations/:peer/read': { body: markReadBody },
  'POST /v1/relays': { body: addRelayBody },
  'POST /v1/groups': { body: createGroupBody },
  'POST /v1/groups/:group/members': { body: addMemberBody },
  'POST /v1/groups/:group/messages': { body: sendGroupBody },
  'GET /v1/groups/:group/history': { query: historyQuery },
  'POST /v1/files': { body: sendFileBody },
  'GET /v1/files': { query: filesQuery }
} satisfies { [R in ApiRoute]?: RequestSchemas }

// ---- what answers carry ----

export interface IdResponse {
  peerId: string
  addrs: string[]
}

export interface InviteResponse {
  invite: string
}

/** `GET /v1/conversations`: a conversation, and how its peer is connected right now (`null`: not connected). */
export interface ConversationView extends Conversation {
  path: Path | null
}

/** `POST /v1/groups/:group/read`: the group's unread count after the mark (0 unless more arrived meanwhile). */
export interface GroupReadMark {
  groupId: string
  unread: number
}

/** `POST /v1/login-links`: a one-time link that logs a browser into the web app. */
export interface LoginLinkResponse {
  /** `http://127.0.0.1:<port>/login?token=<one-time token>`. */
  url: string
  /** When the link stops working (ms since the epoch), used or not. */
  expiresAt: number
}

/** 202 from `POST /v1/groups/:group/messages`: written to every member's outbox, not waited for. */
export interface GroupQueued {
  groupId: string
  id: string
  seq: number
  lamport: number
  carriers: Array<{ peer: string, id: string }>
}

/** 202 from `POST /v1/messages`: stored and on its way, not acknowledged (yet). */
export interface SendQueued {
  id: string
  status: HistoryEntry['status']
  /** Why the wait ended without an ack, when there was one. */
  message?: string
}

/** 422 from `POST /v1/messages`: the message failed for good (the recipient refused it, it was cancelled or it expired) while the request waited. */
export interface SendRefused {
  id: string
  status: 'failed'
  error: string
  message: string
}

/** `POST /v1/files`. */
export interface SentFile {
  id: string
  status: FileInfo['status']
}

export interface RemovedContact {
  removed: string
}

export interface UnblockResult {
  unblocked: string
}

/** Every refusal and failure (4xx, 5xx): the error's name and what to do. */
export interface ErrorBody {
  error: string
  message: string
}

/** `GET /v1/events` (Server-Sent Events): each event's name and its `data`. */
export interface ApiEvents {
  /** First, once the stream is live. */
  ready: { peerId: string }
  message: ReceivedMessage
  status: StatusChange
  path: PathChange
  /** This node became reachable from outside its LAN or stopped being, or why not changed. */
  reachability: Reachability
  /** A group message arrived. */
  'group-message': GroupMessage
  /** A group's membership or name changed (or this node was put in a group). */
  'group-change': GroupChange
  /** A member's copy of a group message this node sent changed status (sent since the daemon started). */
  'group-status': GroupStatusChange
  /** A file was offered to this node. */
  'file-offer': FileInfo
  /** Bytes of a transfer, either way (at most four a second per transfer). */
  'file-progress': FileProgress
  /** A transfer changed status. */
  'file-status': FileInfo
  /** Last: the stream fell too far behind and is ended; read what was missed from the history. */
  overflow: { message: string, backlog: number }
}

/** One event of the stream, as `{ event, data }`. */
export type ApiEvent = { [E in keyof ApiEvents]: { event: E, data: ApiEvents[E] } }[keyof ApiEvents]

/**
 * Every route, as `METHOD /path` with `:name` for a path parameter, and its
 * 200 answer; `replies` are answers with another status that are not errors.
 */
export interface ApiRoutes {
  'GET /v1/id': { response: IdResponse }
  'GET /v1/status': { response: NodeStatus }
  'GET /v1/peers': { response: PeerInfo[] }
  'GET /v1/outbox': { response: OutboxItem[] }
  'GET /v1/invite': { response: InviteResponse }
  /** A one-time login link for the web app (expires in 2 minutes); bearer token only: 403 with the app's session cookie. */
  'POST /v1/login-links': { response: LoginLinkResponse }
  /** 200 once acknowledged within `wait`. */
  'POST /v1/messages': { response: Receipt, replies: { 202: SendQueued, 422: SendRefused } }
  'GET /v1/messages/:id': { response: HistoryEntry }
  /** Cancels a message waiting in the outbox: it is answered as it now is (failed, "cancelled by the sender"); 404 unknown, 409 not cancellable. */
  'DELETE /v1/messages/:id': { response: HistoryEntry }
  'GET /v1/history/:peer': { response: HistoryEntry[] }
  'GET /v1/contacts': { response: ContactInfo[] }
  'POST /v1/contacts': { response: ContactInfo }
  /** Renames a contact (same peer): 404 no contact has the name, 409 the new name is another contact's, 400 not a name. */
  'PATCH /v1/contacts/:name': { response: ContactInfo }
  'DELETE /v1/contacts/:name': { response: RemovedContact }
  /** Message requests: strangers' messages waiting for the user's decision. */
  'GET /v1/requests': { response: MessageRequest[] }
  'POST /v1/requests/:peer/accept': { response: AcceptedRequest }
  'DELETE /v1/requests/:peer': { response: DeletedRequests }
  'GET /v1/blocked': { response: BlockedPeer[] }
  'POST /v1/blocked': { response: DeletedRequests }
  'DELETE /v1/blocked/:peer': { response: UnblockResult }
  /** The inbox: conversations with unread counts, the latest activity first. */
  'GET /v1/conversations': { response: ConversationView[] }
  'POST /v1/conversations/:peer/read': { response: ReadMark }
  /** Reserves on one more relay now, without a restart: 200 once the first attempt settled (reserved, or not and why); 400 not a relay, 409 over the node's limit of relays. */
  'POST /v1/relays': { response: RelayStatus }
  /** Stops using a relay (its peer ID or address) now: 204, or 404 when the node does not use it. */
  'DELETE /v1/relays/:peer': { response: never, replies: { 204: null } }
  /** Groups (protocols/group/README.md); `:group` is a group ID or a group's name. */
  'GET /v1/groups': { response: GroupInfo[] }
  /** 403 when a member is not allowed to (`GroupChangeRefusedError`), 404 unknown group. */
  'POST /v1/groups': { response: GroupInfo }
  'GET /v1/groups/:group': { response: GroupInfo }
  /** The groups as an inbox: each one's last message (display order) and unread count, the latest activity first. */
  'GET /v1/group-conversations': { response: GroupConversation[] }
  /** Marks everything that has arrived in the group read: 404 unknown group. */
  'POST /v1/groups/:group/read': { response: GroupReadMark }
  'POST /v1/groups/:group/members': { response: GroupInfo }
  'DELETE /v1/groups/:group/members/:peer': { response: GroupInfo }
  'POST /v1/groups/:group/leave': { response: GroupInfo }
  /** 200 once every member is delivered, stored in its mailbox or found unreachable, within `wait`; 202 at once without `wait`. */
  'POST /v1/groups/:group/messages': { response: GroupSendResult, replies: { 202: GroupQueued } }
  'GET /v1/groups/:group/history': { response: GroupMessage[] }
  /** Offers a file (see ParleyNode.sendFile): its id (the offer message's) and status; 400 unreadable, 404 no such peer. */
  'POST /v1/files': { response: SentFile }
  /** Transfers both ways, the latest first. */
  'GET /v1/files': { response: FileInfo[] }
  'GET /v1/files/:id': { response: FileInfo }
  /** Accepts an offer waiting for the user: 409 when it does not wait, 507 over the disk quota. */
  'POST /v1/files/:id/accept': { response: FileInfo }
  /** Refuses an offer made to this node (or stops its transfer), or withdraws one it made: 409 when already over. */
  'DELETE /v1/files/:id': { response: FileInfo }
  /** A `text/event-stream` of these, until the client goes. */
  'GET /v1/events': { response: ApiEvent }
}

export type ApiRoute = keyof ApiRoutes

/** `'GET /v1/history/:peer'` → `'peer'`. */
type ParamNames<Path extends string> =
  Path extends `${string}:${infer Name}/${infer Rest}` ? Name | ParamNames<Rest>
    : Path extends `${string}:${infer Name}` ? Name : never

/** The path parameters of a route, by name (decoded). */
export type RouteParams<R extends ApiRoute> = Record<ParamNames<R>, string>

type Schemas = typeof REQUEST_SCHEMAS
type SchemaOf<R extends ApiRoute, Part extends 'body' | 'query'> = R extends keyof Schemas ? Schemas[R] extends Record<Part, infer S extends z.ZodType> ? S : undefined : undefined

/** What a client sends as the route's body (`undefined`: none). */
export type RouteBody<R extends ApiRoute> = SchemaOf<R, 'body'> extends z.ZodType ? z.input<SchemaOf<R, 'body'>> : undefined

/** The route's body once the server has checked it. */
export type CheckedBody<R extends ApiRoute> = SchemaOf<R, 'body'> extends z.ZodType ? z.output<SchemaOf<R, 'body'>> : undefined

/** The route's querystring: what a client puts in it, and the server reads once checked. */
export type RouteQuery<R extends ApiRoute> = SchemaOf<R, 'query'> extends z.ZodType ? z.output<SchemaOf<R, 'query'>> : undefined

type Replies<R extends ApiRoute> = ApiRoutes[R] extends { replies: infer Map } ? Map : Record<never, never>

/** Each answer of a route that is not an error, with its status. */
export type RouteAnswer<R extends ApiRoute> =
  | { status: 200, body: ApiRoutes[R]['response'] }
  | { [S in keyof Replies<R>]: { status: S, body: Replies<R>[S] } }[keyof Replies<R>]

/** The method and the path pattern of a route: `'GET /v1/id'` → `['GET', '/v1/id']`. */
export function splitRoute (route: ApiRoute): { method: string, path: string } {
  const space = route.indexOf(' ')
  return { method: route.slice(0, space), path: route.slice(space + 1) }
}

/** The path of a route with its parameters filled in, each percent-encoded. */
export function routePath<R extends ApiRoute> (route: R, params: RouteParams<R>): string {
  const values: Record<string, string> = params
  return splitRoute(route).path.replace(/:([A-Za-z]+)/g, (_, name: string) => encodeURIComponent(values[name]))
}
