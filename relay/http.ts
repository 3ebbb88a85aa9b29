/**
 * The relay's HTTP endpoint for operators: `/metrics` (Prometheus text) and
 * `/healthz`. Two GET routes: node:http is enough.
 */
import { createServer } from '../common/node-http.js'
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
  const answer = async (path: string): Promise<{ status: number, type: string, body: string }> => {
    if (path === '/metrics') return { status: 200, type: registry.contentType, body: await registry.metrics() }
    if (path === '/healthz') {
      const body = health()
      return { status: body.ok ? 200 : 503, type: 'application/json; charset=utf-8', body: JSON.stringify(body) }
    }
    return { status: 404, type: 'application/json; charset=utf-8', body: JSON.stringify({ error: 'NotFound', message: `no route ${path}; there are /metrics and /healthz` }) }
  }

  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname
    const method = request.method ?? 'GET'
    const reply = method === 'GET' || method === 'HEAD'
      ? answer(path)
      : Promise.resolve({ status: 405, type: 'text/plain; charset=utf-8', body: `${method} is not allowed; use GET` })
    reply.catch((err: Error) => ({ status: 500, type: 'text/plain; charset=utf-8', body: err.message })).then(({ status, type, body }) => {
      response.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) })
      response.end(method === 'HEAD' ? undefined : body)
    }, () => { response.destroy() })
  })

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(address.port, address.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err: any) {
    throw new MetricsEndpointError(`metrics: cannot listen on ${address.host}:${address.port} (${err.code ?? err.message}); choose another with --metrics <host:port> or turn it off with --no-metrics`)
  }

  const bound = server.address()
  const port = typeof bound === 'object' && bound != null ? bound.port : address.port
  const host = address.host.includes(':') ? `[${address.host}]` : address.host
  return {
    url: `http://${host}:${port}`,
    close: async () => {
      const closed = new Promise<void>(resolve => { server.close(() => { resolve() }) })
      // a Prometheus scraper keeps its connection open: closing must not wait for it
      server.closeAllConnections()
      await closed
    }
  }
}
