// A bare libp2p node of the stack parley uses (TCP, Noise, Yamux, identify,
// ping), without parley's protocols, store, DHT or path upgrades: the baseline
// for footprint, and the cheap peers of the relay-capacity bench.
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'

/**
 * `heartbeat`: ping connections the way a parley node does with its default
 * config (node/network/libp2p.ts: libp2p's connection monitor and yamux's
 * keep-alive off, parley's heartbeat through the muxer, a connection pinged
 * once silent for 10 s, or for 60 s when it goes to a relay the node
 * reserves on, here any relay in `listen`) instead of js-libp2p's default (a
 * ping stream per connection every 10 s).
 */
export async function bareNode ({ listen = [], circuits = false, heartbeat = false } = {}) {
  const relays = new Set(listen.flatMap(a => a.match(/\/p2p\/([^/]+)\/p2p-circuit/)?.[1] ?? []))
  const parts = heartbeat ? await import('../../../dist/common/heartbeat.js') : undefined
  const pings = parts != null
    ? {
        connectionMonitor: { enabled: false },
        heartbeat: parts.heartbeat({
          interval: 10_000,
          timeout: 10_000,
          intervalFor: (connection) => relays.has(connection.remotePeer.toString()) ? 60_000 : undefined
        })
      }
    : {}
  return createLibp2p({
    addresses: { listen },
    transports: circuits ? [tcp(), circuitRelayTransport({ reservationCompletionTimeout: 30_000 })] : [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [parts != null ? parts.hearing(yamux({ enableKeepAlive: false })) : yamux()],
    connectionManager: {
      // everything here comes from 127.0.0.1
      inboundConnectionThreshold: 10_000,
      maxIncomingPendingConnections: 1024
    },
    ...(pings.connectionMonitor == null ? {} : { connectionMonitor: pings.connectionMonitor }),
    services: { identify: identify(), ping: ping(), ...(pings.heartbeat == null ? {} : { heartbeat: pings.heartbeat }) }
  })
}

/** Resolves once the node holds a reservation (has a /p2p-circuit address), or rejects after `timeout` ms. */
export async function reservedOn (libp2p, timeout = 60_000) {
  const has = () => libp2p.getMultiaddrs().find(a => a.toString().includes('/p2p-circuit'))
  if (has() != null) return has()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      libp2p.removeEventListener('self:peer:update', check)
      reject(new Error('no relay reservation in time'))
    }, timeout)
    const check = () => {
      const addr = has()
      if (addr == null) return
      clearTimeout(timer)
      libp2p.removeEventListener('self:peer:update', check)
      resolve(addr)
    }
    libp2p.addEventListener('self:peer:update', check)
  })
}
