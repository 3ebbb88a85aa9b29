import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from '../../common/node-http.js'
import { z } from 'zod'
import type { ParleyNode } from '../node.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** Errors from the node that mean "your request was wrong": 400 with the reason. */
const BAD_REQUEST = new Set([
  'InvalidPeerIdError', 'EmptyMessageError', 'MessageTooLargeError', 'InvalidMessageError',
  'UnknownContactError', 'InvalidInviteError', 'InvalidContactNameError'
])

/** Largest request body read, as JSON (a message body is at most 64 KiB of UTF-8). */
const MAX_REQUEST_BYTES = 1024 * 1024

export interface ApiServerInit {
  /**
   * Port on 127.0.0.1; 0 picks a free one.
   *
   * @default 0
   */
  port?: number

  /** Bearer token; a random one is made when omitted. */
  token?: string
}

export interface ApiServer {
  url: string
  token: string
  port: number
  close(): Promise<void>
}

/** An answer other than 200 with the handler's result. */
class Reply {
  constructor (readonly status: number, readonly body: unknown) {}
}

/** A request the API refuses: `status` with `{ error, message }`. */
class HttpError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

const sendSchema = z.strictObject({
  to: z.string().min(1),
  body: z.string(),
  contentType: z.string().optional(),
  replyTo: z.string().optional(),
  // seconds to wait for the ack
  wait: z.number().min(0).max(3600).optional()
})

const historyQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(10_000).optional(),
  before: z.coerce.number().int().min(0).optional()
})

const contactSchema = z.strictObject({
  name: z.string().min(1).max(64),
  // peer ID or invite
  peer: z.string().min(1)
})

/** Validates `value` (the request's `where`: body or querystring), or a 400 saying what is wrong. */
function parse<T> (schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issues = result.error.issues.map(issue => {
    const path = [where, ...issue.path].join('.')
    return issue.code === 'unrecognized_keys' ? `${path}: unknown ${issue.keys.join(', ')}` : `${path}: ${issue.message}`
  })
  throw new HttpError(400, 'BadRequest', issues.join('; '))
}

interface Request {
  params: Record<string, string>
  query: Record<string, string>
  body: unknown
  raw: IncomingMessage
  res: ServerResponse
}

/** Handlers answer with a JSON result (200), a `Reply`, or STREAMING once they own the response. */
const STREAMING = Symbol('streaming')
type Handler = (request: Request) => unknown

interface Route {
  method: string
  segments: string[]
  handler: Handler
}

/**
 * The daemon's local API: JSON over HTTP on 127.0.0.1 only, every request
 * carrying the bearer token that the daemon writes to its data dir. The CLI
 * talks to the node through this and nothing else.
 */
