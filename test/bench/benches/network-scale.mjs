// 12. A network at scale on loopback: 3 relays (DHT servers, each in its own
// process) and parley nodes spread over 6 processes, grown from 30 to 100 to
// 300 nodes. Most nodes listen only through one relay, as behind NAT; one in
// ten listens on 127.0.0.1 and serves the DHT. At each size: DHT lookups of
// random nodes' peer records (baseline: a kad-dht FIND_NODE walk to a DHT
// server in the same network), then random pairs that have never talked, each
// a first message sent by peer ID (lookup, dial, deliver, ack), every message
// counted on arrival (lost, duplicated), and the memory the nodes take.
//
//   npm run bench -- --only network-scale                # 30, 100, 300 nodes
//   npm run bench -- --only network-scale --scale 0.1    # 30 nodes, 100 pairs
//   PARLEY_NET_SIZES=30,100,300 PARLEY_NET_PAIRS=100 PARLEY_NET_LOOKUPS=30 npm run bench -- --only network-scale
//                                                        # sizes, first messages and lookups per size
//   PARLEY_NET_PROCESSES=12 …                            # the nodes over 12 processes (fewer to an event loop)
import { execFile } from 'node:child_process'
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { usage } from '../lib/proc.mjs'
import { networkScaleSvg } from '../lib/plot.mjs'
import { summarize } from '../lib/stats.mjs'

// every node of a process shares its event loop, and libuv accepts one
// connection per listener per turn of it: fewer nodes a process, fewer waits
const PROCESSES = Number(process.env.PARLEY_NET_PROCESSES ?? 6)

export const title = `Network at scale: 30 → 100 → 300 parley nodes over ${PROCESSES} processes, 3 relays; DHT lookup, first message by peer ID, memory per node`

const HERE = dirname(fileURLToPath(import.meta.url))
const PLOT = join(HERE, '..', '..', '..', 'docs', 'bench', 'network-scale.svg')

// every peer here dials from 127.0.0.1: the relays' per-IP and per-subnet
// limits lifted, and room for every node's reservation
const RELAY_LIMITS = { maxReservations: 1_000, inboundConnectionsPerSecond: 10_000, maxPendingConnections: 1024, maxReservationsPerIp: 100_000, maxReservationsPerSubnet: 100_000, maxCircuits: 10_000, maxCircuitsPerIp: 100_000, maxCircuitsPerSubnet: 100_000, maxConnectionsPerIp: 100_000, maxConnectionsPerSubnet: 100_000 }
// and the nodes' limits on strangers' connections per IP (a DHT server is dialled by everyone)
const NODE_LIMITS = { maxInboundPerIp: 100_000, maxInboundPerSubnet: 100_000, maxInboundUntrusted: 100_000, maxConnections: 2_000 }
const RELAYS = 3
const PUBLIC_EVERY = 10
// first messages in flight at once, network-wide
const SENDS_IN_FLIGHT = 16

const load = () => loadavg().map(x => x.toFixed(2)).join(' ')
/** A send still unanswered after this long has both its ends probed (at most SLOW_PROBES per size). */
const SLOW_PROBE_AFTER = 10_000
const SLOW_PROBES = 8
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
const rand = (n) => Math.floor(Math.random() * n)

/**
 * For a node that listens on TCP: how long a bare TCP connect to it takes
 * from here and whether its listener answers multistream-select, and what the
 * kernel holds for its port (`ss`: the accept queue, sockets by state).
 */
