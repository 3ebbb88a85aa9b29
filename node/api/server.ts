import { randomBytes, timingSafeEqual } from 'node:crypto'
import Fastify from 'fastify'
import type { ParleyNode } from '../node.js'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

/** Errors from the node that mean "your request was wrong": 400 with the reason. */
const BAD_REQUEST = new Set([
  'InvalidPeerIdError', 'EmptyMessageError', 'MessageTooLargeError', 'InvalidMessageError',
  'UnknownContactError', 'InvalidInviteError', 'InvalidContactNameError'
])

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

const peerParam = {
  type: 'object',
  required: ['peer'],
  properties: { peer: { type: 'string', minLength: 1 } }
} as const

function sendError (reply: FastifyReply, status: number, error: string, message: string): FastifyReply {
  return reply.code(status).send({ error, message })
}

/**
 * The daemon's local API: JSON over HTTP on 127.0.0.1 only, every request
 * carrying the bearer token that the daemon writes to its data dir. The CLI
 * talks to the node through this and nothing else.
 */
export async function startApiServer (node: ParleyNode, init: ApiServerInit = {}): Promise<ApiServer> {
  const token = init.token ?? randomBytes(32).toString('hex')
  const expected = Buffer.from(`Bearer ${token}`)
  const app: FastifyInstance = Fastify({
    logger: false,
    // event streams stay open: closing must not wait for them
    forceCloseConnections: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } }
  })

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const given = Buffer.from(request.headers.authorization ?? '')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return sendError(reply, 401, 'Unauthorized', 'missing or wrong bearer token; the CLI reads it from api.json in the data dir')
    }
  })

  app.setErrorHandler((err: any, _request, reply) => {
    if (err.validation != null) {
      return sendError(reply, 400, 'BadRequest', err.message)
    }
    if (BAD_REQUEST.has(err.name)) {
      return sendError(reply, 400, err.name, err.message)
    }
    if (err.statusCode != null && err.statusCode < 500) {
      return sendError(reply, err.statusCode, err.code ?? 'BadRequest', err.message)
    }
    return sendError(reply, 500, err.name ?? 'Error', err.message)
  })

  app.get('/v1/id', async () => ({ peerId: node.peerId.toString(), addrs: node.multiaddrs.map(a => a.toString()) }))

  app.get('/v1/status', async () => node.status())

  app.get('/v1/peers', async () => node.peers())

  app.get('/v1/outbox', async () => node.outbox())

  app.get('/v1/invite', async () => ({ invite: node.invite() }))

  app.post<{ Body: { to: string, body: string, contentType?: string, replyTo?: string, wait?: number } }>('/v1/messages', {
    schema: {
      body: {
        type: 'object',
        required: ['to', 'body'],
        additionalProperties: false,
        properties: {
          to: { type: 'string', minLength: 1, description: 'peer ID or contact name' },
          body: { type: 'string' },
          contentType: { type: 'string' },
          replyTo: { type: 'string' },
          wait: { type: 'number', minimum: 0, maximum: 3600, description: 'seconds to wait for the ack' }
        }
      }
    }
  }, async (request, reply) => {
    const { to, body, contentType, replyTo, wait } = request.body
    const id = node.queue(to, body, { contentType, replyTo })
    if (wait == null || wait === 0) {
      return reply.code(202).send({ id, status: node.getMessage(id)?.status ?? 'queued' })
    }
    try {
      const receipt = await node.waitFor(id, { timeout: wait * 1000 })
      return receipt
    } catch (err: any) {
      if (err.name === 'DeliveryTimeoutError') {
        return reply.code(202).send({ id, status: node.getMessage(id)?.status ?? 'queued', message: err.message })
      }
      if (err.name === 'MessageRejectedError') {
        return reply.code(422).send({ id, status: 'failed', error: err.name, message: err.message })
      }
      throw err
    }
  })

  app.get<{ Params: { id: string } }>('/v1/messages/:id', async (request, reply) => {
    const message = node.getMessage(request.params.id)
    if (message == null) return sendError(reply, 404, 'NotFound', `no message with id ${request.params.id}`)
    return message
  })

  app.get<{ Params: { peer: string }, Querystring: { limit?: number, before?: number } }>('/v1/history/:peer', {
    schema: {
      params: peerParam,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          limit: { type: 'integer', minimum: 1, maximum: 10000 },
          before: { type: 'integer', minimum: 0 }
        }
      }
    }
  }, async (request) => node.history(request.params.peer, request.query))

  app.get('/v1/contacts', async () => node.contacts())

  app.post<{ Body: { name: string, peer: string } }>('/v1/contacts', {
    schema: {
      body: {
        type: 'object',
        required: ['name', 'peer'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 64 },
          peer: { type: 'string', minLength: 1, description: 'peer ID or invite' }
        }
      }
    }
  }, async (request) => node.addContact(request.body.name, request.body.peer))

  app.delete<{ Params: { name: string } }>('/v1/contacts/:name', async (request, reply) => {
    if (!node.removeContact(request.params.name)) {
      return sendError(reply, 404, 'UnknownContactError', `no contact named "${request.params.name}"`)
    }
    return { removed: request.params.name }
  })

  // live events as Server-Sent Events: message, status, path
  app.get('/v1/events', (request, reply) => {
    reply.hijack()
    const res = reply.raw
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
    request.raw.on('close', () => {
      clearInterval(keepAlive)
      node.removeEventListener('message', onMessage)
      node.removeEventListener('message:status', onStatus)
      node.removeEventListener('path:change', onPath)
    })
  })

  // loopback only: the API is for this machine's user, never the network
  await app.listen({ host: '127.0.0.1', port: init.port ?? 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address != null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    port,
    close: async () => { await app.close() }
  }
}