export async function startApiServer (node: ParleyNode, init: ApiServerInit = {}): Promise<ApiServer> {
  const token = init.token ?? randomBytes(32).toString('hex')
  const expected = Buffer.from(`Bearer ${token}`)
  const routes: Route[] = []
  const route = (method: string, path: string, handler: Handler): void => {
    routes.push({ method, segments: path.split('/').slice(1), handler })
  }

  route('GET', '/v1/id', () => ({ peerId: node.peerId.toString(), addrs: node.multiaddrs.map(a => a.toString()) }))
  route('GET', '/v1/status', () => node.status())
  route('GET', '/v1/peers', () => node.peers())
  route('GET', '/v1/outbox', () => node.outbox())
  route('GET', '/v1/invite', () => ({ invite: node.invite() }))

  route('POST', '/v1/messages', async ({ body }) => {
    const { to, body: text, contentType, replyTo, wait } = parse(sendSchema, body, 'body')
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
      if (err.name === 'MessageRejectedError') {
        return new Reply(422, { id, status: 'failed', error: err.name, message: err.message })
      }
      throw err
    }
  })

  route('GET', '/v1/messages/:id', ({ params }) => {
    const message = node.getMessage(params.id)
    if (message == null) throw new HttpError(404, 'NotFound', `no message with id ${params.id}`)
    return message
  })

  route('GET', '/v1/history/:peer', ({ params, query }) => node.history(params.peer, parse(historyQuery, query, 'querystring')))

  route('GET', '/v1/contacts', () => node.contacts())

  route('POST', '/v1/contacts', ({ body }) => {
    const { name, peer } = parse(contactSchema, body, 'body')
    return node.addContact(name, peer)
  })

  route('DELETE', '/v1/contacts/:name', ({ params }) => {
    if (!node.removeContact(params.name)) {
      throw new HttpError(404, 'UnknownContactError', `no contact named "${params.name}"`)
    }
    return { removed: params.name }
  })

  // live events as Server-Sent Events: message, status, path
  route('GET', '/v1/events', ({ raw, res }) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    // a first event, so a client knows the stream is live before anything happens
    res.write(`event: ready\ndata: ${JSON.stringify({ peerId: node.peerId.toString() })}\n\n`)
    const write = (event: string) => (evt: CustomEvent<unknown>) => {
      res.write(`event: ${event}\ndata: ${JSON.stringify(evt.detail)}\n\n`)
    }
    const onMessage = write('message')
    const onStatus = write('status')
    const onPath = write('path')
    node.addEventListener('message', onMessage)
    node.addEventListener('message:status', onStatus)
    node.addEventListener('path:change', onPath)
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000)
    raw.on('close', () => {
      clearInterval(keepAlive)
      node.removeEventListener('message', onMessage)
      node.removeEventListener('message:status', onStatus)
      node.removeEventListener('path:change', onPath)
    })
    return STREAMING
  })

  const server = createServer((raw, res) => {
    handle(raw, res).catch((err: any) => {
      // the answer could not be written (the client went away): nothing more to do
      res.destroy(err)
    })
  })

  async function handle (raw: IncomingMessage, res: ServerResponse): Promise<void> {
    let status = 200
    let result: unknown
    try {
      const given = Buffer.from(raw.headers.authorization ?? '')
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new HttpError(401, 'Unauthorized', 'missing or wrong bearer token; the CLI reads it from api.json in the data dir')
      }
      const url = new URL(raw.url ?? '/', 'http://127.0.0.1')
      const found = match(raw.method ?? 'GET', url.pathname)
      const body = raw.method === 'POST' ? await readJson(raw) : undefined
      result = await found.route.handler({ params: found.params, query: Object.fromEntries(url.searchParams), body, raw, res })
      if (result === STREAMING) return
      if (result instanceof Reply) {
        status = result.status
        result = result.body
      }
    } catch (err: any) {
      if (err instanceof HttpError) {
        status = err.status
        result = { error: err.code, message: err.message }
      } else if (BAD_REQUEST.has(err.name)) {
        status = 400
        result = { error: err.name, message: err.message }
      } else {
        status = 500
        result = { error: err.name ?? 'Error', message: err.message }
      }
    }
    const json = JSON.stringify(result ?? null)
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) })
    res.end(json)
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
  const address = server.address()
  const port = typeof address === 'object' && address != null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    port,
    close: async () => {
      const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
      // event streams stay open: closing must not wait for them
      server.closeAllConnections()
      await closed
    }
  }
}

/** The request's body as JSON (an empty body is `undefined`); a 400 when it is not JSON, a 413 when too large. */
async function readJson (raw: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of raw) {
    size += (chunk as Buffer).length
    // the rest of a body too large is read and dropped, so that the client is
    // still there to read the answer (up to a point: then the connection goes)
    if (size > 16 * MAX_REQUEST_BYTES) raw.destroy()
    if (size <= MAX_REQUEST_BYTES) chunks.push(chunk as Buffer)
  }
  if (size > MAX_REQUEST_BYTES) throw new HttpError(413, 'PayloadTooLarge', `the request body is over ${MAX_REQUEST_BYTES} bytes`)
  if (size === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch (err: any) {
    throw new HttpError(400, 'BadRequest', `the request body is not JSON: ${err.message}`)
  }
}