async function tcpProbe (addrs) {
  const port = addrs.map(a => /^\/ip4\/127\.0\.0\.1\/tcp\/(\d+)\/p2p\/[^/]+$/.exec(a)?.[1]).find(p => p != null)
  if (port == null) return {}
  const start = performance.now()
  const tcp = await new Promise(resolve => {
    const socket = connect({ host: '127.0.0.1', port: Number(port) })
    const done = (result) => { socket.destroy(); resolve({ ...result, ms: Math.round(performance.now() - start) }) }
    socket.setTimeout(10_000, () => { done({ result: 'timeout' }) })
    socket.once('error', (err) => { done({ result: err.code }) })
    socket.once('connect', () => {
      const connected = Math.round(performance.now() - start)
      socket.write(Uint8Array.from([19, ...new TextEncoder().encode('/multistream/1.0.0\n')]))
      socket.once('data', (data) => { done({ result: 'answered', connectMs: connected, answer: data.toString('latin1').slice(0, 40) }) })
      socket.once('close', () => { done({ result: 'closed without an answer', connectMs: connected }) })
    })
  })
  // the listening socket, with its process and descriptor (-p: root only)
  const listening = (await ss(['-ltnpH', `sport = :${port}`])).join(' | ')
  const states = {}
  for (const line of await ss(['-tanH', `sport = :${port} or dport = :${port}`])) {
    const state = line.split(/\s+/)[0]
    states[state] = (states[state] ?? 0) + 1
  }
  return { tcp, listening, sockets: states, listener: await listenerWatch(listening) }
}

/** The lines `ss` prints for `args`, or why it could not run. */
async function ss (args) {
  return new Promise(resolve => {
    execFile('ss', args, { timeout: 5_000 }, (err, out) => { resolve(err == null ? out.trim().split('\n').filter(l => l !== '') : [`ss: ${err.message}`]) })
  })
}

/**
 * Whether the process that owns a listening socket (its `ss -ltnp` line) is watching it:
 * the socket's registration in the process's epoll sets (from /proc, `events`
 * is the mask: 0x19 = readable, error, hang-up). Needs root (ss -p, /proc of
 * another process); says why not otherwise.
 */
async function listenerWatch (listening) {
  const owner = /pid=(\d+),fd=(\d+)/.exec(listening)
  if (owner == null) return { error: 'no owner from ss -p' }
  const [, pid, fd] = owner
  const epoll = []
  try {
    for (const f of await readdir(`/proc/${pid}/fd`)) {
      if (await readlink(`/proc/${pid}/fd/${f}`).catch(() => '') !== 'anon_inode:[eventpoll]') continue
      const info = await readFile(`/proc/${pid}/fdinfo/${f}`, 'utf8').catch(() => '')
      const line = info.split('\n').find(l => new RegExp(`^tfd:\\s+${fd}\\s`).test(l))
      epoll.push({ epollFd: Number(f), registered: line != null, events: line == null ? undefined : /events:\s*(\S+)/.exec(line)?.[1] })
    }
  } catch (err) {
    return { pid: Number(pid), fd: Number(fd), error: String(err.message) }
  }
  return { pid: Number(pid), fd: Number(fd), epoll }
}

/** Runs `tasks` (functions returning promises) `concurrency` at a time; their results in order. */
async function pool (tasks, concurrency) {
  const out = new Array(tasks.length)
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < tasks.length) {
      const i = next++
      out[i] = await tasks[i]()
    }
  }))
  return out
}

