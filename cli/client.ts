import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { routePath, splitRoute } from '../daemon/api/contract.js'
import { API_FILE } from '../daemon/api/file.js'
import type { AddContactBody, ApiEvent, ApiRoute, ConversationView, ErrorBody, GroupReadMark, IdResponse, InviteResponse, LoginLinkResponse, RemovedContact, RouteAnswer, RouteBody, RouteParams, RouteQuery, SendBody, SendGroupBody, UnblockResult } from '../daemon/api/contract.js'
import type { ApiFile } from '../daemon/api/file.js'
import type { AcceptedRequest, BlockedPeer, ContactInfo, DeletedRequests, HistoryEntry, MessageRequest, NodeStatus, OutboxItem, PeerInfo, ReadMark, RelayStatus } from '../node/types.js'
import type { GroupConversation, GroupInfo, GroupMessage } from '../node/group/types.js'

/** No daemon answers for this data dir. */
export class DaemonNotRunningError extends Error {
  static override name = 'DaemonNotRunningError'
  override name = 'DaemonNotRunningError'
}

/** The daemon answered with an error. */
export class ApiError extends Error {
  static override name = 'ApiError'
  override name = 'ApiError'
  constructor (message: string, readonly status: number, readonly code: string, readonly body: Partial<ErrorBody> | undefined) {
    super(message)
  }
}

/** What `call` puts in a request: the route's path parameters, querystring and body, as the contract types them. */
interface CallOptions<R extends ApiRoute> {
  params: RouteParams<R>
  query?: RouteQuery<R>
  body?: RouteBody<R>
}

/**
 * The CLI's way to the daemon: the URL and token from `<dataDir>/api.json`,
 * and a method per route of the API's contract (daemon/api/contract.ts),
 * returning what the contract says the route answers.
 */
export class ApiClient {
  private constructor (readonly url: string, private readonly token: string) {}

