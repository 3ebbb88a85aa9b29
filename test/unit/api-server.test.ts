/**
 * The daemon's API server on its own: a stub node behind it (only what the
 * server's ApiNode interface asks for), plain HTTP in front. What it answers
 * on each route, how it maps the node's errors and bad input to statuses,
 * and its event stream. Timeouts, the connection cap and a subscriber held
 * back by real socket buffers are in test/integration/api-server.test.ts.
 */
import { writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { afterEach, describe, expect, it } from 'vitest'
import { ApiClient, ApiError } from '../../cli/client.js'
import { startApiServer } from '../../daemon/api/server.js'
import { API_FILE } from '../../daemon/api/file.js'
import { ContactExistsError, InvalidPeerIdError, MessageRejectedError, DeliveryTimeoutError, StorageFullError, UnknownContactError } from '../../node/errors.js'
import { MessageCancelledError, MessageNotCancellableError, UnknownMessageError } from '../../node/errors.js'
import { GroupChangeRefusedError, UnknownGroupError } from '../../node/errors.js'
import { encodeRelayLink } from '../../common/relay-link.js'
import { MAX_RELAYS, TooManyRelaysError } from '../../node/network/reservations.js'
import { useTempDirs } from '../fixtures/dirs.js'
import type { GroupQueued } from '../../daemon/api/contract.js'
import type { ApiNode, ApiNodeEvents, ApiServer, ApiServerInit } from '../../daemon/api/server.js'
import type { GroupConversation, GroupInfo, GroupMessage, GroupSendResult } from '../../node/group/types.js'
import { FileStateError, UnknownFileError } from '../../node/files/transfers.js'
import type { FileInfo, SendFileOptions } from '../../node/files/transfers.js'
import type { AcceptedRequest, BlockedPeer, ContactInfo, Conversation, DeletedRequests, HistoryEntry, MessageRequest, NodeStatus, OutboxItem, PeerInfo, ReadMark, Receipt, ReceivedMessage, RelayStatus } from '../../node/types.js'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { IncomingMessage, ServerResponse } from 'node:http'

const TOKEN = 'unit-test-token'
const ME = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
const ALICE = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const MESSAGE_ID = '0190f5c8-7d3a-7a8b-8c9d-000000000001'

const STATUS: NodeStatus = {
  peerId: ME,
  addrs: ['/ip4/127.0.0.1/tcp/4001'],
  relays: [{ relay: '/ip4/127.0.0.1/tcp/4002/p2p/' + ALICE, reserved: true, failures: 0 }],
  reachability: { reachable: true, via: 'relay', relay: '/ip4/127.0.0.1/tcp/4002/p2p/' + ALICE, reasons: [] },
  connections: 1,
  dhtPeers: 0,
  outbox: 0,
  storage: { usedBytes: 10, limitBytes: 100, full: false },
  requests: 0,
  blocked: 0,
  mailboxes: [{ host: ALICE, connected: true, received: 0, fill: { envelopes: 0, bytes: 0, maxEnvelopes: 1000, maxBytes: 16 << 20, expiresAt: 0 } }]
}

const CONVERSATION: Conversation = { peerId: ALICE, name: 'alice', last: { id: MESSAGE_ID, direction: 'in', preview: 'hi', contentType: 'text/plain', at: 2, status: 'received' }, unread: 1, request: false }

const ENTRY: HistoryEntry = { id: MESSAGE_ID, from: ME, to: ALICE, direction: 'out', seq: 1, body: 'hi', contentType: 'text/plain', sentAt: 1, status: 'queued' }

/**
 * A node as the server sees it: each method answers a canned value and
 * records its arguments; a test swaps a method for another answer.
 */
class StubNode extends TypedEventEmitter<ApiNodeEvents> implements ApiNode {
  readonly peerId = { toString: () => ME }
  readonly multiaddrs = [{ toString: () => '/ip4/127.0.0.1/tcp/4001' }]
  readonly calls: Array<[string, ...unknown[]]> = []

  private record (name: string, ...args: unknown[]): void {
    this.calls.push([name, ...args])
  }

  status = (): NodeStatus => STATUS
  peers = (): PeerInfo[] => [{ peerId: ALICE, path: 'direct', transport: 'tcp', remoteAddr: '/ip4/127.0.0.1/tcp/5' }]
  outbox = (): OutboxItem[] => []
  invite = (): string => 'parley:invite'
  queue = (peer: string, body: string, options: { contentType?: string, replyTo?: string }): string => {
    this.record('queue', peer, body, options)
    return MESSAGE_ID
  }

  waitFor = async (id: string, options: { timeout?: number }): Promise<Receipt> => {
    this.record('waitFor', id, options)
    return { id, status: 'delivered', path: 'relayed' }
  }

  getMessage = (id: string): HistoryEntry | undefined => id === MESSAGE_ID ? ENTRY : undefined
  cancel = (id: string): HistoryEntry => {
    this.record('cancel', id)
    if (id !== MESSAGE_ID) throw new UnknownMessageError(`no message sent with id ${id}`)
    return { ...ENTRY, status: 'failed', reason: 'cancelled by the sender' }
  }

  history = (peer: string, options: { limit?: number, before?: number }): HistoryEntry[] => {
    this.record('history', peer, options)
    return [ENTRY]
  }

  contacts = (): ContactInfo[] => [{ name: 'alice', peerId: ALICE, addrs: [] }]
  addContact = async (name: string, peer: string, options: { replace?: boolean }): Promise<ContactInfo> => {
    this.record('addContact', name, peer, options)
    return { name, peerId: peer, addrs: [] }
  }

  removeContact = (name: string): boolean => name === 'alice'
  renameContact = (name: string, newName: string): ContactInfo => {
    this.record('renameContact', name, newName)
    if (name !== 'alice') throw new UnknownContactError(`no contact named "${name}"`)
    if (newName === 'bob') throw new ContactExistsError('the name "bob" is already the contact of someone else')
    return { name: newName, peerId: ALICE, addrs: [] }
  }

  requests = (): MessageRequest[] => []
  acceptRequest = async (peer: string, options: { name?: string }): Promise<AcceptedRequest> => {
    this.record('acceptRequest', peer, options)
    return { peerId: peer, accepted: 2 }
  }

  declineRequest = (peer: string): DeletedRequests => ({ peerId: peer, deleted: 1 })
  blocked = (): BlockedPeer[] => []
  block = (peer: string): DeletedRequests => ({ peerId: peer, deleted: 0 })
  unblock = (peer: string): boolean => peer === ALICE
  conversations = (): Conversation[] => [CONVERSATION]
  markRead = (peer: string, options: { upTo?: string }): ReadMark => {
    this.record('markRead', peer, options)
    return { peerId: peer, unread: options.upTo == null ? 0 : 1 }
  }

  /** Relays it uses; adding past MAX_RELAYS fails as the node does. */
  readonly relays: string[] = []
  addRelay = async (addr: Multiaddr): Promise<RelayStatus> => {
    this.record('addRelay', addr.toString())
    if (!this.relays.includes(addr.toString()) && this.relays.length >= MAX_RELAYS) throw new TooManyRelaysError(`this node keeps ${MAX_RELAYS} relays already`)
    if (!this.relays.includes(addr.toString())) this.relays.push(addr.toString())
    return { relay: addr.toString(), reserved: false, failures: 1, lastError: 'connection refused' }
  }

  removeRelay = async (relay: string): Promise<boolean> => {
    this.record('removeRelay', relay)
    const before = this.relays.length
    this.relays.splice(0, this.relays.length, ...this.relays.filter(r => r !== relay && !r.endsWith(`/p2p/${relay}`)))
    return this.relays.length < before
  }

  groups = (): GroupInfo[] => [GROUP]
  groupConversations = (): GroupConversation[] => [{ groupId: GROUP.id, name: GROUP.name, member: true, last: { id: MESSAGE_ID, from: ALICE, preview: 'hi', contentType: 'text/plain', at: 2 }, unread: 3 }]
  markGroupRead = (group: string): { groupId: string, unread: number } => {
    this.record('markGroupRead', group)
    if (group !== GROUP.id && group !== GROUP.name) throw new UnknownGroupError(`no group "${group}" on this node`)
    return { groupId: GROUP.id, unread: 0 }
  }

  group = (group: string): GroupInfo => {
    if (group !== GROUP.id && group !== GROUP.name) throw new UnknownGroupError(`no group "${group}" on this node`)
    return GROUP
  }

  createGroup = async (name: string, members: string[]): Promise<GroupInfo> => {
    this.record('createGroup', name, members)
    return { ...GROUP, name }
  }

  addMember = async (group: string, peer: string): Promise<GroupInfo> => {
    this.record('addMember', group, peer)
    throw new GroupChangeRefusedError('add is not allowed: only an admin changes the membership')
  }

  removeMember = async (group: string, peer: string): Promise<GroupInfo> => {
    this.record('removeMember', group, peer)
    return this.group(group)
  }

  leaveGroup = async (group: string): Promise<GroupInfo> => {
    this.record('leaveGroup', group)
    return { ...this.group(group), member: false }
  }

  queueGroup = async (group: string, body: string, options: { contentType?: string }): Promise<GroupQueued> => {
    this.record('queueGroup', group, body, options)
    return { groupId: GROUP.id, id: MESSAGE_ID, seq: 1, lamport: 2, carriers: [{ peer: ALICE, id: MESSAGE_ID }] }
  }

  sendGroup = async (group: string, body: string, options: { contentType?: string, timeout?: number }): Promise<GroupSendResult> => {
    this.record('sendGroup', group, body, options)
    return { groupId: GROUP.id, id: MESSAGE_ID, seq: 1, lamport: 2, recipients: [{ peer: ALICE, id: MESSAGE_ID, status: 'delivered', path: 'direct' }] }
  }

  groupHistory = (group: string, options: { limit?: number, before?: number }): GroupMessage[] => {
    this.record('groupHistory', group, options)
    return []
  }

  // files: one offer waiting, FILE_ID
  sendFile = async (peer: string, path: string, options: SendFileOptions): Promise<{ id: string, status: FileInfo['status'] }> => {
    this.record('sendFile', peer, path, options)
    if (path.endsWith('/missing')) throw Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' })
    return { id: FILE_ID, status: 'offering' }
  }

  acceptFile = (id: string): FileInfo => {
    if (id !== FILE_ID) throw new UnknownFileError(`no file ${id}`)
    if (this.fileInfo.status !== 'pending') throw new FileStateError('not pending')
    this.fileInfo = { ...this.fileInfo, status: 'queued' }
    return this.fileInfo
  }

  cancelFile = (id: string): FileInfo => ({ ...this.acceptFile(id), status: 'refused' })
  file = (id: string): FileInfo | undefined => id === FILE_ID ? this.fileInfo : undefined
  files = (options: { direction?: 'in' | 'out', peer?: string, limit?: number }): FileInfo[] => {
    this.record('files', options)
    return [this.fileInfo]
  }

  fileInfo: FileInfo = { id: FILE_ID, peerId: ALICE, direction: 'in', name: 'a.jpg', type: 'image/jpeg', size: 10, sha256: 'a'.repeat(64), status: 'pending', bytes: 0, createdAt: 1, updatedAt: 1 }
}

const GROUP: GroupInfo = { id: 'ab'.repeat(32), name: 'family', members: [ALICE, ME].sort(), admins: [ME], creator: ME, member: true }
const FILE_ID = '01890a5d-ac96-774b-bcce-b302099a8057'

interface Answer {
  status: number
  headers: IncomingMessage['headers']
  body: any
}

/** One request on its own connection, with any Host and body (fetch cannot set Host): its status, headers and JSON. */
async function call (api: ApiServer, method: string, path: string, options: { body?: unknown, raw?: string | Buffer, token?: string | null, host?: string } = {}): Promise<Answer> {
  const payload = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: api.port,
      method,
      path,
      agent: false,
      headers: {
        host: options.host ?? `127.0.0.1:${api.port}`,
        ...(options.token === null ? {} : { authorization: `Bearer ${options.token ?? TOKEN}` }),
        ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) })
      }
    }, res => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { text += chunk }).on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) })
      })
    })
    // a server that answers before reading the whole body may reset the upload
    req.on('error', reject)
    req.end(payload)
  })
}

