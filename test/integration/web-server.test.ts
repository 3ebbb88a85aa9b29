/**
 * The web app's side of the daemon's server: a real node behind
 * startApiServer, a temporary directory of files as the app, and requests
 * made the way browsers and hostile pages make them (node:http, so that Host,
 * Origin, Cookie and Sec-Fetch-Site are whatever the test says).
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startApiServer } from '../../daemon/api/server.js'
import { SECURITY_HEADERS } from '../../daemon/web/guard.js'
import { MAX_CACHED_FILE } from '../../daemon/web/static.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { ApiServer, ApiServerInit } from '../../daemon/api/server.js'
import type { ParleyNode } from '../../index.js'
import type { IncomingHttpHeaders } from 'node:http'

const TOKEN = 'web-test-token'

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  text: string
  json: () => any
}

interface CallOptions {
  method?: string
  host?: string
  token?: string
  cookie?: string
  origin?: string
  site?: string
  body?: unknown
}

/** One request, exactly as given: the target is sent as is (no URL normalisation). */
async function call (port: number, target: string, options: CallOptions = {}): Promise<Answer> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body)
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: options.method ?? 'GET',
      path: target,
      agent: false,
      headers: {
        host: options.host ?? `127.0.0.1:${port}`,
        ...(options.token == null ? {} : { authorization: `Bearer ${options.token}` }),
        ...(options.cookie == null ? {} : { cookie: options.cookie }),
        ...(options.origin == null ? {} : { origin: options.origin }),
        ...(options.site == null ? {} : { 'sec-fetch-site': options.site }),
        ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      }
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => { chunks.push(chunk) }).on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** `/v1/events` as the app's EventSource reads it (with the session cookie): `next` resolves with the first event of a name that `match` accepts. */
async function eventStream (port: number, cookie: string): Promise<{ next: (event: string, match: (data: any) => boolean) => Promise<any>, close: () => void }> {
  const seen: Array<{ event: string, data: any }> = []
  const waiters = new Set<() => void>()
  let buffer = ''
  const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: '/v1/events', agent: false, headers: { cookie, 'sec-fetch-site': 'same-origin' } }, resolve).on('error', reject).end()
  })
  expect(res.statusCode).toBe(200)
  res.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk
    let end: number
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const event = block.match(/^event: (.*)$/m)?.[1]
      const data = block.match(/^data: (.*)$/m)?.[1]
      if (event != null && data != null) seen.push({ event, data: JSON.parse(data) })
    }
    for (const wake of waiters) wake()
  })
  await new Promise<void>(resolve => {
    const wake = (): void => { if (seen.some(e => e.event === 'ready')) { waiters.delete(wake); resolve() } }
    waiters.add(wake)
  })
  return {
    next: async (event, match) => new Promise(resolve => {
      const wake = (): void => {
        const found = seen.find(e => e.event === event && match(e.data))
        if (found != null) {
          waiters.delete(wake)
          resolve(found.data)
        }
      }
      waiters.add(wake)
      wake()
    }),
    close: () => { res.destroy() }
  }
}

const INDEX = '<!doctype html><title>parley</title><script type="module" src="/assets/app-1234.js"></script>'
const SCRIPT = 'console.log("parley")'

