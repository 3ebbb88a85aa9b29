// 6. DHT lookup in a 100-node network in one process: 20 relays (the DHT
// servers, as deployed) and 80 parley nodes behind them (DHT clients with no
// listener of their own, each publishing its signed peer record). Lookups of
// random nodes from random nodes: success and time.
import { summarize } from '../lib/stats.mjs'

export const title = 'DHT lookup: 100-node in-process network (20 relays as DHT servers, 80 nodes)'

export async function run ({ spawn, scale, log }) {
  const servers = 20
  const clients = 80
  const count = Math.max(20, Math.round(60 * scale))
  const w = await spawn('dht-network')
  const built = await w.call('dht:build', { servers, clients, limits: { inboundConnectionsPerSecond: 10_000, maxPendingConnections: 1024, maxReservations: 100_000, maxReservationsPerIp: 1024, maxReservationsPerSubnet: 100_000, maxCircuitsPerIp: 100_000, maxCircuitsPerSubnet: 100_000, maxConnectionsPerIp: 100_000, maxConnectionsPerSubnet: 100_000 } }, { timeout: 300_000 })
  log(`  built in ${built.buildSeconds.toFixed(1)} s, ${built.published}/${clients} records published in ${built.publishSeconds.toFixed(1)} s; server routing tables ${Math.min(...built.routingTables)}..${Math.max(...built.routingTables)}`)
  const out = await w.call('dht:lookups', { count }, { timeout: 600_000 })
  await w.call('dht:stop', {}, { timeout: 120_000 })
  const row = (list) => {
    const ok = list.filter(x => x.ok)
    return { ...summarize(ok.map(x => x.ms)), ok: ok.length, n: list.length }
  }
  const record = row(out.record)
  const findPeer = row(out.findPeer)
  const server = row(out.server)
  const text = (r) => `${r.ok}/${r.n} found; ${r.p50?.toFixed(1)} ms (p99 ${r.p99?.toFixed(1)})`
  return {
    raw: { servers, clients, count, built, out },
    rows: [
      { metric: 'lookup of a node behind a relay: its signed peer record (what the router falls back to)', parley: { text: text(record) }, baseline: { text: text(server), name: 'kad-dht FIND_NODE of a DHT server, peer store bypassed' }, ratio: record.p50 / server.p50 },
      { metric: 'the same nodes through libp2p peer routing (FIND_NODE; what the router tries first)', parley: { text: text(findPeer) } },
      { metric: 'peer records published (each node, once reserved)', parley: { text: `${built.published}/${clients} in ${built.publishSeconds.toFixed(1)} s` } }
    ]
  }
}