  static async forDataDir (dataDir: string): Promise<ApiClient> {
    const file = join(dataDir, API_FILE)
    let api: ApiFile
    try {
      api = JSON.parse(await readFile(file, 'utf8'))
    } catch (err: any) {
      throw new DaemonNotRunningError(`no parley daemon is running for ${dataDir} (${err.code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file}: ${err.message}`}); start one with \`parley node --data-dir ${dataDir}\``)
    }
    return new ApiClient(api.url, api.token)
  }

  private async fetch (path: string, init: RequestInit = {}): Promise<Response> {
    try {
      return await fetch(`${this.url}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${this.token}`, ...(init.body != null ? { 'content-type': 'application/json' } : {}), ...init.headers }
      })
    } catch (err: any) {
      throw new DaemonNotRunningError(`cannot reach the parley daemon at ${this.url} (${err.cause?.code ?? err.message}); is it running? Start it with \`parley node\``)
    }
  }

  /**
   * Calls a route: its answer and status, or an `ApiError` for an error
   * status (4xx, 5xx) other than the route's own replies (a refused send's 422).
   */
  async call<R extends ApiRoute> (route: R, options: CallOptions<R>): Promise<RouteAnswer<R>> {
    const { method } = splitRoute(route)
    const query = new URLSearchParams()
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) query.set(key, String(value))
    }
    const path = routePath(route, options.params) + (query.size > 0 ? `?${query.toString()}` : '')
    const response = await this.fetch(path, { method, body: options.body === undefined ? undefined : JSON.stringify(options.body) })
    const text = await response.text()
    // the daemon answers what the contract says: the server is type-checked against it
    const parsed = text === '' ? undefined : JSON.parse(text)
    if (response.status >= 400 && response.status !== 422) {
      throw new ApiError(parsed?.message ?? `HTTP ${response.status}`, response.status, parsed?.error ?? 'Error', parsed)
    }
    return { status: response.status, body: parsed } as RouteAnswer<R>
  }

  async id (): Promise<IdResponse> {
    return (await this.call('GET /v1/id', { params: {} })).body
  }

  async status (): Promise<NodeStatus> {
    return (await this.call('GET /v1/status', { params: {} })).body
  }

  async peers (): Promise<PeerInfo[]> {
    return (await this.call('GET /v1/peers', { params: {} })).body
  }

  async outbox (): Promise<OutboxItem[]> {
    return (await this.call('GET /v1/outbox', { params: {} })).body
  }

  /** Cancels a message waiting in the outbox; the message as it now is. */
  async cancel (id: string): Promise<HistoryEntry> {
    return (await this.call('DELETE /v1/messages/:id', { params: { id } })).body
  }

  async invite (): Promise<InviteResponse> {
    return (await this.call('GET /v1/invite', { params: {} })).body
  }

  /** A one-time link that logs a browser into the web app. */
  async loginLink (): Promise<LoginLinkResponse> {
    return (await this.call('POST /v1/login-links', { params: {} })).body
  }

  /**
   * Sends a message. With `wait` (seconds), the daemon waits that long for
   * the ack: 200 with the receipt, 202 when still on its way, 422 when the
   * recipient refused it.
   */
  async send (message: SendBody): Promise<RouteAnswer<'POST /v1/messages'>> {
    return this.call('POST /v1/messages', { params: {}, body: message })
  }

  // ---- groups ----

  async groups (): Promise<GroupInfo[]> {
    return (await this.call('GET /v1/groups', { params: {} })).body
  }

  /** A group by ID or name (a 404 ApiError, code UnknownGroupError, when there is none). */
  async group (group: string): Promise<GroupInfo> {
    return (await this.call('GET /v1/groups/:group', { params: { group } })).body
  }

  /** The groups as an inbox: last message and unread count each. */
  async groupConversations (): Promise<GroupConversation[]> {
    return (await this.call('GET /v1/group-conversations', { params: {} })).body
  }

  /** Marks a group read (a 404 ApiError, code UnknownGroupError, when there is none). */
  async markGroupRead (group: string): Promise<GroupReadMark> {
    return (await this.call('POST /v1/groups/:group/read', { params: { group } })).body
  }

  async createGroup (name: string, members: string[]): Promise<GroupInfo> {
    return (await this.call('POST /v1/groups', { params: {}, body: { name, members } })).body
  }

  async addMember (group: string, peer: string): Promise<GroupInfo> {
    return (await this.call('POST /v1/groups/:group/members', { params: { group }, body: { peer } })).body
  }

  async removeMember (group: string, peer: string): Promise<GroupInfo> {
    return (await this.call('DELETE /v1/groups/:group/members/:peer', { params: { group, peer } })).body
  }

  async leaveGroup (group: string): Promise<GroupInfo> {
    return (await this.call('POST /v1/groups/:group/leave', { params: { group } })).body
  }

  /** Sends to a group: with `wait` (seconds) 200 once each member is delivered, stored or found unreachable; 202 at once without. */
  async sendGroup (group: string, message: SendGroupBody): Promise<RouteAnswer<'POST /v1/groups/:group/messages'>> {
    return this.call('POST /v1/groups/:group/messages', { params: { group }, body: message })
  }

  async groupHistory (group: string, query: RouteQuery<'GET /v1/groups/:group/history'> = {}): Promise<GroupMessage[]> {
    return (await this.call('GET /v1/groups/:group/history', { params: { group }, query })).body
  }

  /** The conversation with a peer (peer ID or contact name), oldest first. */
  async history (peer: string, query: RouteQuery<'GET /v1/history/:peer'> = {}): Promise<HistoryEntry[]> {
    return (await this.call('GET /v1/history/:peer', { params: { peer }, query })).body
  }

  async contacts (): Promise<ContactInfo[]> {
    return (await this.call('GET /v1/contacts', { params: {} })).body
  }

  /** Adds a contact from a peer ID or invite; `replace` repoints a name that is another peer's (else a 409 ApiError, code ContactExistsError). */
  async addContact (name: string, peer: string, options: { replace?: boolean } = {}): Promise<ContactInfo> {
    const body: AddContactBody = { name, peer, ...(options.replace === true ? { replace: true } : {}) }
    return (await this.call('POST /v1/contacts', { params: {}, body })).body
  }

  /** Renames a contact (404 ApiError UnknownContactError; 409 ContactExistsError when the new name is taken). */
  async renameContact (name: string, newName: string): Promise<ContactInfo> {
    return (await this.call('PATCH /v1/contacts/:name', { params: { name }, body: { name: newName } })).body
  }

  /** Removes a contact (a 404 ApiError, code UnknownContactError, when no contact has the name). */
  async removeContact (name: string): Promise<RemovedContact> {
    return (await this.call('DELETE /v1/contacts/:name', { params: { name } })).body
  }

  /** Strangers whose messages wait for a decision. */
  async requests (): Promise<MessageRequest[]> {
    return (await this.call('GET /v1/requests', { params: {} })).body
  }

  /** Accepts a stranger's messages (peer ID or contact name); with `name`, also adds the peer as a contact. */
  async acceptRequest (peer: string, options: { name?: string } = {}): Promise<AcceptedRequest> {
    return (await this.call('POST /v1/requests/:peer/accept', { params: { peer }, body: options.name == null ? {} : { name: options.name } })).body
  }

  /** Declines a message request: its messages are deleted. */
  async declineRequest (peer: string): Promise<DeletedRequests> {
    return (await this.call('DELETE /v1/requests/:peer', { params: { peer } })).body
  }

  async blocked (): Promise<BlockedPeer[]> {
    return (await this.call('GET /v1/blocked', { params: {} })).body
  }

  /** Blocks a peer (peer ID or contact name); its waiting requests are deleted. */
  async block (peer: string): Promise<DeletedRequests> {
    return (await this.call('POST /v1/blocked', { params: {}, body: { peer } })).body
  }

  /** Lifts a block (a 404 ApiError when the peer was not blocked). */
  async unblock (peer: string): Promise<UnblockResult> {
    return (await this.call('DELETE /v1/blocked/:peer', { params: { peer } })).body
  }

  /** The inbox: conversations with unread counts, the latest activity first. */
  async conversations (): Promise<ConversationView[]> {
    return (await this.call('GET /v1/conversations', { params: {} })).body
  }

  /** Marks the conversation with a peer (peer ID or contact name) read, up to the message `upTo` or everything. */
  async markRead (peer: string, options: { upTo?: string } = {}): Promise<ReadMark> {
    return (await this.call('POST /v1/conversations/:peer/read', { params: { peer }, body: options.upTo == null ? {} : { upTo: options.upTo } })).body
  }

  /** Reserves on one more relay now (a relay link or a multiaddr ending in /p2p/<relay id>): its status once the first attempt settled. */
  async addRelay (relay: string): Promise<RelayStatus> {
    return (await this.call('POST /v1/relays', { params: {}, body: { relay } })).body
  }

  /** Stops using a relay (its peer ID or address) now (a 404 ApiError when the node does not use it). */
  async removeRelay (peer: string): Promise<void> {
    await this.call('DELETE /v1/relays/:peer', { params: { peer } })
  }

  /** Server-Sent Events from /v1/events, as `{ event, data }`, until `signal` aborts. */
  async * events (signal?: AbortSignal): AsyncGenerator<ApiEvent> {
    const response = await this.fetch(routePath('GET /v1/events', {}), { signal })
    if (response.body == null || response.status !== 200) {
      throw new ApiError(`the event stream answered HTTP ${response.status}`, response.status, 'Error', undefined)
    }
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true })
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let event = 'message'
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data.push(line.slice(6))
          }
          // the daemon sends the events the contract lists (ApiEvents)
          if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) } as ApiEvent
        }
      }
    } catch (err: any) {
      if (signal?.aborted === true) return
      throw new DaemonNotRunningError(`the event stream from ${this.url} ended (${err.message}); is the daemon still running?`)
    }
  }
}
