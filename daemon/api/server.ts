import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from '../../common/node-http.js'
import { multiaddr } from '@multiformats/multiaddr'
import { UnknownContactError } from '../../node/errors.js'
import { relayAddressOf } from '../relays-file.js'
import { REQUEST_SCHEMAS, splitRoute } from './contract.js'
import { systemClock } from '../../common/clock.js'
import { WebLogins } from '../web/logins.js'
import { SECURITY_HEADERS, crossSiteRefusal, isLoopbackHost, sessionCookie, sessionCookieOf } from '../web/guard.js'
import { StaticFiles, defaultWebRoot } from '../web/static.js'
import type { Clock } from '../../common/clock.js'
import type { LoginLimits } from '../web/logins.js'
import type { ApiEvents, ApiRoute, ApiRoutes, CheckedBody, GroupQueued, GroupReadMark, RequestSchemas, RouteParams, RouteQuery } from './contract.js'
import type { GroupConversation, GroupInfo, GroupMessage, GroupSendResult } from '../../node/group/types.js'
import type { AcceptedRequest, BlockedPeer, ContactInfo, Conversation, DeletedRequests, HistoryEntry, MessageRequest, NodeStatus, OutboxItem, ParleyNodeEvents, PeerInfo, ReadMark, Receipt, RelayStatus, SendOptions } from '../../node/types.js'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { FileInfo, SendFileOptions } from '../../node/files/transfers.js'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { z } from 'zod'

/** Errors from the node that mean "your request was wrong": 400 with the reason. */
const BAD_REQUEST = new Set([
  'InvalidPeerIdError', 'EmptyMessageError', 'MessageTooLargeError', 'InvalidMessageError',
  'InvalidInviteError', 'InvalidContactNameError',
  // a relay to add that is not one: a damaged link, an address without the relay's peer ID
  'InvalidRelayLinkError', 'InvalidRelayAddressError', 'InvalidConfigError'
])

/** Other errors from the node with a status of their own. */
const ERROR_STATUS: Record<string, number> = {
  // DELETE of a contact name nobody has
  UnknownContactError: 404,
  // the name is taken by another peer and `replace` was not set
  ContactExistsError: 409,
  // the message store is at its size limit
  StorageFullError: 507,
  // cancelling a message id nobody sent, or one no longer waiting in the outbox
  UnknownMessageError: 404,
  MessageNotCancellableError: 409,
  // the node already uses as many relays as it may
  TooManyRelaysError: 409,
  // a group ID or name this node does not know
  UnknownGroupError: 404,
  // a membership change or message the group's rules do not allow this node
  GroupChangeRefusedError: 403,
  // files: an id nobody offered, a transfer not in a state for it, the quota, a file over the protocol's bound
  UnknownFileError: 404,
  FileStateError: 409,
  FileQuotaError: 507,
  FileTooLargeError: 413
}

/**
 * Largest request body read. A message body is at most 32 KiB of UTF-8
 * (the protocol's MAX_BODY_BYTES), and JSON's escapes can make that six
 * times longer: 1 MiB leaves room to spare and still bounds what a client
 * can make the daemon hold.
 */
const MAX_REQUEST_BYTES = 1024 * 1024

/** Past this much, the rest of a body too large is no longer read and dropped: the connection is cut. */
const MAX_DRAINED_BYTES = 16 * MAX_REQUEST_BYTES

/** Defaults of the limits in ApiServerInit. */
export const API_LIMITS = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  bodyTimeout: 10_000,
  maxConnections: 256,
  maxEventBacklog: 1024 * 1024,
  overflowGrace: 5_000
}

/** A comment line on every event stream this often, so that a dead one is noticed. */
const EVENTS_KEEP_ALIVE = 15_000

/** The node's events the API streams at `/v1/events`. */
export type ApiNodeEvents = Pick<ParleyNodeEvents, 'message' | 'message:status' | 'path:change' | 'reachability' | 'group:message' | 'group:change' | 'group:status' | 'file:offer' | 'file:progress' | 'file:status'>