interface Event { event: string, data: any }

/** A subscriber to /v1/events: the server's side of its stream, and its events one by one. */
interface Subscription {
  server: ServerResponse
  next: () => Promise<Event | undefined>
  close: () => void
}

async function subscribe (api: ApiServer): Promise<Subscription> {
  const serverSide = new Promise<ServerResponse>(resolve => { api.server.once('request', (_raw, res: ServerResponse) => { resolve(res) }) })
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port: api.port, path: '/v1/events', agent: false, headers: { authorization: `Bearer ${TOKEN}` } }, resolve)
      .on('error', reject)
      .end()
  })
  expect(response.statusCode).toBe(200)
  expect(response.headers['content-type']).toBe('text/event-stream')
  response.setEncoding('utf8')
  let buffer = ''
  let ended = false
  const waiting: Array<() => void> = []
  const wake = (): void => { for (const resolve of waiting.splice(0)) resolve() }
  response.on('data', (chunk: string) => { buffer += chunk; wake() })
  response.on('end', () => { ended = true; wake() })
  response.on('close', () => { ended = true; wake() })
  return {
    server: await serverSide,
    async next () {
      for (;;) {
        const end = buffer.indexOf('\n\n')
        if (end >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const event = /^event: (.*)$/m.exec(block)?.[1]
          const data = /^data: (.*)$/m.exec(block)?.[1]
          if (event != null && data != null) return { event, data: JSON.parse(data) }
          continue
        }
        if (ended) return undefined
        await new Promise<void>(resolve => { waiting.push(resolve) })
      }
    },
    close () { response.destroy() }
  }
}