export async function run ({ spawn, scale, log }) {
  const env = (name) => process.env[name] == null || process.env[name] === '' ? undefined : process.env[name]
  const sizes = env('PARLEY_NET_SIZES')?.split(',').map(Number) ?? [30, 100, 300].filter(n => n <= Math.max(30, 300 * scale))
  const pairsPerSize = Number(env('PARLEY_NET_PAIRS') ?? Math.max(50, Math.round(1000 * Math.min(1, scale))))
  const lookupsPerSize = Number(env('PARLEY_NET_LOOKUPS') ?? Math.max(30, Math.round(200 * Math.min(1, scale))))
  const relayWorkers = await Promise.all(Array.from({ length: RELAYS }, async (_, i) => spawn(`net-relay-${i}`)))
  const nodeWorkers = await Promise.all(Array.from({ length: PROCESSES }, async (_, i) => spawn(`net-nodes-${i}`)))
  const relays = []
  for (const w of relayWorkers) {
    relays.push(await w.call('relay:start', { listen: ['/ip4/127.0.0.1/tcp/0'], limits: RELAY_LIMITS, bootstrap: relays.map(r => r.addrs[0]) }))
  }
  const relayAddrs = relays.map(r => r.addrs[0])
  // each process with parley loaded and no node: what a node adds is measured from here
  await Promise.all(nodeWorkers.map(async w => w.call('loadParley')))
  const empty = await Promise.all(nodeWorkers.map(async w => w.call('gc')))

  const nodes = [] // { name, peerId, public, worker }
  const talked = new Set() // unordered pairs that have exchanged a message: never a first message again
  const results = []
  for (const size of sizes) {
    // grow the network to `size`
    const t0 = performance.now()
    const cpuAtBuild = await Promise.all([...relayWorkers, ...nodeWorkers].map(async w => usage(w.pid)))
    const adding = Array.from({ length: size - nodes.length }, (_, k) => {
      const i = nodes.length + k
      return { name: `n${i}`, public: i % PUBLIC_EVERY === 0, relay: relayAddrs[i % RELAYS], worker: i % PROCESSES }
    })
    // the DHT servers first, so that the others find a DHT to join
    for (const first of [true, false]) {
      const batch = adding.filter(n => n.public === first)
      const started = await Promise.all(nodeWorkers.map(async (w, i) => w.call('net:start', {
        nodes: batch.filter(n => n.worker === i),
        bootstrap: relayAddrs,
        connectionLimits: NODE_LIMITS
      }, { timeout: 900_000 })))
      for (const [i, list] of started.entries()) {
        for (const n of list) nodes.push({ ...n, worker: i })
      }
    }
    const unpublished = nodes.filter(n => !n.published).length
    const unreserved = nodes.filter(n => n.reserved === false).length
    const buildSeconds = (performance.now() - t0) / 1000
    const cpuBuilt = await Promise.all([...relayWorkers, ...nodeWorkers].map(async w => usage(w.pid)))
    const cpuSpent = (a, b) => b.reduce((n, u, i) => n + u.cpuSeconds - a[i].cpuSeconds, 0)
    const buildCpuMsPerNode = 1000 * cpuSpent(cpuAtBuild, cpuBuilt) / adding.length
    log(`  ${size} nodes up in ${buildSeconds.toFixed(0)} s (${unreserved} without a reservation, ${unpublished} without a published record); load ${load()}`)
    // idle: what the network costs with nobody sending (timers, pings, DHT upkeep)
    await sleep(5_000)
    const cpuIdle0 = await Promise.all([...relayWorkers, ...nodeWorkers].map(async w => usage(w.pid)))
    const tIdle = performance.now()
    await sleep(10_000)
    const cpuIdle1 = await Promise.all([...relayWorkers, ...nodeWorkers].map(async w => usage(w.pid)))
    const idleSeconds = (performance.now() - tIdle) / 1000
    const idleNodePercent = 100 * cpuSpent(cpuIdle0.slice(RELAYS), cpuIdle1.slice(RELAYS)) / idleSeconds
    const idleRelayPercent = 100 * cpuSpent(cpuIdle0.slice(0, RELAYS), cpuIdle1.slice(0, RELAYS)) / idleSeconds / RELAYS
    const loadBefore = load()

    // DHT lookups of random nodes from random nodes
    const servers = nodes.filter(n => n.public)
    const lookups = await pool(Array.from({ length: lookupsPerSize }, () => async () => {
      const a = nodes[rand(nodes.length)]
      let b = nodes[rand(nodes.length)]
      while (b === a) b = nodes[rand(nodes.length)]
      const others = servers.filter(s => s !== a)
      const server = others[rand(others.length)]
      return nodeWorkers[a.worker].call('net:lookup', { from: a.name, to: b.peerId, server: server.peerId }, { timeout: 120_000 })
    }), 4)

    // first messages between random pairs that have never talked
    const pairs = []
    const maxPairs = Math.min(pairsPerSize, Math.floor((size * (size - 1) / 2 - talked.size) / 2))
    while (pairs.length < maxPairs) {
      const a = nodes[rand(nodes.length)]
      const b = nodes[rand(nodes.length)]
      const key = a.name < b.name ? `${a.name}|${b.name}` : `${b.name}|${a.name}`
      if (a === b || talked.has(key)) continue
      talked.add(key)
      pairs.push({ a, b, body: `net-scale ${size} ${pairs.length} ${a.name}>${b.name}` })
    }
    const cpuBefore = await Promise.all([...relayWorkers, ...nodeWorkers].map(async w => usage(w.pid)))
    const tSends = performance.now()
    // a send not acknowledged in time, or still unanswered after SLOW_PROBE_AFTER:
    // what both ends look like then, while it is still out of reach: the
    // recipient from inside and from a bare TCP socket; the sender's own state,
    // what its dial queue holds for the recipient, and a fresh dial from it
    const recipientNow = async (b) => ({ name: b.name, public: b.public, worker: b.worker, ...await nodeWorkers[b.worker].call('net:probe', { name: b.name }).then(async probe => ({ ...probe, ...await tcpProbe(probe.addrs) })) })
    const bothNow = async (a, b) => ({
      recipient: await recipientNow(b),
      sender: { name: a.name, public: a.public, worker: a.worker, ...await nodeWorkers[a.worker].call('net:probe', { name: a.name }) },
      dialNow: await nodeWorkers[a.worker].call('net:dial', { from: a.name, to: b.peerId }, { timeout: 60_000 })
    })
    const slowProbes = []
    const sends = await pool(pairs.map(({ a, b, body }) => async () => {
      const sending = nodeWorkers[a.worker].call('net:send', { from: a.name, to: b.peerId, body }, { timeout: 120_000 })
      const answered = sending.then(() => true, () => true)
      const slow = await Promise.race([answered, sleep(SLOW_PROBE_AFTER).then(() => false)]) === false
      if (slow && slowProbes.length < SLOW_PROBES) {
        const probe = { body, ...await bothNow(a, b) }
        probe.answeredByThen = await Promise.race([answered, Promise.resolve(false)])
        slowProbes.push(probe)
      }
      const sent = await sending
      return sent.error == null ? sent : { ...sent, ...await bothNow(a, b) }
    }), SENDS_IN_FLIGHT)
    const sendSeconds = (performance.now() - tSends) / 1000
    const cpuAfter = await Promise.all([...relayWorkers, ...nodeWorkers].map(async w => usage(w.pid)))
    const cpu = cpuAfter.map((u, i) => 100 * (u.cpuSeconds - cpuBefore[i].cpuSeconds) / sendSeconds)
    const loadAfter = load()

    // every message shown exactly once?
    const sent = new Set(pairs.map(p => p.body))
    const count = async () => {
      const seen = new Map()
      for (const list of await Promise.all(nodeWorkers.map(async w => w.call('net:received')))) {
        for (const [body, times] of list) seen.set(body, (seen.get(body) ?? 0) + times)
      }
      return seen
    }
    let seen = await count()
    // a send not acknowledged within its timeout stays queued: give those time to arrive
    for (let i = 0; i < 120 && [...sent].some(b => !seen.has(b)); i++) { await sleep(1_000); seen = await count() }
    const lostPairs = pairs.filter(p => !seen.has(p.body))
    const lost = lostPairs.length
    // not acknowledged within the send's timeout, but shown to the recipient by the end of the wait
    const late = pairs.filter((p, i) => sends[i].error != null && seen.has(p.body)).length
    const duplicated = [...sent].filter(b => (seen.get(b) ?? 0) > 1).length
    // what the sender of each message never shown holds of it: why it is not there
    // and what its recipient looks like from inside, and a fresh dial to it now
    const lostWhy = await Promise.all(lostPairs.slice(0, 5).map(async p => ({
      body: p.body,
      recipient: { public: p.b.public, worker: p.b.worker, ...await nodeWorkers[p.b.worker].call('net:probe', { name: p.b.name }).then(async probe => ({ ...probe, ...await tcpProbe(probe.addrs) })) },
      ...await nodeWorkers[p.a.worker].call('net:outbox', { from: p.a.name, to: p.b.peerId, body: p.body }),
      dialNow: await nodeWorkers[p.a.worker].call('net:dial', { from: p.a.name, to: p.b.peerId }, { timeout: 60_000 })
    })))
    // the recipients of those never shown: a few peers, or many?
    const lostTo = {}
    for (const p of lostPairs) lostTo[`${p.b.name}${p.b.public ? ' (public)' : ''}`] = (lostTo[`${p.b.name}${p.b.public ? ' (public)' : ''}`] ?? 0) + 1

    // memory: every process after a GC, less what it took with no node
    const mem = await Promise.all(nodeWorkers.map(async w => w.call('gc')))
    const rss = await Promise.all(nodeWorkers.map(async w => usage(w.pid)))
    const relayRss = await Promise.all(relayWorkers.map(async w => usage(w.pid)))
    const state = await Promise.all(nodeWorkers.map(async w => w.call('net:state')))
    const states = state.flatMap(s => s.list)
    // inbound connections the nodes' connection guards refused, by reason
    const refused = {}
    for (const s of states) for (const [reason, n] of Object.entries(s.refused)) if (n > 0) refused[reason] = (refused[reason] ?? 0) + n
    const sum = (xs) => xs.reduce((a, b) => a + b, 0)
    const rssPerNodeMb = (sum(rss.map(r => r.rssMb)) - sum(empty.map(m => m.rss / 2 ** 20))) / size
    const heapPerNodeMb = (sum(mem.map(m => m.heapUsed)) - sum(empty.map(m => m.heapUsed))) / 2 ** 20 / size

    const ok = (list) => list.filter(x => x.ok).map(x => x.ms)
    const delivered = sends.filter(s => s.error == null)
    const paths = {}
    for (const s of delivered) paths[`${s.status}/${s.path}`] = (paths[`${s.status}/${s.path}`] ?? 0) + 1
    const r = {
      size,
      public: nodes.filter(n => n.public).length,
      buildSeconds,
      unpublished,
      unreserved,
      lookup: { ...summarize(ok(lookups.map(l => l.record))), found: ok(lookups.map(l => l.record)).length, n: lookups.length },
      walk: { ...summarize(ok(lookups.map(l => l.walk))), found: ok(lookups.map(l => l.walk)).length, n: lookups.length },
      first: { ...summarize(delivered.map(s => s.ms)), n: sends.length, delivered: delivered.length },
      failed: sends.filter(s => s.error != null).map(s => s.error).slice(0, 5),
      paths,
      lost,
      late,
      lostWhy,
      lostTo,
      refused,
      duplicated,
      sendSeconds,
      // CPU time of every process (nodes and relays) per first message, and per node started: load-independent
      sendCpuMsPerMessage: 1000 * cpuSpent(cpuBefore, cpuAfter) / pairs.length,
      buildCpuMsPerNode,
      // idle: % of a core per node (all node processes ÷ nodes), and per relay
      idleCpuPercentPerNode: idleNodePercent / size,
      idleCpuPercentPerRelay: idleRelayPercent,
      rssPerNodeMb,
      heapPerNodeMb,
      processRssMb: rss.map(r => Math.round(r.rssMb)),
      relayRssMb: relayRss.map(r => Math.round(r.rssMb)),
      cpuPercent: { relays: cpu.slice(0, RELAYS).map(Math.round), nodes: cpu.slice(RELAYS).map(Math.round) },
      routingTable: summarize(states.map(s => s.routingTable)),
      peerStore: summarize(states.map(s => s.peerStore)),
      connections: summarize(states.map(s => s.connections)),
      load: { before: loadBefore, after: loadAfter }
    }
    results.push(r)
    // written as each size ends, so that a long run cut short keeps what it measured
    await mkdir(join(HERE, '..', 'results'), { recursive: true })
    await writeFile(join(HERE, '..', 'results', 'network-scale.partial.json'), JSON.stringify(results, null, 2) + '\n')
    log(`  ${size} nodes: lookup ${r.lookup.p50.toFixed(0)} ms (p99 ${r.lookup.p99.toFixed(0)}, ${r.lookup.found}/${r.lookup.n}), walk ${r.walk.p50.toFixed(0)} ms; first message ${r.first.p50.toFixed(0)} ms (p99 ${r.first.p99.toFixed(0)}), ${r.first.delivered}/${r.first.n} acked (stored in a mailbox counts), ${late} late (not acked within the send's timeout, shown later), ${lost} lost (not shown within 3 min), ${duplicated} duplicated; ${JSON.stringify(paths)}`)
    log(`    CPU: idle ${r.idleCpuPercentPerNode.toFixed(2)} % of a core per node, ${idleRelayPercent.toFixed(1)} % per relay; ${r.sendCpuMsPerMessage.toFixed(0)} ms per first message, ${buildCpuMsPerNode.toFixed(0)} ms per node started (all processes); sends took ${sendSeconds.toFixed(0)} s`)
    log(`    ${rssPerNodeMb.toFixed(1)} MB RSS, ${heapPerNodeMb.toFixed(1)} MB heap per node; relays ${r.relayRssMb.join('/')} MB; CPU % during sends: relays ${r.cpuPercent.relays.join('/')}, node processes ${r.cpuPercent.nodes.join('/')}; peer store p50 ${r.peerStore.p50}, routing table p50 ${r.routingTable.p50}, connections p50 ${r.connections.p50}; load ${loadBefore} → ${loadAfter}`)
    if (r.failed.length > 0) log(`    failed: ${r.failed.join(' | ')}`)
    log(`    inbound connections refused by the nodes' guards: ${JSON.stringify(refused)}`)
    if (lost > 0) log(`    lost, by recipient: ${JSON.stringify(lostTo)}`)
    for (const why of lostWhy) log(`    lost: ${JSON.stringify(why)}`)
    const unanswered = sends.filter(x => x.recipient != null)
    if (unanswered.length > 0) log(`    not acknowledged in time, by recipient: ${JSON.stringify(Object.fromEntries([...new Set(unanswered.map(x => x.recipient.name))].map(n => [n, unanswered.filter(x => x.recipient.name === n).length])))}; public: ${unanswered.filter(x => x.recipient.public).length} of ${unanswered.length}`)
    for (const x of unanswered.slice(0, 5)) log(`    not acknowledged in time, its recipient then: ${JSON.stringify(x.recipient)}; its sender then: ${JSON.stringify(x.sender)}; a fresh dial from the sender: ${JSON.stringify(x.dialNow)}`)
    for (const x of slowProbes) log(`    unanswered after ${SLOW_PROBE_AFTER / 1000} s: ${JSON.stringify(x)}`)
    for (const s of [...sends].sort((x, y) => y.ms - x.ms).slice(0, 3)) log(`    slowest: ${s.ms.toFixed(0)} ms ${s.error ?? `${s.status}/${s.path}`}: ${JSON.stringify(s.steps)}`)
  }

  const plot = sizes.includes(300) ? PLOT : join(HERE, '..', 'results', 'network-scale.svg')
  await mkdir(dirname(plot), { recursive: true })
  await writeFile(plot, networkScaleSvg(results))
  log(`  plot: ${plot}`)

  return {
    raw: { sizes, pairsPerSize, lookupsPerSize, results },
    rows: results.flatMap(r => [
      { metric: `${r.size} nodes: DHT lookup of a node's peer record (${r.lookup.found}/${r.lookup.n} found)`, parley: r.lookup, baseline: { name: `kad-dht FIND_NODE walk to a DHT server, same network (${r.walk.found}/${r.walk.n})`, ...r.walk }, ratio: r.lookup.p50 / r.walk.p50 },
      { metric: `${r.size} nodes: first message by peer ID, send → ack (${r.first.delivered}/${r.first.n} acked; ${Object.entries(r.paths).map(([k, v]) => `${k} ${v}`).join(', ')})`, parley: r.first },
      { metric: `${r.size} nodes: messages lost (not shown within 3 min) / duplicated`, parley: { text: `${r.lost} / ${r.duplicated}` }, target: '0 / 0', met: r.lost === 0 && r.duplicated === 0 },
      { metric: `${r.size} nodes: messages late (not acknowledged within the send's 60 s, shown later)`, parley: { text: `${r.late}` } },
      { metric: `${r.size} nodes: memory per node (process RSS and heap, less the empty process)`, parley: { text: `${r.rssPerNodeMb.toFixed(1)} MB RSS, ${r.heapPerNodeMb.toFixed(1)} MB heap` } },
      { metric: `${r.size} nodes: CPU (every process): idle, % of a core per node; per first message; per node started`, parley: { text: `${r.idleCpuPercentPerNode.toFixed(2)} %; ${r.sendCpuMsPerMessage.toFixed(0)} ms; ${r.buildCpuMsPerNode.toFixed(0)} ms` } },
      { metric: `${r.size} nodes: load average before → after the sends; CPU % of each node process (and relay) during them`, parley: { text: `${r.load.before} → ${r.load.after}; ${r.cpuPercent.nodes.join('/')} (relays ${r.cpuPercent.relays.join('/')})` } }
    ])
  }
}