/**
 * What the API server needs of a node: a ParleyNode has all of it, and a
 * test can serve the API from a stub with just this.
 */
export interface ApiNode {
  readonly peerId: { toString(): string }
  readonly multiaddrs: ReadonlyArray<{ toString(): string }>
  status(): NodeStatus
  peers(): PeerInfo[]
  outbox(): OutboxItem[]
  invite(): string
  queue(peer: string, body: string, options: Pick<SendOptions, 'contentType' | 'replyTo'>): string
  waitFor(id: string, options: Pick<SendOptions, 'timeout'>): Promise<Receipt>
  getMessage(id: string): HistoryEntry | undefined
  /** Takes a queued message out of the outbox (see ParleyNode.cancel). */
  cancel(id: string): HistoryEntry
  history(peer: string, options: { limit?: number, before?: number, beforeId?: string }): HistoryEntry[]
  contacts(): ContactInfo[]
  addContact(name: string, peerOrInvite: string, options: { replace?: boolean }): Promise<ContactInfo>
  /** UnknownContactError when no contact has `name`, ContactExistsError when `newName` is another's. */
  renameContact(name: string, newName: string): ContactInfo
  /** False when no contact has this name. */
  removeContact(name: string): boolean
  requests(): MessageRequest[]
  acceptRequest(peer: string, options: { name?: string }): Promise<AcceptedRequest>
  declineRequest(peer: string): DeletedRequests
  blocked(): BlockedPeer[]
  block(peer: string): DeletedRequests
  /** False when the peer was not blocked. */
  unblock(peer: string): boolean
  conversations(): Conversation[]
  markRead(peer: string, options: { upTo?: string }): ReadMark
  /** Reserves on one more relay now (see ParleyNode.addRelay). */
  addRelay(addr: Multiaddr): Promise<RelayStatus>
  /** Stops using a relay now; false when the node does not use it (see ParleyNode.removeRelay). */
  removeRelay(relay: string): Promise<boolean>
  groups(): GroupInfo[]
  groupConversations(): GroupConversation[]
  /** UnknownGroupError when there is no such group. */
  markGroupRead(group: string): GroupReadMark
  group(group: string): GroupInfo
  createGroup(name: string, members: string[]): Promise<GroupInfo>
  addMember(group: string, peer: string): Promise<GroupInfo>
  removeMember(group: string, peer: string): Promise<GroupInfo>
  leaveGroup(group: string): Promise<GroupInfo>
  queueGroup(group: string, body: string, options: { contentType?: string }): Promise<GroupQueued>
  sendGroup(group: string, body: string, options: { contentType?: string, timeout?: number }): Promise<GroupSendResult>
  groupHistory(group: string, options: { limit?: number, before?: number }): GroupMessage[]
  /** Files (see ParleyNode.sendFile and the rest). */
  sendFile(peer: string, path: string, options: SendFileOptions): Promise<{ id: string, status: FileInfo['status'] }>
  acceptFile(id: string): FileInfo
  cancelFile(id: string): FileInfo
  file(id: string): FileInfo | undefined
  files(options: { direction?: 'in' | 'out', peer?: string, limit?: number }): FileInfo[]
  addEventListener<K extends keyof ApiNodeEvents>(type: K, listener: (evt: ApiNodeEvents[K]) => void): void
  removeEventListener<K extends keyof ApiNodeEvents>(type: K, listener: (evt: ApiNodeEvents[K]) => void): void
}

export interface ApiServerInit {
  /**
   * Port on 127.0.0.1; 0 picks a free one.
   *
   * @default 0
   */
  port?: number

  /** Bearer token; a random one is made when omitted. */
  token?: string

  /**
   * A connection that has not sent a request's whole headers this long (ms)
   * after the request began is answered 408 and closed.
   *
   * @default 10_000
   */
  headersTimeout?: number

  /**
   * Nor its whole request, headers and body (ms). Only the request: an event
   * stream's response runs as long as the client stays.
   *
   * @default 30_000
   */
  requestTimeout?: number