function received (i: number, size: number): ReceivedMessage {
  return { id: MESSAGE_ID, from: ALICE, seq: i, body: `${i}:`.padEnd(size, 'x'), contentType: 'text/plain', sentAt: 1, receivedAt: 2, path: 'direct' }
}

describe('the API server', () => {
  const tempDir = useTempDirs()
  let servers: ApiServer[] = []
  afterEach(async () => {
    const closing = servers
    servers = []
    await Promise.all(closing.map(async api => { await api.close() }))
  })

  async function serve (init: ApiServerInit = {}): Promise<{ node: StubNode, api: ApiServer }> {
    const node = new StubNode()
    // an empty app root: the API's answers here do not depend on whether dist/web is built
    const api = await startApiServer(node, { token: TOKEN, webRoot: await tempDir(), ...init })
    servers.push(api)
    return { node, api }
  }

  it('listens on 127.0.0.1 with the token it was given, or a random one', async () => {
    const { api } = await serve({ port: 0 })
    expect(api.url).toBe(`http://127.0.0.1:${api.port}`)
    expect(api.token).toBe(TOKEN)
    const other = await startApiServer(new StubNode())
    servers.push(other)
    expect(other.token).toMatch(/^[0-9a-f]{64}$/)
    expect(other.port).not.toBe(api.port)
  })

  it('answers each read-only route with what the node says, as JSON', async () => {
    const { node, api } = await serve()
    const get = async (path: string): Promise<Answer> => call(api, 'GET', path)
    expect(await get('/v1/id')).toMatchObject({ status: 200, body: { peerId: ME, addrs: ['/ip4/127.0.0.1/tcp/4001'] } })
    expect((await get('/v1/id')).headers['content-type']).toBe('application/json; charset=utf-8')
    expect(await get('/v1/status')).toMatchObject({ status: 200, body: STATUS })
    expect(await get('/v1/peers')).toMatchObject({ status: 200, body: node.peers() })
    expect(await get('/v1/outbox')).toMatchObject({ status: 200, body: [] })
    expect(await get('/v1/invite')).toMatchObject({ status: 200, body: { invite: 'parley:invite' } })
    expect(await get('/v1/contacts')).toMatchObject({ status: 200, body: node.contacts() })
    expect(await get('/v1/requests')).toMatchObject({ status: 200, body: [] })
    expect(await get('/v1/blocked')).toMatchObject({ status: 200, body: [] })
    expect(await get(`/v1/messages/${MESSAGE_ID}`)).toMatchObject({ status: 200, body: ENTRY })
    expect(await get('/v1/messages/nope')).toMatchObject({ status: 404, body: { error: 'NotFound', message: 'no message with id nope' } })
  })

  it('decodes path parameters and checks the history querystring, numbers included', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'GET', '/v1/history/my%20friend%2Fwork?limit=5&before=10')).toMatchObject({ status: 200, body: [ENTRY] })
    expect(await call(api, 'GET', `/v1/history/${ALICE}`)).toMatchObject({ status: 200 })
    expect(node.calls).toEqual([['history', 'my friend/work', { limit: 5, before: 10 }], ['history', ALICE, {}]])

    for (const [query, problem] of [['limit=0', 'querystring.limit'], ['limit=many', 'querystring.limit'], ['before=-1', 'querystring.before'], ['colour=red', 'querystring: unknown colour']]) {
      expect(await call(api, 'GET', `/v1/history/${ALICE}?${query}`)).toMatchObject({ status: 400, body: { error: 'BadRequest', message: expect.stringContaining(problem) } })
    }
    expect(await call(api, 'GET', '/v1/history/%E0%A4%A')).toMatchObject({ status: 400, body: { error: 'BadRequest', message: expect.stringContaining('not a well-formed path') } })
    expect(node.calls).toHaveLength(2)
  })

  it('queues a message and answers 202 at once, or waits for its ack: 200 with the receipt, 202 on timeout, 422 when refused', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'POST', '/v1/messages', { body: { to: 'alice', body: 'hi', contentType: 'text/markdown', replyTo: MESSAGE_ID } }))
      .toMatchObject({ status: 202, body: { id: MESSAGE_ID, status: 'queued' } })
    expect(node.calls).toEqual([['queue', 'alice', 'hi', { contentType: 'text/markdown', replyTo: MESSAGE_ID }]])

    node.calls.length = 0
    expect(await call(api, 'POST', '/v1/messages', { body: { to: 'alice', body: 'hi', wait: 1.5 } }))
      .toEqual(expect.objectContaining({ status: 200, body: { id: MESSAGE_ID, status: 'delivered', path: 'relayed' } }))
    expect(node.calls[1]).toEqual(['waitFor', MESSAGE_ID, { timeout: 1500 }])

    node.waitFor = async () => { throw new DeliveryTimeoutError('not acknowledged within 1 s') }
    expect(await call(api, 'POST', '/v1/messages', { body: { to: 'alice', body: 'hi', wait: 1 } }))
      .toMatchObject({ status: 202, body: { id: MESSAGE_ID, status: 'queued', message: 'not acknowledged within 1 s' } })

    node.waitFor = async () => { throw new MessageRejectedError('the recipient refused it: BLOCKED', 'BLOCKED') }
    expect(await call(api, 'POST', '/v1/messages', { body: { to: 'alice', body: 'hi', wait: 1 } }))
      .toMatchObject({ status: 422, body: { id: MESSAGE_ID, status: 'failed', error: 'MessageRejectedError', message: 'the recipient refused it: BLOCKED' } })

    node.waitFor = async () => { throw new Error('the store broke') }
    expect(await call(api, 'POST', '/v1/messages', { body: { to: 'alice', body: 'hi', wait: 1 } }))
      .toMatchObject({ status: 500, body: { error: 'Error', message: 'the store broke' } })
  })

  it('serves groups: create, members, messages (202 at once, 200 after waiting), history; 404 unknown, 403 not allowed', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'GET', '/v1/groups')).toMatchObject({ status: 200, body: [GROUP] })
    expect(await call(api, 'POST', '/v1/groups', { body: { name: 'trip', members: ['alice', ALICE] } })).toMatchObject({ status: 200, body: { name: 'trip' } })
    expect(await call(api, 'GET', '/v1/groups/family')).toMatchObject({ status: 200, body: GROUP })
    expect(await call(api, 'GET', '/v1/groups/nope')).toMatchObject({ status: 404, body: { error: 'UnknownGroupError' } })
    expect(await call(api, 'POST', '/v1/groups/family/members', { body: { peer: 'bob' } })).toMatchObject({ status: 403, body: { error: 'GroupChangeRefusedError' } })
    expect(await call(api, 'DELETE', `/v1/groups/family/members/${ALICE}`)).toMatchObject({ status: 200 })
    expect(await call(api, 'POST', '/v1/groups/family/leave')).toMatchObject({ status: 200, body: { member: false } })
    expect(await call(api, 'POST', '/v1/groups/family/messages', { body: { body: 'hi all' } })).toMatchObject({ status: 202, body: { id: MESSAGE_ID, carriers: [{ peer: ALICE }] } })
    expect(await call(api, 'POST', '/v1/groups/family/messages', { body: { body: 'hi all', wait: 2 } })).toMatchObject({ status: 200, body: { recipients: [{ status: 'delivered' }] } })
    expect(await call(api, 'GET', '/v1/groups/family/history?limit=5')).toMatchObject({ status: 200, body: [] })
    expect(await call(api, 'POST', '/v1/groups', { body: { name: 'big', members: Array(100).fill(ALICE) } })).toMatchObject({ status: 400, body: { message: expect.stringContaining('body.members') } })
    expect(node.calls).toEqual([
      ['createGroup', 'trip', ['alice', ALICE]],
      ['addMember', 'family', 'bob'],
      ['removeMember', 'family', ALICE],
      ['leaveGroup', 'family'],
      ['queueGroup', 'family', 'hi all', { contentType: undefined }],
      ['sendGroup', 'family', 'hi all', { contentType: undefined, timeout: 2000 }],
      ['groupHistory', 'family', { limit: 5 }]
    ])
  })

  it('refuses a body that does not fit its route with 400 naming the field, before the node sees it', async () => {
    const { node, api } = await serve()
    const post = async (path: string, options: { body?: unknown, raw?: string }): Promise<Answer> => call(api, 'POST', path, options)
    expect(await post('/v1/messages', { body: { body: 'hi' } })).toMatchObject({ status: 400, body: { error: 'BadRequest', message: expect.stringContaining('body.to') } })
    expect(await post('/v1/messages', { body: { to: 'alice', body: 'hi', wait: 3601 } })).toMatchObject({ status: 400, body: { message: expect.stringContaining('body.wait') } })
    expect(await post('/v1/messages', { body: { to: 'alice', body: 'hi', colour: 'red' } })).toMatchObject({ status: 400, body: { message: 'body: unknown colour' } })
    expect(await post('/v1/messages', { raw: '{"to":' })).toMatchObject({ status: 400, body: { error: 'BadRequest', message: expect.stringContaining('not JSON') } })
    expect(await post('/v1/messages', {})).toMatchObject({ status: 400 })
    expect(await post('/v1/contacts', { body: { name: 'x'.repeat(65), peer: ALICE } })).toMatchObject({ status: 400, body: { message: expect.stringContaining('body.name') } })
    expect(await post('/v1/blocked', { body: {} })).toMatchObject({ status: 400, body: { message: expect.stringContaining('body.peer') } })
    expect(node.calls).toEqual([])

    // accepting needs no body at all
    expect(await post(`/v1/requests/${ALICE}/accept`, {})).toMatchObject({ status: 200, body: { peerId: ALICE, accepted: 2 } })
    expect(await post(`/v1/requests/${ALICE}/accept`, { body: { name: 'alice' } })).toMatchObject({ status: 200 })
    expect(node.calls).toEqual([['acceptRequest', ALICE, { name: undefined }], ['acceptRequest', ALICE, { name: 'alice' }]])
  })

  it('lists the conversations and marks one read, everything or up to a message, the body checked', async () => {
    const { node, api } = await serve()
    // each with its peer's path right now: alice is connected directly, a peer not connected has none
    expect(await call(api, 'GET', '/v1/conversations')).toMatchObject({ status: 200, body: [{ ...CONVERSATION, path: 'direct' }] })
    node.peers = () => []
    expect((await call(api, 'GET', '/v1/conversations')).body).toEqual([{ ...CONVERSATION, path: null }])
    expect(await call(api, 'POST', '/v1/conversations/alice/read')).toMatchObject({ status: 200, body: { peerId: 'alice', unread: 0 } })
    expect(await call(api, 'POST', `/v1/conversations/${ALICE}/read`, { body: { upTo: MESSAGE_ID } })).toMatchObject({ status: 200, body: { peerId: ALICE, unread: 1 } })
    expect(await call(api, 'POST', '/v1/conversations/alice/read', { body: { upTo: 5 } })).toMatchObject({ status: 400, body: { message: expect.stringContaining('body.upTo') } })
    expect(await call(api, 'POST', '/v1/conversations/alice/read', { body: { upTo: 'x'.repeat(65) } })).toMatchObject({ status: 400 })
    expect(await call(api, 'POST', '/v1/conversations/alice/read', { body: { all: true } })).toMatchObject({ status: 400, body: { message: 'body: unknown all' } })
    expect(node.calls).toEqual([['markRead', 'alice', { upTo: undefined }], ['markRead', ALICE, { upTo: MESSAGE_ID }]])
  })

  it('lists the groups as an inbox and marks one read: 404 for a group it does not know', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'GET', '/v1/group-conversations')).toMatchObject({ status: 200, body: node.groupConversations() })
    expect(await call(api, 'POST', `/v1/groups/${GROUP.name}/read`)).toMatchObject({ status: 200, body: { groupId: GROUP.id, unread: 0 } })
    expect(await call(api, 'POST', '/v1/groups/nope/read')).toMatchObject({ status: 404, body: { error: 'UnknownGroupError' } })
    expect(node.calls).toEqual([['markGroupRead', GROUP.name], ['markGroupRead', 'nope']])
  })

  it('renames a contact with PATCH: 200 with it, 404 unknown, 409 the name taken, 400 not a name before the node sees it', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'PATCH', '/v1/contacts/alice', { body: { name: 'Alice B.' } })).toMatchObject({ status: 200, body: { name: 'Alice B.', peerId: ALICE } })
    expect(await call(api, 'PATCH', '/v1/contacts/carol', { body: { name: 'x' } })).toMatchObject({ status: 404, body: { error: 'UnknownContactError' } })
    expect(await call(api, 'PATCH', '/v1/contacts/alice', { body: { name: 'bob' } })).toMatchObject({ status: 409, body: { error: 'ContactExistsError' } })
    const calls = node.calls.length
    for (const body of [{}, { name: '' }, { name: 'x'.repeat(65) }, { name: 'a', peer: ALICE }]) {
      expect(await call(api, 'PATCH', '/v1/contacts/alice', { body }), JSON.stringify(body)).toMatchObject({ status: 400 })
    }
    expect(node.calls.length).toBe(calls)
  })

  it('maps the node\'s errors to statuses, each as {error, message}', async () => {
    const { node, api } = await serve()
    node.addContact = async () => { throw new InvalidPeerIdError('"bob" is not a valid peer ID') }
    expect(await call(api, 'POST', '/v1/contacts', { body: { name: 'bob', peer: 'bob' } })).toMatchObject({ status: 400, body: { error: 'InvalidPeerIdError', message: '"bob" is not a valid peer ID' } })
    node.addContact = async () => { throw new ContactExistsError('the contact "alice" is already someone else') }
    expect(await call(api, 'POST', '/v1/contacts', { body: { name: 'alice', peer: ALICE } })).toMatchObject({ status: 409, body: { error: 'ContactExistsError' } })
    node.queue = () => { throw new StorageFullError('the message store is at its limit') }
    expect(await call(api, 'POST', '/v1/messages', { body: { to: ALICE, body: 'hi' } })).toMatchObject({ status: 507, body: { error: 'StorageFullError' } })
    node.status = () => { throw new TypeError('broken') }
    expect(await call(api, 'GET', '/v1/status')).toMatchObject({ status: 500, body: { error: 'TypeError', message: 'broken' } })

    expect(await call(api, 'DELETE', '/v1/contacts/alice')).toMatchObject({ status: 200, body: { removed: 'alice' } })
    expect(await call(api, 'DELETE', '/v1/contacts/carol')).toMatchObject({ status: 404, body: { error: 'UnknownContactError', message: 'no contact named "carol"' } })
    expect(await call(api, 'DELETE', `/v1/blocked/${ALICE}`)).toMatchObject({ status: 200, body: { unblocked: ALICE } })
    expect(await call(api, 'DELETE', `/v1/blocked/${ME}`)).toMatchObject({ status: 404, body: { error: 'NotFound', message: `${ME} is not blocked` } })
    expect(await call(api, 'DELETE', `/v1/requests/${ALICE}`)).toMatchObject({ status: 200, body: { peerId: ALICE, deleted: 1 } })
    expect(await call(api, 'POST', '/v1/blocked', { body: { peer: ALICE } })).toMatchObject({ status: 200, body: { peerId: ALICE, deleted: 0 } })
  })

  it('cancels a queued message: 200 with it failed, 404 for an id nobody sent, 409 for one not cancellable; a waiting send answers 422', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'DELETE', `/v1/messages/${MESSAGE_ID}`)).toMatchObject({ status: 200, body: { id: MESSAGE_ID, status: 'failed', reason: 'cancelled by the sender' } })
    expect(node.calls).toContainEqual(['cancel', MESSAGE_ID])
    const other = '0190f5c8-7d3a-7a8b-8c9d-000000000002'
    expect(await call(api, 'DELETE', `/v1/messages/${other}`)).toMatchObject({ status: 404, body: { error: 'UnknownMessageError', message: `no message sent with id ${other}` } })
    node.cancel = () => { throw new MessageNotCancellableError(`message ${MESSAGE_ID} is delivered: only a message still waiting in the outbox can be cancelled`, 'delivered') }
    expect(await call(api, 'DELETE', `/v1/messages/${MESSAGE_ID}`)).toMatchObject({ status: 409, body: { error: 'MessageNotCancellableError' } })

    node.waitFor = async () => { throw new MessageCancelledError(`message ${MESSAGE_ID} was cancelled by the sender before it was delivered`) }
    expect(await call(api, 'POST', '/v1/messages', { body: { to: ALICE, body: 'hi', wait: 5 } })).toMatchObject({ status: 422, body: { id: MESSAGE_ID, status: 'failed', error: 'MessageCancelledError' } })

    const dir = await tempDir()
    await writeFile(join(dir, API_FILE), JSON.stringify({ url: api.url, token: TOKEN }))
    const client = await ApiClient.forDataDir(dir)
    await expect(client.cancel(MESSAGE_ID)).rejects.toMatchObject({ name: 'ApiError', status: 409, code: 'MessageNotCancellableError' })
  })

  it('answers 404 for a path it does not serve and 405 for a method a path does not take', async () => {
    const { api } = await serve()
    expect(await call(api, 'GET', '/v1/nothing')).toMatchObject({ status: 404, body: { error: 'NotFound', message: 'no route GET /v1/nothing' } })
    expect(await call(api, 'GET', '/v1/history/')).toMatchObject({ status: 404 })
    expect(await call(api, 'GET', '/')).toMatchObject({ status: 404 })
    expect(await call(api, 'PUT', '/v1/contacts', { body: {} })).toMatchObject({ status: 405, body: { error: 'MethodNotAllowed', message: 'PUT is not allowed on /v1/contacts' } })
    expect(await call(api, 'DELETE', '/v1/status')).toMatchObject({ status: 405 })
    expect(await call(api, 'GET', '/v1/requests/x/accept')).toMatchObject({ status: 405 })
  })

  it('checks the Host before the token, and the token before anything else', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'GET', '/v1/id', { token: null })).toMatchObject({ status: 401, body: { error: 'Unauthorized', message: expect.stringContaining('api.json') } })
    expect(await call(api, 'GET', '/v1/id', { token: TOKEN.replace(/.$/, 'X') })).toMatchObject({ status: 401 })
    expect(await call(api, 'GET', '/v1/id', { token: `${TOKEN}0` })).toMatchObject({ status: 401 })
    expect(await call(api, 'GET', '/v1/nothing', { token: null })).toMatchObject({ status: 401 })
    expect(await call(api, 'POST', '/v1/messages', { token: null, body: { to: ALICE, body: 'hi' } })).toMatchObject({ status: 401 })
    expect(await call(api, 'GET', '/v1/id', { host: 'evil.example', token: null })).toMatchObject({ status: 403, body: { error: 'Forbidden' } })
    expect(await call(api, 'GET', '/v1/id', { host: 'LOCALHOST:1' })).toMatchObject({ status: 200 })
    expect(node.calls).toEqual([])
  })

  it('answers 413 to a body over 1 MiB, and closes the connection, without the node seeing it', async () => {
    const { node, api } = await serve()
    const big = JSON.stringify({ to: ALICE, body: 'x'.repeat(1024 * 1024) })
    const answer = await call(api, 'POST', '/v1/messages', { raw: big })
    expect(answer).toMatchObject({ status: 413, body: { error: 'PayloadTooLarge', message: 'the request body is over 1048576 bytes' } })
    expect(answer.headers.connection).toBe('close')
    expect(node.calls).toEqual([])
  })

  it('streams ready, then the node\'s message, status and path events, and lets go of the node when the client leaves', async () => {
    const { node, api } = await serve()
    const stream = await subscribe(api)
    expect(await stream.next()).toEqual({ event: 'ready', data: { peerId: ME } })
    expect(node.listenerCount('message')).toBe(1)

    node.safeDispatchEvent('message', { detail: received(1, 10) })
    node.safeDispatchEvent('message:status', { detail: { id: MESSAGE_ID, peer: ALICE, status: 'delivered', seq: 1, path: 'direct' } })
    node.safeDispatchEvent('path:change', { detail: { peer: ALICE, path: 'relayed', transport: 'tcp' } })
    node.safeDispatchEvent('path:change', { detail: { peer: ALICE } })
    expect(await stream.next()).toEqual({ event: 'message', data: received(1, 10) })
    expect(await stream.next()).toEqual({ event: 'status', data: { id: MESSAGE_ID, peer: ALICE, status: 'delivered', seq: 1, path: 'direct' } })
    expect(await stream.next()).toEqual({ event: 'path', data: { peer: ALICE, path: 'relayed', transport: 'tcp' } })
    expect(await stream.next()).toEqual({ event: 'path', data: { peer: ALICE } })

    const closed = new Promise(resolve => stream.server.once('close', resolve))
    stream.close()
    await closed
    for (const event of ['message', 'message:status', 'path:change'] as const) expect(node.listenerCount(event)).toBe(0)
  })

  it('streams the node\'s reachability changes', async () => {
    const { node, api } = await serve()
    const stream = await subscribe(api)
    expect(await stream.next()).toEqual({ event: 'ready', data: { peerId: ME } })
    const lanOnly = { reachable: false, via: 'lan only' as const, reasons: ['no public address announced or confirmed'] }
    node.safeDispatchEvent('reachability', { detail: lanOnly })
    expect(await stream.next()).toEqual({ event: 'reachability', data: lanOnly })
    const closed = new Promise(resolve => stream.server.once('close', resolve))
    stream.close()
    await closed
    expect(node.listenerCount('reachability')).toBe(0)
  })

  it('drops a subscriber whose unsent backlog would pass maxEventBacklog: what fitted, a last overflow event, the end', async () => {
    const maxEventBacklog = 8 * 1024
    const { node, api } = await serve({ maxEventBacklog })
    const stream = await subscribe(api)
    expect(await stream.next()).toMatchObject({ event: 'ready' })
    // nothing leaves the server from now on, as if the client had stopped reading
    stream.server.socket?.cork()
    let dispatched = 0
    while (!stream.server.writableEnded) {
      node.safeDispatchEvent('message', { detail: received(dispatched++, 1024) })
      expect(dispatched).toBeLessThan(100)
    }
    // unsubscribed at once: later events are not even formatted for it
    expect(node.listenerCount('message')).toBe(0)

    // ending the response uncorks it: the client reads the backlog, then the notice, then the end
    const events: Event[] = []
    for (let event = await stream.next(); event != null; event = await stream.next()) events.push(event)
    const messages = events.filter(e => e.event === 'message')
    expect(messages.map(e => e.data.seq)).toEqual(Array.from({ length: messages.length }, (_, i) => i))
    expect(messages.length).toBeGreaterThan(0)
    expect(messages.length).toBeLessThan(dispatched)
    expect(JSON.stringify(messages.map(e => e.data)).length).toBeLessThanOrEqual(maxEventBacklog + 1024)
    expect(events.at(-1)).toEqual({ event: 'overflow', data: { message: expect.stringContaining(`over ${maxEventBacklog} bytes behind and was dropped`), backlog: expect.any(Number) } })
    expect(events.at(-1)?.data.backlog).toBeGreaterThan(0)
  })

  it('adds a relay from a multiaddr or a relay link: 200 with its status once the first attempt settled', async () => {
    const { node, api } = await serve()
    const relayAddr = `/ip4/127.0.0.1/tcp/4002/p2p/${ALICE}`
    expect(await call(api, 'POST', '/v1/relays', { body: { relay: `  ${relayAddr}\n` } })).toMatchObject({
      status: 200,
      body: { relay: relayAddr, reserved: false, failures: 1, lastError: 'connection refused' }
    })
    const link = encodeRelayLink(peerIdFromString(ALICE), [multiaddr('/ip4/127.0.0.1/tcp/4003'), multiaddr('/ip4/192.0.2.1/tcp/4003')])
    expect(await call(api, 'POST', '/v1/relays', { body: { relay: link } })).toMatchObject({ status: 200, body: { relay: `/ip4/192.0.2.1/tcp/4003/p2p/${ALICE}` } })
    expect(node.calls).toEqual([['addRelay', relayAddr], ['addRelay', `/ip4/192.0.2.1/tcp/4003/p2p/${ALICE}`]])
  })

  it('refuses a relay that is not one with 400, before the node sees it, and one past the node\'s limit with 409', async () => {
    const { node, api } = await serve()
    const refused = async (body: unknown): Promise<Answer> => call(api, 'POST', '/v1/relays', { body })
    for (const body of [
      { relay: '/ip4/127.0.0.1/tcp/4002' },
      { relay: `/ip4/127.0.0.1/tcp/4002/p2p/${ALICE}/p2p-circuit/p2p/${ME}` },
      { relay: 'not a multiaddr' },
      { relay: '' },
      { relay: 42 },
      { relay: `/dns4/${'a'.repeat(5000)}/tcp/1/p2p/${ALICE}` },
      { relay: `/ip4/127.0.0.1/tcp/4002/p2p/${ALICE}`, extra: true },
      {},
      undefined
    ]) {
      expect((await refused(body)).status, JSON.stringify(body)?.slice(0, 100)).toBe(400)
    }
    expect(await refused({ relay: '/ip4/127.0.0.1/tcp/4002' })).toMatchObject({ body: { error: 'BadRequest', message: expect.stringContaining('body.relay: must be a relay link') } })
    // a damaged link: the server reads it whole
    expect(await refused({ relay: 'parley-relay:e30' })).toMatchObject({ status: 400, body: { error: 'InvalidRelayLinkError' } })
    expect(node.calls).toEqual([])

    for (let i = 0; i < MAX_RELAYS; i++) node.relays.push(`/ip4/127.0.0.1/tcp/${7000 + i}/p2p/${ALICE}`)
    expect(await refused({ relay: `/ip4/127.0.0.1/tcp/4002/p2p/${ME}` })).toMatchObject({ status: 409, body: { error: 'TooManyRelaysError' } })
  })

  it('removes a relay by peer ID or address: 204 without a body, 404 for one the node does not use', async () => {
    const { node, api } = await serve()
    node.relays.push(`/ip4/127.0.0.1/tcp/4002/p2p/${ALICE}`, `/ip4/127.0.0.1/tcp/4003/p2p/${ME}`)
    const removed = await call(api, 'DELETE', `/v1/relays/${ALICE}`)
    expect(removed).toMatchObject({ status: 204, body: undefined })
    expect(removed.headers['content-length']).toBeUndefined()
    expect(await call(api, 'DELETE', `/v1/relays/${encodeURIComponent(`/ip4/127.0.0.1/tcp/4003/p2p/${ME}`)}`)).toMatchObject({ status: 204 })
    expect(await call(api, 'DELETE', `/v1/relays/${ALICE}`)).toMatchObject({ status: 404, body: { error: 'NotFound' } })
    expect(node.relays).toEqual([])
  })

  it('serves the CLI\'s client: the contract\'s routes, answers and events, end to end', async () => {
    const { node, api } = await serve()
    const dataDir = await tempDir()
    await writeFile(join(dataDir, API_FILE), JSON.stringify({ url: api.url, token: api.token, pid: process.pid }))
    const client = await ApiClient.forDataDir(dataDir)

    expect(await client.id()).toEqual({ peerId: ME, addrs: ['/ip4/127.0.0.1/tcp/4001'] })
    expect(await client.status()).toEqual(STATUS)
    expect(await client.history('my friend', { limit: 3 })).toEqual([ENTRY])
    expect(await client.send({ to: ALICE, body: 'hi' })).toEqual({ status: 202, body: { id: MESSAGE_ID, status: 'queued' } })
    expect(await client.addContact('bob', ALICE)).toEqual({ name: 'bob', peerId: ALICE, addrs: [] })
    expect(await client.acceptRequest(ALICE, { name: 'al' })).toEqual({ peerId: ALICE, accepted: 2 })
    expect(node.calls).toEqual([
      ['history', 'my friend', { limit: 3 }],
      ['queue', ALICE, 'hi', {}],
      ['addContact', 'bob', ALICE, {}],
      ['acceptRequest', ALICE, { name: 'al' }]
    ])
    expect(await client.addRelay(`/ip4/127.0.0.1/tcp/4002/p2p/${ALICE}`)).toMatchObject({ relay: `/ip4/127.0.0.1/tcp/4002/p2p/${ALICE}`, reserved: false })
    expect(await client.removeRelay(ALICE)).toBeUndefined()
    expect(await client.removeRelay(ALICE).catch((err: Error) => err)).toMatchObject({ status: 404 })

    const refused = await client.removeContact('carol').catch((err: Error) => err)
    expect(refused).toBeInstanceOf(ApiError)
    expect(refused).toMatchObject({ status: 404, code: 'UnknownContactError', message: 'no contact named "carol"' })

    const controller = new AbortController()
    const events = client.events(controller.signal)
    expect(await events.next()).toEqual({ done: false, value: { event: 'ready', data: { peerId: ME } } })
    node.safeDispatchEvent('message', { detail: received(7, 5) })
    expect(await events.next()).toEqual({ done: false, value: { event: 'message', data: received(7, 5) } })
    controller.abort()
    expect(await events.next()).toEqual({ done: true, value: undefined })
  })

  it('serves the file routes: offer by absolute path, list, accept once, refuse; unreadable files are 400', async () => {
    const { node, api } = await serve()
    expect(await call(api, 'POST', '/v1/files', { body: { to: ALICE, path: '/home/a/photo.jpg', type: 'image/jpeg' } })).toMatchObject({ status: 200, body: { id: FILE_ID, status: 'offering' } })
    expect(node.calls).toContainEqual(['sendFile', ALICE, '/home/a/photo.jpg', { type: 'image/jpeg' }])
    expect(await call(api, 'POST', '/v1/files', { body: { to: ALICE, path: 'relative.jpg' } })).toMatchObject({ status: 400, body: { error: 'BadRequest' } })
    expect(await call(api, 'POST', '/v1/files', { body: { to: ALICE, path: '/nope/missing' } })).toMatchObject({ status: 400, body: { error: 'FileUnreadable' } })
    expect(await call(api, 'GET', '/v1/files?direction=in&limit=5')).toMatchObject({ status: 200, body: [{ id: FILE_ID }] })
    expect(node.calls).toContainEqual(['files', { direction: 'in', limit: 5 }])
    expect(await call(api, 'GET', '/v1/files?direction=sideways')).toMatchObject({ status: 400 })
    expect(await call(api, 'GET', `/v1/files/${FILE_ID}`)).toMatchObject({ status: 200, body: { status: 'pending' } })
    expect(await call(api, 'GET', '/v1/files/nope')).toMatchObject({ status: 404 })
    expect(await call(api, 'POST', `/v1/files/${FILE_ID}/accept`)).toMatchObject({ status: 200, body: { status: 'queued' } })
    expect(await call(api, 'POST', `/v1/files/${FILE_ID}/accept`)).toMatchObject({ status: 409, body: { error: 'FileStateError' } })
    expect(await call(api, 'DELETE', '/v1/files/other')).toMatchObject({ status: 404, body: { error: 'UnknownFileError' } })
  })

  it('streams file events', async () => {
    const { node, api } = await serve()
    const events = await subscribe(api)
    expect((await events.next())?.event).toBe('ready')
    node.dispatchEvent(new CustomEvent('file:offer', { detail: node.fileInfo }))
    node.dispatchEvent(new CustomEvent('file:progress', { detail: { id: FILE_ID, direction: 'in' as const, bytes: 5, size: 10, rate: 100 } }))
    node.dispatchEvent(new CustomEvent('file:status', { detail: { ...node.fileInfo, status: 'complete' as const } }))
    expect(await events.next()).toEqual({ event: 'file-offer', data: node.fileInfo })
    expect(await events.next()).toEqual({ event: 'file-progress', data: { id: FILE_ID, direction: 'in', bytes: 5, size: 10, rate: 100 } })
    expect((await events.next())?.data.status).toBe('complete')
    events.close()
  })
})
