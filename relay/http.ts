/**
 * The relay's HTTP endpoint for operators: `/metrics` (Prometheus text) and
 * `/healthz`. Fastify rather than bare node:http: the project already uses it
 * for HTTP, and it brings routing, HEAD, content types, 404s and a clean
 * `close()` that ends keep-alive connections (a Prometheus scraper keeps one
 * open) without hand-written code.
 */
import Fastify from 'fastify'
import { MetricsEndpointError } from './errors.js'
import type { Registry } from 'prom-client'

export interface Health {
  /** true: 200, false: 503. */
  ok: boolean
  status: 'ok' | 'starting' | 'stopping'
  peerId: string
  reservations: number
  circuits: number
  connections: number
  uptimeSeconds: number
}

export interface MetricsEndpoint {
  /** `http://host:port`, with the port actually bound. */
  url: string
  close(): Promise<void>
}

/** Serves `/metrics` from `registry` and `/healthz` from `health()` at `host:port`. */
export async function startMetricsEndpoint (address: { host: string, port: number }, registry: Registry, health: () => Health): Promise<MetricsEndpoint> {
  const app = Fastify({ logger: false, forceCloseConnections: true })

  app.get('/metrics', async (_request, reply) => {
    const text = await registry.metrics()
    return reply.type(registry.contentType).send(text)
  })

  app.get('/healthz', async (_request, reply) => {
    const body = health()
    return reply.code(body.ok ? 200 : 503).send(body)
  })

  try {
    await app.listen({ host: address.host, port: address.port })
  } catch (err: any) {
    await app.close().catch(() => {})
    throw new MetricsEndpointError(`metrics: cannot listen on ${address.host}:${address.port} (${err.code ?? err.message}); choose another with --metrics <host:port> or turn it off with --no-metrics`)
  }

  const bound = app.server.address()
  const port = typeof bound === 'object' && bound != null ? bound.port : address.port
  const host = address.host.includes(':') ? `[${address.host}]` : address.host
  return {
    url: `http://${host}:${port}`,
    close: async () => { await app.close() }
  }
}