  /**
   * An idle keep-alive connection is closed after this long (ms).
   *
   * @default 5_000
   */
  keepAliveTimeout?: number

  /**
   * Reading a request's body (after its headers) gives up after this long
   * (ms): 408, and the connection is closed.
   *
   * @default 10_000
   */
  bodyTimeout?: number

  /**
   * Open connections at most (event streams count); more are closed at once.
   *
   * @default 256
   */
  maxConnections?: number

  /**
   * An event stream whose unsent backlog would pass this many bytes (a client
   * that stopped reading) is dropped: it is sent a last `overflow` event and
   * ended.
   *
   * @default 1 MiB
   */
  maxEventBacklog?: number

  /**
   * How long (ms) a dropped event stream gets to take its last bytes before
   * its connection is destroyed.
   *
   * @default 5_000
   */
  overflowGrace?: number

  /**
   * The web app's files (index.html and assets/), served at `/`.
   *
   * @default dist/web next to the daemon's built code (see defaultWebRoot)
   */
  webRoot?: string

  /** Bounds of the web app's login links and sessions (daemon/web/logins.ts). */
  logins?: Partial<LoginLimits>

  /** Keeps the login links' time. */
  clock?: Clock
}

export interface ApiServer {
  url: string
  token: string
  port: number
  /** The node:http server (for tests and diagnostics). */
  server: Server
  close(): Promise<void>
}

/** An answer other than 200 with the handler's result (one of the route's `replies` in the contract). */
class Reply<Status extends number, Body> {
  constructor (readonly status: Status, readonly body: Body) {}
}

/** A request the API refuses: `status` with `{ error, message }`. */
class HttpError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

/** Validates `value` (the request's `where`: body or querystring), or a 400 saying what is wrong. */
function parse<S extends z.ZodType> (schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issues = result.error.issues.map(issue => {
    const path = [where, ...issue.path].join('.')
    return issue.code === 'unrecognized_keys' ? `${path}: unknown ${issue.keys.join(', ')}` : `${path}: ${issue.message}`
  })
  throw new HttpError(400, 'BadRequest', issues.join('; '))
}

/** A request as its route's handler gets it: parameters decoded, body and querystring checked. */
interface Request<R extends ApiRoute> {
  params: RouteParams<R>
  query: RouteQuery<R>
  body: CheckedBody<R>
  raw: IncomingMessage
  res: ServerResponse
  /** What the request was let in by: the bearer token (CLI, scripts) or the web app's session cookie. */
  auth: 'bearer' | 'session'
}

/** Handlers answer with a JSON result (200), a `Reply`, or STREAMING once they own the response. */
const STREAMING = Symbol('streaming')

type Replies<R extends ApiRoute> = ApiRoutes[R] extends { replies: infer Map } ? { [S in keyof Map]: S extends number ? Reply<S, Map[S]> : never }[keyof Map] : never
type Answer<R extends ApiRoute> = ApiRoutes[R]['response'] | Replies<R> | typeof STREAMING
type Handler<R extends ApiRoute> = (request: Request<R>) => Answer<R> | Promise<Answer<R>>

/** One handler per route of the contract: a route left out, or an answer of the wrong shape, does not compile. */
type Handlers = { [R in ApiRoute]: Handler<R> }

interface Route {
  method: string
  segments: string[]
  schemas: RequestSchemas
  handler: Handler<ApiRoute>
}

/** Each route's request schemas, looked up by any route (most have none). */
const SCHEMAS: Partial<Record<ApiRoute, RequestSchemas>> = REQUEST_SCHEMAS

/**
 * The daemon's local API: JSON over HTTP on 127.0.0.1 only, every request
 * carrying the bearer token that the daemon writes to its data dir. The CLI
 * talks to the node through this and nothing else.
 */
