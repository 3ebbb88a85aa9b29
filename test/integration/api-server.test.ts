/**
 * The daemon's local API as a server facing hostile or broken clients: a
 * DNS-rebinding browser (Host allow-list), clients that send half a request
 * and stay (timeouts, connection cap), and event-stream subscribers that stop
 * reading while events flood in (bounded backlog, overflow). A real node
 * behind it; the clients are raw sockets and node:http.
 */
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startApiServer } from '../../daemon/api/server.js'
import { nextMessages, useNetwork } from '../fixtures/network.js'
import type { ApiServer, ApiServerInit } from '../../daemon/api/server.js'
import type { ParleyNode } from '../../index.js'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

const TOKEN = 'test-token'

interface RawClient {
  socket: Socket
  /** Everything received so far, as text. */
  received: () => string
  /** Resolves when the socket has closed, with everything received. */
  closed: Promise<string>
}

/** A TCP connection to the API that writes exactly what the test says. */
async function rawClient (port: number): Promise<RawClient> {
  const socket = connect(port, '127.0.0.1')
  let text = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => { text += chunk })
  socket.on('error', () => {})
  const closed = new Promise<string>(resolve => { socket.once('close', () => { resolve(text) }) })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
  return { socket, received: () => text, closed }
}

/** A request with any Host header (fetch cannot set one): status and JSON body. */
async function call (port: number, options: { host?: string, method?: string, path?: string, token?: string | null, body?: unknown }): Promise<{ status: number, body: any }> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body)
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: options.method ?? 'GET',
      path: options.path ?? '/v1/id',
      agent: false,
      headers: {
        host: options.host ?? `127.0.0.1:${port}`,
        ...(options.token === null ? {} : { authorization: `Bearer ${options.token ?? TOKEN}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      }
    }, res => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { text += chunk }).on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** An event-stream subscriber on node:http, its response object on the server, and what it has read. */
interface Subscriber {
  response: IncomingMessage
  /** The server's side of this stream. */
  server: ServerResponse
  /** What it read (with `keep: false`, only until the ready event). */
  text: () => string
  /** Resolves when the stream has ended or broken. */
  done: Promise<string>
}

async function subscribe (api: ApiServer, { keep = true } = {}): Promise<Subscriber> {
  const serverSide = Promise.withResolvers<ServerResponse>()
  const response = Promise.withResolvers<IncomingMessage>()
  const req = httpRequest({ host: '127.0.0.1', port: api.port, path: '/v1/events', agent: false, headers: { authorization: `Bearer ${TOKEN}` } }, response.resolve)
  req.on('error', response.reject)
  req.on('socket', socket => {
    socket.once('connect', () => {
      const onRequest = (raw: IncomingMessage, res: ServerResponse): void => {
        if (raw.socket.remotePort !== socket.localPort) return
        api.server.off('request', onRequest)
        serverSide.resolve(res)
      }
      api.server.on('request', onRequest)
    })
  })
  req.end()
  const res = await response.promise
  let text = ''
  const ready = Promise.withResolvers<void>()
  const done = new Promise<string>(resolve => {
    res.setEncoding('utf8')
    let isReady = false
    res.on('data', (chunk: string) => {
      if (keep || !isReady) text += chunk
      if (!isReady && text.includes('event: ready\n')) {
        isReady = true
        ready.resolve()
      }
    })
    res.on('end', () => { resolve(text) })
    res.on('error', () => { resolve(text) })
    res.on('close', () => { resolve(text) })
  })
  await ready.promise
  return { response: res, server: await serverSide.promise, text: () => text, done }
}

/** A message event's detail with a body of `size` bytes. */
function fakeMessage (node: ParleyNode, i: number, size: number): CustomEvent<any> {
  return new CustomEvent('message', {
    detail: {
      id: `0190f5c8-7d3a-7a8b-8c9d-${String(i).padStart(12, '0')}`,
      from: node.peerId.toString(),
      seq: i,
      body: `${i}:`.padEnd(size, 'x'),
      contentType: 'text/plain',
      sentAt: Date.now(),
      receivedAt: Date.now(),
      path: 'direct'
    }
  })
}

const nextTurn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

describe('the local API against hostile and broken clients', () => {
  const net = useNetwork()

  async function serve (init: ApiServerInit = {}, node?: ParleyNode): Promise<{ node: ParleyNode, api: ApiServer }> {
    node ??= await net.node()
    const api = await startApiServer(node, { token: TOKEN, ...init })
    onTestFinished(async () => { await api.close() })
    return { node, api }
  }

  it('refuses any Host but 127.0.0.1, localhost and [::1] with 403, before the token is checked', async () => {
    const { api } = await serve()
    const { port } = api
    for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'localhost', 'LocalHost', `[::1]:${port}`, '[::1]']) {
      expect(await call(port, { host }), host).toMatchObject({ status: 200 })
      expect(await call(port, { host, token: null }), host).toMatchObject({ status: 401 })
    }
    for (const host of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', '127.0.0.1.nip.io', `127.0.0.2:${port}`, '0.0.0.0', 'localhost:port', `127.0.0.1:${port}@evil.example`]) {
      for (const token of [TOKEN, null]) {
        expect(await call(port, { host, token }), host).toMatchObject({ status: 403, body: { error: 'Forbidden', message: expect.stringContaining('Host') } })
      }
    }
    // the event stream too, and HTTP/1.0 with no Host at all
    expect(await call(port, { host: 'evil.example', path: '/v1/events' })).toMatchObject({ status: 403 })
    const client = await rawClient(port)
    client.socket.write(`GET /v1/id HTTP/1.0\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)
    expect(await client.closed).toMatch(/^HTTP\/1\.1 403 /)
  })

  it('drops a connection that sends half its headers, or nothing, after headersTimeout', async () => {
    const { api } = await serve({ headersTimeout: 300, requestTimeout: 600 })
    const started = Date.now()
    const half = await rawClient(api.port)
    half.socket.write('GET /v1/id HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    const silent = await rawClient(api.port)
    expect(await half.closed).toMatch(/^HTTP\/1\.1 408 /)
    await silent.closed
    // the old default was 60 s (+ up to 30 s before node:http looked)
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(Date.now() - started).toBeLessThan(20_000)
    // the server still serves
    expect(await call(api.port, {})).toMatchObject({ status: 200 })
  })

  it('answers 408 and closes when an authenticated body does not arrive within bodyTimeout', async () => {
    const { api } = await serve({ bodyTimeout: 300 })
    const slow = await rawClient(api.port)
    slow.socket.write(`POST /v1/contacts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":`)
    const answer = await slow.closed
    expect(answer).toMatch(/^HTTP\/1\.1 408 /)
    expect(answer).toMatch(/connection: close/i)
    expect(answer).toContain('"error":"RequestTimeout"')
  })

  it('drops a request whose body trickles past requestTimeout', async () => {
    const { api } = await serve({ headersTimeout: 200, requestTimeout: 400, bodyTimeout: 600_000 })
    const slow = await rawClient(api.port)
    slow.socket.write(`POST /v1/contacts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 100\r\n\r\n{`)
    // a byte now and then: never idle, never done
    const trickle = setInterval(() => { slow.socket.write(' ') }, 50)
    try {
      expect(await slow.closed).toMatch(/^HTTP\/1\.1 408 /)
    } finally {
      clearInterval(trickle)
    }
  })

  it('closes an idle keep-alive connection after keepAliveTimeout', async () => {
    const { api } = await serve({ keepAliveTimeout: 200 })
    const client = await rawClient(api.port)
    client.socket.write(`GET /v1/id HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)
    const answer = await client.closed
    expect(answer).toMatch(/^HTTP\/1\.1 200 /)
    expect(answer).toMatch(/keep-alive: timeout=/i)
  })

  it('keeps an event stream open past requestTimeout: the timeout is for receiving the request', async () => {
    const { node, api } = await serve({ headersTimeout: 200, requestTimeout: 200 })
    const stream = await subscribe(api)
    // a half-sent request that came after the stream began is dropped by the same check
    const half = await rawClient(api.port)
    half.socket.write('GET /v1/id HTTP/1.1\r\n')
    await half.closed
    const after = await rawClient(api.port)
    after.socket.write('GET')
    await after.closed
    node.dispatchEvent(fakeMessage(node, 1, 10))
    await new Promise<void>(resolve => {
      const check = (): void => { if (stream.text().includes('event: message\n')) resolve() }
      stream.response.on('data', check)
      check()
    })
    expect(stream.server.destroyed).toBe(false)
    stream.response.destroy()
  })

  it('caps open connections at maxConnections, and takes new ones once some close', async () => {
    const { api } = await serve({ maxConnections: 2, keepAliveTimeout: 60_000 })
    const serverSockets: Socket[] = []
    api.server.on('connection', (socket: Socket) => { serverSockets.push(socket) })
    const held = [await rawClient(api.port), await rawClient(api.port)]
    for (const client of held) {
      client.socket.write(`GET /v1/id HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)
    }
    // both served and still open (keep-alive)
    await Promise.all(held.map(async client => new Promise<void>(resolve => {
      const check = (): void => { if (client.received().includes('"peerId"')) resolve() }
      client.socket.on('data', check)
      check()
    })))

    const refused = await rawClient(api.port)
    refused.socket.write(`GET /v1/id HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)
    expect(await refused.closed).toBe('')

    const gone = new Promise(resolve => serverSockets[0].once('close', resolve))
    held[0].socket.destroy()
    await gone
    expect(await call(api.port, {})).toMatchObject({ status: 200 })
    held[1].socket.destroy()
  })

  it('drops an event subscriber that stops reading, bounded, while the others keep getting every event', async () => {
    const maxEventBacklog = 256 * 1024
    const { node, api } = await serve({ maxEventBacklog, overflowGrace: 100 })
    const listeners = node.listenerCount('message')
    const stuck = await subscribe(api, { keep: false })
    const healthy = await subscribe(api, { keep: false })
    let received = 0
    let tail = ''
    healthy.response.on('data', (chunk: string) => {
      const text = tail + chunk
      received += text.split('event: message\n').length - 1
      tail = text.slice(-20)
    })
    // the stuck one stops reading: node:http stops reading its socket, and the kernel's buffers fill
    stuck.response.pause()
    expect(node.listenerCount('message')).toBe(listeners + 2)

    const size = 16 * 1024
    let sent = 0
    let sentAtDrop = -1
    let largest = 0
    // in batches, as messages arrive, each batch on a turn of the event loop:
    // on until the stuck one is dropped and 200 more have gone to the healthy one
    while (sentAtDrop < 0 || sent < sentAtDrop + 200) {
      for (let i = 0; i < 8; i++) node.dispatchEvent(fakeMessage(node, sent++, size))
      for (const stream of [stuck, healthy]) largest = Math.max(largest, stream.server.writableLength)
      if (sentAtDrop < 0 && stuck.server.writableEnded) sentAtDrop = sent
      expect(sent, 'the stuck subscriber was never dropped').toBeLessThan(64 * 1024 * 1024 / size)
      await nextTurn()
    }
    // its backlog never went past the bound (plus the last event and the overflow notice)
    expect(largest).toBeLessThanOrEqual(maxEventBacklog + 2 * size)
    expect(healthy.server.writableEnded).toBe(false)

    // the stuck one is closed after its grace, and no longer listens
    if (!stuck.server.destroyed) await new Promise(resolve => stuck.server.once('close', resolve))
    expect(stuck.server.socket?.destroyed ?? true).toBe(true)
    expect(node.listenerCount('message')).toBe(listeners + 1)

    // the healthy one got every event
    node.dispatchEvent(fakeMessage(node, sent++, 10))
    if (received < sent) {
      await new Promise<void>(resolve => {
        const check = (): void => { if (received >= sent) resolve() }
        healthy.response.on('data', check)
      })
    }
    expect(received).toBe(sent)
    healthy.response.destroy()
  })

  it('tells a subscriber that fell behind: a last overflow event, then the end of the stream', async () => {
    const { node, api } = await serve({ maxEventBacklog: 128 * 1024, overflowGrace: 600_000 })
    const slow = await subscribe(api)
    slow.response.pause()
    let sent = 0
    while (!slow.server.writableEnded) {
      for (let i = 0; i < 8; i++) node.dispatchEvent(fakeMessage(node, sent++, 16 * 1024))
      expect(sent).toBeLessThan(4096)
      await nextTurn()
    }
    // it reads again: the backlog, then the notice, then the end
    slow.response.resume()
    const text = await slow.done
    const events = text.split('\n\n').filter(block => block.startsWith('event: '))
    const last = events.at(-1) ?? ''
    expect(last).toMatch(/^event: overflow\ndata: /)
    expect(JSON.parse(last.split('data: ')[1])).toMatchObject({ message: expect.stringContaining('dropped') })
    expect(events.filter(e => e.startsWith('event: message\n')).length).toBeGreaterThan(0)
  })
})

describe('the local API: message requests, blocks, contacts and errors', () => {
  const net = useNetwork()

  it('lists, accepts, declines and blocks a stranger\'s messages; 409 on a taken contact name; SSE marks requests', async () => {
    const alice = await net.node()
    const bob = await net.node()
    const carol = await net.node()
    const api = await startApiServer(bob, { token: TOKEN })
    onTestFinished(async () => { await api.close() })
    const at = async (method: string, path: string, body?: unknown): Promise<{ status: number, body: any }> => call(api.port, { method, path, body })
    for (const stranger of [alice, carol]) await stranger.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })

    const stream = await subscribeEvents(api)
    const arrived = nextMessages(bob, 1)
    await alice.send(bob.peerId, 'hello, you do not know me')
    await arrived
    const event = await stream.next('message')
    expect(event).toMatchObject({ from: alice.peerId.toString(), body: 'hello, you do not know me', request: true })
    stream.close()

    expect(await at('GET', '/v1/requests')).toMatchObject({ status: 200, body: [{ peerId: alice.peerId.toString(), messages: 1, preview: 'hello, you do not know me' }] })
    expect((await at('GET', `/v1/history/${alice.peerId.toString()}`)).body).toEqual([expect.objectContaining({ request: true })])
    expect(await at('GET', '/v1/status')).toMatchObject({ status: 200, body: { requests: 1, blocked: 0, storage: { full: false } } })

    expect(await at('POST', `/v1/requests/${alice.peerId.toString()}/accept`, { name: 'alice' })).toMatchObject({ status: 200, body: { peerId: alice.peerId.toString(), accepted: 1, contact: { name: 'alice' } } })
    expect((await at('GET', '/v1/requests')).body).toEqual([])
    expect(await at('POST', `/v1/requests/${alice.peerId.toString()}/accept`, { colour: 'red' })).toMatchObject({ status: 400 })

    // the name is alice's: refused for another peer without replace
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    expect(await at('POST', '/v1/contacts', { name: 'alice', peer: other })).toMatchObject({ status: 409, body: { error: 'ContactExistsError' } })
    expect(await at('POST', '/v1/contacts', { name: 'alice', peer: other, replace: 'yes' })).toMatchObject({ status: 400 })
    expect(await at('POST', '/v1/contacts', { name: 'alice', peer: other, replace: true })).toMatchObject({ status: 200, body: { name: 'alice', peerId: other } })
    expect(await at('POST', '/v1/contacts', { name: other, peer: alice.peerId.toString() })).toMatchObject({ status: 400, body: { error: 'InvalidContactNameError' } })

    const fromCarol = nextMessages(bob, 1)
    await carol.send(bob.peerId, 'spam')
    await fromCarol
    expect(await at('DELETE', `/v1/requests/${carol.peerId.toString()}`)).toMatchObject({ status: 200, body: { peerId: carol.peerId.toString(), deleted: 1 } })
    expect((await at('GET', '/v1/requests')).body).toEqual([])

    expect(await at('POST', '/v1/blocked', {})).toMatchObject({ status: 400, body: { message: expect.stringContaining('body.peer') } })
    expect(await at('POST', '/v1/blocked', { peer: 'nobody' })).toMatchObject({ status: 400, body: { error: 'InvalidPeerIdError' } })
    expect(await at('POST', '/v1/blocked', { peer: carol.peerId.toString() })).toMatchObject({ status: 200, body: { peerId: carol.peerId.toString() } })
    expect(await at('GET', '/v1/blocked')).toMatchObject({ status: 200, body: [{ peerId: carol.peerId.toString(), since: expect.any(Number) }] })
    const refused = await carol.send(bob.peerId, 'more spam').catch((err: Error) => err)
    expect(refused).toMatchObject({ name: 'MessageRejectedError' })
    expect(await at('DELETE', `/v1/blocked/${carol.peerId.toString()}`)).toMatchObject({ status: 200 })
    expect(await at('DELETE', `/v1/blocked/${carol.peerId.toString()}`)).toMatchObject({ status: 404 })
    expect((await at('GET', '/v1/blocked')).body).toEqual([])
  })

  it('answers 507 when the message store is full', async () => {
    const node = await net.node({ limits: { maxStoreBytes: 1 } })
    const other = await net.node()
    const api = await startApiServer(node, { token: TOKEN })
    onTestFinished(async () => { await api.close() })
    expect(await call(api.port, { method: 'POST', path: '/v1/messages', body: { to: other.peerId.toString(), body: 'hi' } }))
      .toMatchObject({ status: 507, body: { error: 'StorageFullError' } })
    expect(await call(api.port, { path: '/v1/status' })).toMatchObject({ status: 200, body: { storage: { full: true } } })
  })
})

/** A minimal SSE reader over node:http: the next event of a kind. */
async function subscribeEvents (api: ApiServer): Promise<{ next: (event: string) => Promise<any>, close: () => void }> {
  const sub = await subscribe(api)
  let offset = 0
  return {
    async next (event) {
      for (;;) {
        const text = sub.text()
        let end: number
        while ((end = text.indexOf('\n\n', offset)) >= 0) {
          const block = text.slice(offset, end)
          offset = end + 2
          if (block.startsWith(`event: ${event}\n`)) return JSON.parse(block.slice(block.indexOf('data: ') + 6))
        }
        await new Promise(resolve => sub.response.once('data', resolve))
      }
    },
    close () { sub.response.destroy() }
  }
}