describe('the web app on the API port', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()

  /** A web root with index.html, a small script and a large file, and a secret next to (outside) it. */
  async function webRoot (): Promise<{ root: string, outside: string }> {
    const dir = await tempDir()
    const root = join(dir, 'web')
    await mkdir(join(root, 'assets'), { recursive: true })
    await writeFile(join(root, 'index.html'), INDEX)
    await writeFile(join(root, 'assets', 'app-1234.js'), SCRIPT)
    await writeFile(join(root, 'assets', 'big.wasm'), Buffer.alloc(MAX_CACHED_FILE * 3, 7))
    await writeFile(join(dir, 'secret.txt'), 'not for the browser')
    return { root, outside: join(dir, 'secret.txt') }
  }

  async function serve (init: ApiServerInit = {}): Promise<{ api: ApiServer, node: ParleyNode, root: string, outside: string }> {
    const { root, outside } = await webRoot()
    const node = await net.node()
    const api = await startApiServer(node, { token: TOKEN, webRoot: root, ...init })
    onTestFinished(async () => { await api.close() })
    return { api, node, root, outside }
  }

  /** Logs in as a browser does: a link from the token, then its GET; the session cookie. */
  async function login (api: ApiServer): Promise<string> {
    const link = await call(api.port, '/v1/login-links', { method: 'POST', token: TOKEN })
    expect(link.status).toBe(200)
    const url = new URL(link.json().url)
    const opened = await call(api.port, url.pathname + url.search)
    expect(opened.status).toBe(303)
    const cookie = String(opened.headers['set-cookie']?.[0]).split(';')[0]
    expect(cookie).toMatch(/^parley_session=[A-Za-z0-9_-]{43}$/)
    return cookie
  }

  it('serves index.html at /, the assets with their types, and 404 for anything else', async () => {
    const { api } = await serve()
    const index = await call(api.port, '/')
    expect(index.status).toBe(200)
    expect(index.text).toBe(INDEX)
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(index.headers['cache-control']).toBe('no-cache')
    const script = await call(api.port, '/assets/app-1234.js')
    expect(script.text).toBe(SCRIPT)
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8')
    expect(script.headers['cache-control']).toContain('immutable')
    // twice: the second from memory, the same bytes
    expect((await call(api.port, '/assets/app-1234.js')).text).toBe(SCRIPT)
    const big = await call(api.port, '/assets/big.wasm')
    expect(big.status).toBe(200)
    expect(Number(big.headers['content-length'])).toBe(MAX_CACHED_FILE * 3)
    expect(big.text.length).toBe(MAX_CACHED_FILE * 3)
    const head = await call(api.port, '/assets/app-1234.js', { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.text).toBe('')
    for (const missing of ['/c/alice', '/index.htm', '/assets/', '/assets', '/v1']) {
      expect((await call(api.port, missing)).status, missing).toBe(404)
    }
    expect((await call(api.port, '/index.html', { method: 'POST' })).status).toBe(405)
  })

  it('sends the security headers on every answer: files, login, API, errors, refusals', async () => {
    const { api } = await serve()
    const cookie = await login(api)
    const answers = await Promise.all([
      call(api.port, '/'),
      call(api.port, '/nothing-here'),
      call(api.port, '/login?token=wrong'),
      call(api.port, '/v1/id', { token: TOKEN }),
      call(api.port, '/v1/id', { cookie }),
      call(api.port, '/v1/id'),
      call(api.port, '/', { host: 'evil.example:80' })
    ])
    for (const answer of answers) {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(answer.headers[name], `${answer.status} ${name}`).toBe(value)
    }
  })

  it('logs a browser in with a one-time link: cookie HttpOnly, SameSite=Strict, Path=/, 303 to /; a second use is refused', async () => {
    const { api } = await serve()
    const link = await call(api.port, '/v1/login-links', { method: 'POST', token: TOKEN })
    const { url, expiresAt } = link.json()
    expect(url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${api.port}/login\\?token=[A-Za-z0-9_-]{43}$`))
    // 43 base64url characters: 256 bits
    expect(Buffer.from(new URL(url).searchParams.get('token') ?? '', 'base64url')).toHaveLength(32)
    expect(expiresAt).toBeGreaterThan(Date.now())
    const target = new URL(url).pathname + new URL(url).search
    // a HEAD does not spend it
    expect((await call(api.port, target, { method: 'HEAD' })).status).toBe(405)
    const first = await call(api.port, target)
    expect(first.status).toBe(303)
    expect(first.headers.location).toBe('/')
    expect(first.headers['cache-control']).toBe('no-store')
    const setCookie = first.headers['set-cookie'] ?? []
    expect(setCookie).toHaveLength(1)
    const attributes = setCookie[0].split(';').map(part => part.trim())
    expect(attributes.slice(1).sort()).toEqual(['HttpOnly', 'Path=/', 'SameSite=Strict'])
    const second = await call(api.port, target)
    expect(second.status).toBe(401)
    expect(second.headers['set-cookie']).toBeUndefined()
    expect(second.text).toContain('parley open')
    expect(second.headers['content-type']).toBe('text/html; charset=utf-8')
    // the session opens the API
    const id = await call(api.port, '/v1/id', { cookie: attributes[0] })
    expect(id.status).toBe(200)
    expect(id.json().peerId).toMatch(/^12D3KooW/)
  })

  it('refuses an expired link, a made-up one and none', async () => {
    const clock = new FakeClock(Date.now())
    const { api } = await serve({ clock })
    const { url } = (await call(api.port, '/v1/login-links', { method: 'POST', token: TOKEN })).json()
    clock.advance(2 * 60_000)
    expect((await call(api.port, new URL(url).pathname + new URL(url).search)).status).toBe(401)
    expect((await call(api.port, '/login?token=' + 'A'.repeat(43))).status).toBe(401)
    expect((await call(api.port, '/login')).status).toBe(401)
  })

  it('gives login links for the bearer token only, never for a session', async () => {
    const { api } = await serve()
    const cookie = await login(api)
    const origin = `http://127.0.0.1:${api.port}`
    const refused = await call(api.port, '/v1/login-links', { method: 'POST', cookie, origin, site: 'same-origin' })
    expect(refused.status).toBe(403)
    expect(refused.json().error).toBe('Forbidden')
    expect((await call(api.port, '/v1/login-links', { method: 'POST' })).status).toBe(401)
  })

  it('keeps at most maxSessions sessions, the least recently used going first, and maxLinks links', async () => {
    const { api } = await serve({ logins: { maxSessions: 2, maxLinks: 2 } })
    const first = await login(api)
    const second = await login(api)
    // first used again: second is now the oldest
    expect((await call(api.port, '/v1/id', { cookie: first })).status).toBe(200)
    const third = await login(api)
    expect((await call(api.port, '/v1/id', { cookie: second })).status).toBe(401)
    expect((await call(api.port, '/v1/id', { cookie: first })).status).toBe(200)
    expect((await call(api.port, '/v1/id', { cookie: third })).status).toBe(200)
    const links = []
    for (let i = 0; i < 3; i++) links.push(new URL((await call(api.port, '/v1/login-links', { method: 'POST', token: TOKEN })).json().url))
    expect((await call(api.port, links[0].pathname + links[0].search)).status).toBe(401)
    expect((await call(api.port, links[2].pathname + links[2].search)).status).toBe(303)
  })

  it('refuses a foreign Host on every path: /, /login, assets, /v1', async () => {
    const { api } = await serve()
    const { url } = (await call(api.port, '/v1/login-links', { method: 'POST', token: TOKEN })).json()
    const login = new URL(url).pathname + new URL(url).search
    for (const host of ['evil.example', `evil.example:${api.port}`, '127.0.0.1.evil.example', 'localhost.', '127.0.0.2', '[::2]']) {
      for (const target of ['/', '/index.html', '/assets/app-1234.js', login, '/v1/id']) {
        const answer = await call(api.port, target, { host, token: TOKEN })
        expect(answer.status, `${host} ${target}`).toBe(403)
        expect(answer.json().error).toBe('Forbidden')
        expect(answer.text).not.toContain('parley</title>')
      }
    }
    // no Host at all (HTTP/1.0 may leave it out)
    const socket = connect(api.port, '127.0.0.1')
    let raw = ''
    socket.setEncoding('utf8').on('data', (chunk: string) => { raw += chunk })
    await new Promise(resolve => { socket.once('close', resolve).end('GET / HTTP/1.0\r\n\r\n') })
    expect(raw).toMatch(/^HTTP\/1\.1 403 /)
    // the refused link was not spent
    expect((await call(api.port, login, { host: `localhost:${api.port}` })).status).toBe(303)
  })

  it('refuses a state-changing request with the session cookie from a foreign origin, without Origin, or cross-site; the bearer token needs no Origin', async () => {
    const { api } = await serve()
    const cookie = await login(api)
    const own = `http://127.0.0.1:${api.port}`
    const body = { name: 'bob', peer: '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK' }
    const refusals: CallOptions[] = [
      { method: 'POST', cookie, origin: 'http://evil.example', body },
      { method: 'POST', cookie, origin: `http://127.0.0.1:${api.port + 1}`, body },
      { method: 'POST', cookie, origin: `https://127.0.0.1:${api.port}`, body },
      { method: 'POST', cookie, origin: 'null', body },
      { method: 'POST', cookie, body },
      { method: 'POST', cookie, origin: own, site: 'cross-site', body },
      { method: 'POST', cookie, origin: own, site: 'same-site', body }
    ]
    for (const options of refusals) {
      const answer = await call(api.port, '/v1/contacts', options)
      expect(answer.status, JSON.stringify({ origin: options.origin, site: options.site })).toBe(403)
      expect(answer.json().error).toBe('Forbidden')
    }
    for (const options of [{ method: 'DELETE', cookie }, { method: 'DELETE', cookie, origin: 'http://evil.example' }, { method: 'DELETE', cookie, origin: own, site: 'cross-site' }]) {
      expect((await call(api.port, '/v1/contacts/bob', options)).status).toBe(403)
    }
    // a GET the browser says another site made is refused too; one from the app is not
    expect((await call(api.port, '/v1/contacts', { cookie, site: 'cross-site' })).status).toBe(403)
    expect((await call(api.port, '/v1/contacts', { cookie, site: 'same-origin' })).status).toBe(200)
    // nothing was added by the refused ones
    expect((await call(api.port, '/v1/contacts', { token: TOKEN })).json()).toEqual([])
    // the app itself: its own origin (any loopback name the browser used, with its port)
    expect((await call(api.port, '/v1/contacts', { method: 'POST', cookie, origin: own, site: 'same-origin', body })).status).toBe(200)
    expect((await call(api.port, '/v1/contacts/bob', { method: 'DELETE', cookie, host: 'localhost:9000', origin: 'http://localhost:9000' })).status).toBe(200)
    // scripts: the bearer token and no Origin at all
    expect((await call(api.port, '/v1/contacts', { method: 'POST', token: TOKEN, body })).status).toBe(200)
    expect((await call(api.port, '/v1/contacts/bob', { method: 'DELETE', token: TOKEN })).status).toBe(200)
  })

  it('streams events to the session cookie, so that EventSource works', async () => {
    const { api } = await serve()
    const cookie = await login(api)
    const text = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: api.port, path: '/v1/events', agent: false, headers: { cookie, 'sec-fetch-site': 'same-origin' } }, res => {
        expect(res.statusCode).toBe(200)
        let text = ''
        res.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk
          if (text.includes('event: ready\n')) {
            res.destroy()
            resolve(text)
          }
        })
      })
      req.on('error', reject)
      req.end()
    })
    expect(text).toContain('event: ready')
  })

  it('serves nothing outside the root: dot segments, encoded separators and dots, backslashes, symlinks out', async () => {
    const { api, root, outside } = await serve()
    await symlink(outside, join(root, 'assets', 'link-out.txt'))
    await symlink(join(root, '..'), join(root, 'up'))
    await symlink(join(root, 'index.html'), join(root, 'assets', 'link-in.html'))
    const attacks = [
      '/../secret.txt',
      '/assets/../../secret.txt',
      '/..%2fsecret.txt',
      '/..%2f..%2fsecret.txt',
      '/%2e%2e/secret.txt',
      '/%2E%2E%2Fsecret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt',
      '/..\\secret.txt',
      '/..%5csecret.txt',
      '/assets\\..\\..\\secret.txt',
      '/%252e%252e/secret.txt',
      '/assets/link-out.txt',
      '/up/secret.txt',
      '/.%2e/secret.txt',
      '/secret.txt%00.html',
      '/%ff',
      outside
    ]
    for (const target of attacks) {
      const answer = await call(api.port, target)
      expect(answer.status, target).toBe(404)
      expect(answer.text).not.toContain('not for the browser')
    }
    // a link that stays inside is a file like any other
    expect((await call(api.port, '/assets/link-in.html')).text).toBe(INDEX)
  })

  it('gives the app what it needs: a contact added from an invite, renamed, and each conversation\'s path right now', async () => {
    const { api, node } = await serve()
    const bob = await net.node()
    const cookie = await login(api)
    const own = { cookie, origin: `http://127.0.0.1:${api.port}`, site: 'same-origin' }
    const added = await call(api.port, '/v1/contacts', { method: 'POST', ...own, body: { name: 'bob', peer: bob.invite() } })
    expect(added.status).toBe(200)
    expect(added.json()).toMatchObject({ name: 'bob', peerId: bob.peerId.toString() })
    const renamed = await call(api.port, '/v1/contacts/bob', { method: 'PATCH', ...own, body: { name: 'Bob B.' } })
    expect(renamed.status).toBe(200)
    expect(renamed.json()).toEqual({ name: 'Bob B.', peerId: bob.peerId.toString(), addrs: added.json().addrs })
    expect((await call(api.port, '/v1/contacts', own)).json()).toMatchObject([{ name: 'Bob B.', peerId: bob.peerId.toString() }])
    expect((await call(api.port, '/v1/contacts/bob', { method: 'PATCH', ...own, body: { name: 'x' } })).status).toBe(404)
    // a rename is state-changing: from another origin it is refused, and the name stays
    expect((await call(api.port, '/v1/contacts/Bob%20B.', { method: 'PATCH', cookie, origin: 'http://evil.example', body: { name: 'mallory' } })).status).toBe(403)

    const sent = await call(api.port, '/v1/messages', { method: 'POST', ...own, body: { to: 'Bob B.', body: 'hello', wait: 60 } })
    expect(sent.status).toBe(200)
    const conversations = (await call(api.port, '/v1/conversations', own)).json()
    expect(conversations).toMatchObject([{ peerId: bob.peerId.toString(), name: 'Bob B.', path: 'direct' }])
    await bob.stop()
    await until(async () => (await call(api.port, '/v1/conversations', own)).json()[0].path === null, { on: [node, 'path:change'], what: 'the conversation with bob to show no path once he stopped' })
  })

  it('lists groups as an inbox: the last message, others\' messages unread until marked read', async () => {
    const { api, node: alice } = await serve()
    const bob = await net.node()
    await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
    await bob.libp2p.peerStore.merge(alice.peerId, { multiaddrs: alice.multiaddrs })
    await alice.addContact('bob', bob.peerId.toString())
    const cookie = await login(api)
    const own = { cookie, origin: `http://127.0.0.1:${api.port}`, site: 'same-origin' }
    const inbox = async (): Promise<any[]> => (await call(api.port, '/v1/group-conversations', own)).json()
    const group = await bob.createGroup('trip', [alice.peerId.toString()])
    await until(() => alice.groups().length === 1, { on: [alice, 'group:change'], what: 'alice to be in bob\'s group' })
    expect(await inbox()).toEqual([{ groupId: group.id, name: 'trip', member: true, unread: 0 }])

    let arrived = 0
    alice.addEventListener('group:message', () => { arrived++ })
    await bob.sendGroup('trip', 'first')
    await bob.sendGroup('trip', 'second')
    await until(() => arrived === 2, { on: [alice, 'group:message'], what: 'bob\'s two messages at alice' })
    // her own message is the last one, but not unread; and the page hears when bob has it
    const events = await eventStream(api.port, cookie)
    const sent = await call(api.port, '/v1/groups/trip/messages', { method: 'POST', ...own, body: { body: 'mine' } })
    expect(sent.status).toBe(202)
    const status = await events.next('group-status', data => data.status === 'delivered')
    expect(status).toMatchObject({ groupId: group.id, id: sent.json().id, peer: bob.peerId.toString(), carrier: sent.json().carriers[0].id, status: 'delivered' })
    events.close()
    expect(await inbox()).toMatchObject([{ groupId: group.id, unread: 2, last: { from: alice.peerId.toString(), preview: 'mine' } }])

    expect((await call(api.port, '/v1/groups/trip/read', { method: 'POST', cookie, origin: 'http://evil.example' })).status).toBe(403)
    expect((await inbox())[0].unread).toBe(2)
    const marked = await call(api.port, '/v1/groups/trip/read', { method: 'POST', ...own })
    expect(marked.status).toBe(200)
    expect(marked.json()).toEqual({ groupId: group.id, unread: 0 })
    await bob.sendGroup('trip', 'third')
    await until(() => arrived === 3, { on: [alice, 'group:message'], what: 'bob\'s third message at alice' })
    expect(await inbox()).toMatchObject([{ unread: 1, last: { from: bob.peerId.toString(), preview: 'third' } }])
    expect((await call(api.port, '/v1/groups/nope/read', { method: 'POST', ...own })).status).toBe(404)
  })

  it('answers 404 with a hint when the app is not built, and the API still works', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'parley-noweb-'))
    onTestFinished(async () => { await rm(dir, { recursive: true, force: true }) })
    const node = await net.node()
    const api = await startApiServer(node, { token: TOKEN, webRoot: join(dir, 'missing') })
    onTestFinished(async () => { await api.close() })
    const answer = await call(api.port, '/')
    expect(answer.status).toBe(404)
    expect(answer.json().message).toContain('npm run build')
    expect((await call(api.port, '/v1/id', { token: TOKEN })).status).toBe(200)
  })
})