export async function startApiServer (node: ApiNode, init: ApiServerInit = {}): Promise<ApiServer> {
  const token = init.token ?? randomBytes(32).toString('hex')
  const limits = { ...API_LIMITS, ...definedOnly(init) }
  const expected = Buffer.from(`Bearer ${token}`)
  const logins = new WebLogins(init.clock ?? systemClock, init.logins)
  const web = new StaticFiles(init.webRoot ?? defaultWebRoot())
  let origin = ''

  const handlers: Handlers = {
    'GET /v1/id': () => ({ peerId: node.peerId.toString(), addrs: node.multiaddrs.map(a => a.toString()) }),
    'GET /v1/status': () => node.status(),
    'GET /v1/peers': () => node.peers(),
    'GET /v1/outbox': () => node.outbox(),
    'GET /v1/invite': () => ({ invite: node.invite() }),

    // minting a login from a browser session would let a page that got one
    // request through keep itself logged in: the bearer token only
    'POST /v1/login-links': ({ auth }) => {
      if (auth !== 'bearer') throw new HttpError(403, 'Forbidden', 'login links are given for the bearer token only (`parley open`), not for a browser session')
      const link = logins.createLink()
      return { url: `${origin}/login?token=${link.token}`, expiresAt: link.expiresAt }
    },

    'POST /v1/messages': async ({ body: { to, body: text, contentType, replyTo, wait } }) => {
      const id = node.queue(to, text, { contentType, replyTo })
      if (wait == null || wait === 0) {
        return new Reply(202, { id, status: node.getMessage(id)?.status ?? 'queued' })
      }
      try {
        return await node.waitFor(id, { timeout: wait * 1000 })
      } catch (err: any) {
        if (err.name === 'DeliveryTimeoutError') {
          return new Reply(202, { id, status: node.getMessage(id)?.status ?? 'queued', message: err.message })
        }
        if (err.name === 'MessageRejectedError' || err.name === 'MessageCancelledError' || err.name === 'MessageExpiredError') {
          return new Reply(422, { id, status: 'failed' as const, error: err.name, message: err.message })
        }
        throw err
      }
    },

    'GET /v1/messages/:id': ({ params }) => {
      const message = node.getMessage(params.id)
      if (message == null) throw new HttpError(404, 'NotFound', `no message with id ${params.id}`)
      return message
    },

    'DELETE /v1/messages/:id': ({ params }) => node.cancel(params.id),

    'GET /v1/history/:peer': ({ params, query }) => node.history(params.peer, query),

    'GET /v1/contacts': () => node.contacts(),
    'POST /v1/contacts': ({ body: { name, peer, replace } }) => node.addContact(name, peer, { replace }),
    'PATCH /v1/contacts/:name': ({ params, body }) => node.renameContact(params.name, body.name),
    'DELETE /v1/contacts/:name': ({ params }) => {
      if (!node.removeContact(params.name)) throw new UnknownContactError(`no contact named "${params.name}"`)
      return { removed: params.name }
    },

    // message requests: strangers' messages waiting for the user's decision
    'GET /v1/requests': () => node.requests(),
    'POST /v1/requests/:peer/accept': ({ params, body }) => node.acceptRequest(params.peer, { name: body?.name }),
    'DELETE /v1/requests/:peer': ({ params }) => node.declineRequest(params.peer),

    'GET /v1/blocked': () => node.blocked(),
    'POST /v1/blocked': ({ body }) => node.block(body.peer),
    'DELETE /v1/blocked/:peer': ({ params }) => {
      if (!node.unblock(params.peer)) throw new HttpError(404, 'NotFound', `${params.peer} is not blocked`)
      return { unblocked: params.peer }
    },

    // the inbox: conversations, unread counts, read marks
    'GET /v1/conversations': () => {
      const paths = new Map(node.peers().map(peer => [peer.peerId, peer.path]))
      return node.conversations().map(conversation => ({ ...conversation, path: paths.get(conversation.peerId) ?? null }))
    },
    'POST /v1/conversations/:peer/read': ({ params, body }) => node.markRead(params.peer, { upTo: body?.upTo }),

    // relays, changed while the node runs (the CLI saves them in the config file too)
    'POST /v1/relays': async ({ body }) => node.addRelay(multiaddr(relayAddressOf(body.relay))),
    'DELETE /v1/relays/:peer': async ({ params }) => {
      if (!await node.removeRelay(params.peer)) throw new HttpError(404, 'NotFound', `this node uses no relay ${params.peer.slice(0, 200)}; \`parley relays\` lists them`)
      return new Reply(204, null)
    },

    // groups: `:group` is an ID or a name
    'GET /v1/groups': () => node.groups(),
    'POST /v1/groups': async ({ body }) => node.createGroup(body.name, body.members),
    'GET /v1/groups/:group': ({ params }) => node.group(params.group),
    // groups as an inbox: last message, unread count; and their read marks
    'GET /v1/group-conversations': () => node.groupConversations(),
    'POST /v1/groups/:group/read': ({ params }) => node.markGroupRead(params.group),
    'POST /v1/groups/:group/members': async ({ params, body }) => node.addMember(params.group, body.peer),
    'DELETE /v1/groups/:group/members/:peer': async ({ params }) => node.removeMember(params.group, params.peer),
    'POST /v1/groups/:group/leave': async ({ params }) => node.leaveGroup(params.group),
    'POST /v1/groups/:group/messages': async ({ params, body: { body: text, contentType, wait } }) => {
      if (wait == null || wait === 0) return new Reply(202, await node.queueGroup(params.group, text, { contentType }))
      return node.sendGroup(params.group, text, { contentType, timeout: wait * 1000 })
    },
    'GET /v1/groups/:group/history': ({ params, query }) => node.groupHistory(params.group, query),
    // files: offers made and received, their transfers
    'POST /v1/files': async ({ body: { to, path, thumbnail, ...options } }) => {
      try {
        return await node.sendFile(to, path, { ...options, ...(thumbnail == null ? {} : { thumbnail: { type: thumbnail.type, data: new Uint8Array(Buffer.from(thumbnail.data, 'base64')) } }) })
      } catch (err: any) {
        if (typeof err.code === 'string' && ['ENOENT', 'EACCES', 'EISDIR', 'EPERM', 'ENOTDIR'].includes(err.code)) {
          throw new HttpError(400, 'FileUnreadable', `the daemon cannot read ${path}: ${String(err.code)}`)
        }
        throw err
      }
    },
    'GET /v1/files': ({ query }) => node.files(query),
    'GET /v1/files/:id': ({ params }) => {
      const file = node.file(params.id)
      if (file == null) throw new HttpError(404, 'NotFound', `no file with id ${params.id.slice(0, 64)}`)
      return file
    },
    'POST /v1/files/:id/accept': ({ params }) => node.acceptFile(params.id),
    'DELETE /v1/files/:id': ({ params }) => node.cancelFile(params.id),

    // live events as Server-Sent Events: message, status, path; a client that
    // falls behind is sent `overflow` and dropped (see eventStream)
    'GET /v1/events': ({ raw, res }) => {
      eventStream(node, raw, res, limits)
      return STREAMING
    }
  }

  const routes: Route[] = (Object.keys(handlers) as ApiRoute[]).map(key => {
    const { method, path } = splitRoute(key)
    return { method, segments: path.split('/').slice(1), schemas: SCHEMAS[key] ?? {}, handler: handlers[key] as Handler<ApiRoute> }
  })

  const server = createServer({
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    // how often node:http looks for requests past those timeouts (default 30 s,
    // which would let a request live up to 30 s longer than its timeout)
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(Math.min(limits.headersTimeout, limits.requestTimeout) / 4)))
  }, (raw, res) => {
    handle(raw, res).catch((err: any) => {
      // the answer could not be written (the client went away): nothing more to do
      res.destroy(err)
    })
  })

  /** Who the request is from: the bearer token, else the web app's session cookie, else a 401. */
  function authenticate (raw: IncomingMessage): 'bearer' | 'session' {
    const given = Buffer.from(raw.headers.authorization ?? '')
    if (given.length === expected.length && timingSafeEqual(given, expected)) return 'bearer'
    const session = sessionCookieOf(raw.headers.cookie)
    if (raw.headers.authorization == null && session != null && logins.isSession(session)) return 'session'
    throw new HttpError(401, 'Unauthorized', 'missing or wrong bearer token (the CLI reads it from api.json in the data dir), or no live web app session (run `parley open`)')
  }

  async function handle (raw: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value)
    let status = 200
    let result: unknown
    try {
      // before the token: a rebinding page must learn nothing, not even that it needs one
      if (!isLoopbackHost(raw.headers.host)) {
        throw new HttpError(403, 'Forbidden', `this server answers only requests for 127.0.0.1, localhost or [::1], not Host "${(raw.headers.host ?? '').slice(0, 200)}"`)
      }
      const url = new URL(raw.url ?? '/', 'http://127.0.0.1')
      if (!url.pathname.startsWith('/v1/')) {
        await serveWeb(raw, res, url)
        return
      }
      const auth = authenticate(raw)
      if (auth === 'session') {
        const refusal = crossSiteRefusal({ method: raw.method ?? 'GET', host: raw.headers.host ?? '', origin: raw.headers.origin, secFetchSite: header(raw, 'sec-fetch-site') })
        if (refusal != null) throw new HttpError(403, 'Forbidden', refusal)
      }
      const found = match(raw.method ?? 'GET', url.pathname)
      const body = raw.method === 'POST' || raw.method === 'PATCH' ? await readJson(raw, limits.bodyTimeout) : undefined
      const { schemas } = found.route
      result = await found.route.handler({
        params: found.params,
        query: schemas.query == null ? undefined : parse(schemas.query, Object.fromEntries(url.searchParams), 'querystring'),
        body: schemas.body == null ? undefined : parse(schemas.body, body, 'body'),
        raw,
        res,
        auth
      } as Request<ApiRoute>)
      if (result === STREAMING) return
      if (result instanceof Reply) {
        status = result.status
        result = result.body
      }
    } catch (err: any) {
      // a file's stream that failed half-way: nothing more can be said on this connection
      if (res.headersSent) throw err
      if (err instanceof HttpError) {
        status = err.status
        result = { error: err.code, message: err.message }
      } else if (BAD_REQUEST.has(err.name)) {
        status = 400
        result = { error: err.name, message: err.message }
      } else if (ERROR_STATUS[err.name] != null) {
        status = ERROR_STATUS[err.name]
        result = { error: err.name, message: err.message }
      } else {
        status = 500
        result = { error: err.name ?? 'Error', message: err.message }
      }
    }
    if (status === 204) {
      // no content: no body, nor a length for one
      res.writeHead(204, raw.complete ? {} : { connection: 'close' })
      res.end()
      return
    }
    const json = JSON.stringify(result ?? null)
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(json),
      // a body left unread (refused, or too slow): the connection goes with the answer
      ...(raw.complete ? {} : { connection: 'close' })
    })
    res.end(json)
  }

  /**
   * Everything outside /v1/: the login link, then the app's files (GET and
   * HEAD only; no token needed: they are the npm package's, nothing secret).
   */
  async function serveWeb (raw: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = raw.method ?? 'GET'
    if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'MethodNotAllowed', `${method} is not allowed on ${url.pathname.slice(0, 200)}`)
    if (url.pathname === '/login') {
      // a HEAD (a link checker, a prefetch) must not spend the link the browser is about to open
      if (method !== 'GET') throw new HttpError(405, 'MethodNotAllowed', 'a login link is opened with GET')
      const session = logins.redeem(url.searchParams.get('token') ?? '')
      // never cached, and never sent on as a Referer (no-referrer on every answer)
      if (session == null) {
        res.writeHead(401, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(LOGIN_REFUSED_PAGE), 'cache-control': 'no-store' })
        res.end(LOGIN_REFUSED_PAGE)
        return
      }
      res.writeHead(303, { location: '/', 'set-cookie': sessionCookie(session), 'cache-control': 'no-store', 'content-length': 0 })
      res.end()
      return
    }
    if (!await web.serve(raw.url ?? '/', method, res)) {
      throw new HttpError(404, 'NotFound', `no file ${url.pathname.slice(0, 200)}${url.pathname === '/' ? ' (the web app is not built: npm run build)' : ''}`)
    }
  }

  function match (method: string, pathname: string): { route: Route, params: Record<string, string> } {
    const segments = pathname.split('/').slice(1)
    let pathFound = false
    for (const candidate of routes) {
      if (candidate.segments.length !== segments.length) continue
      const params: Record<string, string> = {}
      const same = candidate.segments.every((segment, i) => {
        if (segment.startsWith(':')) {
          try {
            params[segment.slice(1)] = decodeURIComponent(segments[i])
          } catch {
            throw new HttpError(400, 'BadRequest', `${pathname} is not a well-formed path`)
          }
          return segments[i] !== ''
        }
        return segment === segments[i]
      })
      if (!same) continue
      pathFound = true
      if (candidate.method === method) return { route: candidate, params }
    }
    if (pathFound) throw new HttpError(405, 'MethodNotAllowed', `${method} is not allowed on ${pathname}`)
    throw new HttpError(404, 'NotFound', `no route ${method} ${pathname}`)
  }

  // loopback only: the API is for this machine's user, never the network
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.maxConnections = limits.maxConnections
  const address = server.address()
  const port = typeof address === 'object' && address != null ? address.port : 0
  origin = `http://127.0.0.1:${port}`
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    port,
    server,
    close: async () => {
      const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
      // event streams stay open: closing must not wait for them
      server.closeAllConnections()
      await closed
    }
  }
}

/** What a login link that is not (any more) valid opens: no script, no style, nothing to load. */
const LOGIN_REFUSED_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>parley: this login link is not valid</title></head>
<body><h1>This login link is not valid</h1>
<p>A login link works once, for two minutes, and only until the daemon restarts. Run <code>parley open</code> again for a new one.</p></body></html>
`

/** A request header that may only appear once, as a string. */
function header (raw: IncomingMessage, name: string): string | undefined {
  const value = raw.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** `init` without its undefined keys, so that they do not override the defaults. */
function definedOnly (init: ApiServerInit): Partial<typeof API_LIMITS> {
  return Object.fromEntries(Object.entries(init).filter(([key, value]) => value !== undefined && key in API_LIMITS))
}

/** One Server-Sent Event of the contract's ApiEvents. */
function eventText<E extends keyof ApiEvents> (event: E, data: ApiEvents[E]): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
}

/**
 * Serves `/v1/events` on `res` until the client goes. Each subscriber's
 * unsent backlog is bounded: an event that would take it past
 * `maxEventBacklog` bytes (a client that stopped reading: a hung `watch`)
 * drops the subscriber instead. It gets a last `overflow` event (best effort:
 * it comes after the backlog) and the end of the stream; if it has not taken
 * them within `overflowGrace`, the connection is destroyed. Without this, one
 * stuck client and a flood of messages grow the daemon's memory until it dies.
 */
function eventStream (node: ApiNode, raw: IncomingMessage, res: ServerResponse, limits: typeof API_LIMITS): void {
  // the stream ends the connection when it ends: no keep-alive after it
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'close' })
  let open = true
  const send = (chunk: string): void => {
    if (!open) return
    const size = Buffer.byteLength(chunk)
    if (res.writableLength > 0 && res.writableLength + size > limits.maxEventBacklog) {
      overflow()
      return
    }
    res.write(chunk)
  }
  const onMessage = (evt: ApiNodeEvents['message']): void => { send(eventText('message', evt.detail)) }
  const onStatus = (evt: ApiNodeEvents['message:status']): void => { send(eventText('status', evt.detail)) }
  const onPath = (evt: ApiNodeEvents['path:change']): void => { send(eventText('path', evt.detail)) }
  const onReachability = (evt: ApiNodeEvents['reachability']): void => { send(eventText('reachability', evt.detail)) }
  const onGroupMessage = (evt: ApiNodeEvents['group:message']): void => { send(eventText('group-message', evt.detail)) }
  const onGroupChange = (evt: ApiNodeEvents['group:change']): void => { send(eventText('group-change', evt.detail)) }
  const onGroupStatus = (evt: ApiNodeEvents['group:status']): void => { send(eventText('group-status', evt.detail)) }
  const onFileOffer = (evt: ApiNodeEvents['file:offer']): void => { send(eventText('file-offer', evt.detail)) }
  const onFileProgress = (evt: ApiNodeEvents['file:progress']): void => { send(eventText('file-progress', evt.detail)) }
  const onFileStatus = (evt: ApiNodeEvents['file:status']): void => { send(eventText('file-status', evt.detail)) }
  const keepAlive = setInterval(() => { send(': keep-alive\n\n') }, EVENTS_KEEP_ALIVE)
  const unsubscribe = (): void => {
    open = false
    clearInterval(keepAlive)
    node.removeEventListener('message', onMessage)
    node.removeEventListener('message:status', onStatus)
    node.removeEventListener('path:change', onPath)
    node.removeEventListener('reachability', onReachability)
    node.removeEventListener('group:message', onGroupMessage)
    node.removeEventListener('group:change', onGroupChange)
    node.removeEventListener('group:status', onGroupStatus)
    node.removeEventListener('file:offer', onFileOffer)
    node.removeEventListener('file:progress', onFileProgress)
    node.removeEventListener('file:status', onFileStatus)
  }
  const overflow = (): void => {
    unsubscribe()
    res.end(eventText('overflow', {
      message: `this event stream fell over ${limits.maxEventBacklog} bytes behind and was dropped; reconnect, and read what was missed with /v1/history`,
      backlog: res.writableLength
    }))
    const grace = setTimeout(() => { res.destroy() }, limits.overflowGrace)
    grace.unref()
    res.once('close', () => { clearTimeout(grace) })
  }
  // a first event, so a client knows the stream is live before anything happens
  send(eventText('ready', { peerId: node.peerId.toString() }))
  node.addEventListener('message', onMessage)
  node.addEventListener('message:status', onStatus)
  node.addEventListener('path:change', onPath)
  node.addEventListener('reachability', onReachability)
  node.addEventListener('group:message', onGroupMessage)
  node.addEventListener('group:change', onGroupChange)
  node.addEventListener('group:status', onGroupStatus)
  node.addEventListener('file:offer', onFileOffer)
  node.addEventListener('file:progress', onFileProgress)
  node.addEventListener('file:status', onFileStatus)
  raw.on('close', unsubscribe)
  res.on('close', unsubscribe)
}

/**
 * The request's body as JSON (an empty body is `undefined`); a 400 when it is
 * not JSON, a 413 when too large, a 408 when it has not all come within
 * `timeout` ms.
 */
async function readJson (raw: IncomingMessage, timeout: number): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer)
      raw.off('data', onData)
      raw.off('end', onEnd)
      raw.off('error', done)
      raw.off('close', onClose)
      if (err == null) resolve()
      else reject(err)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      // the rest of a body too large is read and dropped, so that the client is
      // still there to read the answer (up to a point: then the connection goes)
      if (size > MAX_DRAINED_BYTES) {
        raw.destroy()
        done(new HttpError(413, 'PayloadTooLarge', `the request body is over ${MAX_REQUEST_BYTES} bytes`))
      } else if (size <= MAX_REQUEST_BYTES) {
        chunks.push(chunk)
      }
    }
    const onEnd = (): void => { done() }
    const onClose = (): void => { done(new Error('the client closed the connection before the end of the request body')) }
    const timer = setTimeout(() => {
      raw.pause()
      done(new HttpError(408, 'RequestTimeout', `the request body did not all arrive within ${timeout} ms`))
    }, timeout)
    raw.on('data', onData)
    raw.once('end', onEnd)
    raw.once('error', done)
    raw.once('close', onClose)
  })
  if (size > MAX_REQUEST_BYTES) throw new HttpError(413, 'PayloadTooLarge', `the request body is over ${MAX_REQUEST_BYTES} bytes`)
  if (size === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch (err: any) {
    throw new HttpError(400, 'BadRequest', `the request body is not JSON: ${err.message}`)
  }
}
