// 12. Relay at scale: one relay process holding N = 5,000 reservations, idle,
// then with M = 500 circuits carrying messages. The clients are bare libp2p
// nodes (TCP, Noise, Yamux, identify, ping, circuit-relay-v2 transport) that
// ping their connections the way a parley node does (common/heartbeat.ts),
// spread over several processes, plus a few real parley nodes reserving on
// the same relay. All dial from 127.0.0.1, so the relay's per-IP and
// per-subnet limits are lifted; every other limit keeps its default but for
// the totals, raised to hold N.
//
// Reports: the relay's RSS and CPU (as % of one core, from its CPU time in
// /proc) idle with N reservations and loaded with M circuits; its CPU per new
// reservation and per renewal (every client asks again, as a renewal does)
// and the steady renewal load that makes with the default 1 h TTL; circuits
// refused below the limits (must be 0).
import { loadavg } from 'node:os'
import { sampler, usage } from '../lib/proc.mjs'
import { summarize } from '../lib/stats.mjs'

export const title = 'Relay at scale: 5,000 reservations idle, then 500 circuits; relay RSS, CPU, renewal load, refusals'

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
const load = () => loadavg().map(x => x.toFixed(2)).join(' ')

/** The circuit-relay-v2 client renews a reservation 5 minutes before it expires. */
const RENEW_BEFORE = 5 * 60_000
const TTL = 60 * 60_000

export async function run ({ spawn, scale, log }) {
  // PARLEY_BENCH_RESERVATIONS, PARLEY_BENCH_CIRCUITS: other sizes, for a look at one effect
  const N = Number(process.env.PARLEY_BENCH_RESERVATIONS ?? Math.max(200, Math.round(5000 * Math.min(1, scale))))
  const M = Number(process.env.PARLEY_BENCH_CIRCUITS ?? Math.max(20, Math.round(500 * Math.min(1, scale))))
  const parleyNodes = Math.max(4, Math.round(20 * Math.min(1, scale)))
  const bareN = N - parleyNodes
  const processes = Math.max(2, Math.ceil(bareN / 500))
  const idleSeconds = Math.round(60 * Math.max(0.5, Math.min(1, scale)))
  const loadedSeconds = Math.round(30 * Math.max(0.5, Math.min(1, scale)))
  const interval = 500
  const size = 200

  const relayWorker = await spawn('relay')
  const workers = await Promise.all(Array.from({ length: processes }, async (_, i) => spawn(`scale-clients-${i}`)))
  const parleyWorker = await spawn('scale-parley')
  const lifted = 1_000_000
  const limits = {
    maxReservations: N + 100,
    maxConnections: N + 1_000,
    maxReservationsPerIp: lifted,
    maxReservationsPerSubnet: lifted,
    maxCircuitsPerIp: lifted,
    maxCircuitsPerSubnet: lifted,
    maxConnectionsPerIp: lifted,
    maxConnectionsPerSubnet: lifted,
    inboundConnectionsPerSecond: lifted,
    maxPendingConnections: 1024
  }
  const relay = await relayWorker.call('relay:start', { listen: ['/ip4/127.0.0.1/tcp/0'], limits })
  const relayAddr = relay.addrs[0]
  // the muxer PINGs the relay answers (its clients': they only have their
  // relay connection while idle) and sends (its own heartbeat's)
  const pings = async () => {
    const clients = await Promise.all([...workers, parleyWorker].map(async w => w.call('heartbeats')))
    return { clients: clients.reduce((n, c) => n + c.pinged, 0), relay: (await relayWorker.call('relay:status')).heartbeat.pinged }
  }
  const measure = async (seconds) => {
    const s = sampler(relayWorker.pid, 1000)
    const clientsBefore = await Promise.all(workers.map(async w => usage(w.pid)))
    const pingsBefore = await pings()
    await sleep(seconds * 1000)
    const pingsAfter = await pings()
    const clientsAfter = await Promise.all(workers.map(async w => usage(w.pid)))
    const clientCpuPercent = clientsAfter.reduce((n, u, i) => n + u.cpuSeconds - clientsBefore[i].cpuSeconds, 0) / seconds * 100
    const pingsPerSecond = { clients: (pingsAfter.clients - pingsBefore.clients) / seconds, relay: (pingsAfter.relay - pingsBefore.relay) / seconds }
    return { ...await s.stop(), clientCpuPercent, clientRssMb: clientsAfter.reduce((n, u) => n + u.rssMb, 0), pingsPerSecond, load: load() }
  }
  const base = await usage(relayWorker.pid)

  // N reservations: bare clients in `processes` processes, parley nodes in one more
  const fillStart = { t: performance.now(), cpu: base.cpuSeconds }
  const started = await Promise.all(workers.map(async (w, i) => {
    const count = Math.floor(bareN / processes) + (i < bareN % processes ? 1 : 0)
    return w.call('bare:startMany', { prefix: `c${i}-`, count, relay: relayAddr, concurrency: 3, heartbeat: true, timeout: 120_000, withRetries: true }, { timeout: 1_800_000 })
  }))
  const peers = started.map(s => s.peers)
  const retried = started.flatMap(s => s.retried)
  const gaveUp = started.reduce((n, s) => n + s.gaveUp, 0)
  if (retried.length > 0) log(`  ${retried.length} client starts failed and were tried again, ${gaveUp} given up after 5: ${retried[0].slice(0, 200)}`)
  await Promise.all(Array.from({ length: parleyNodes }, async (_, i) => {
    await parleyWorker.call('parley:start', { name: `n${i}`, listen: [], relays: [relayAddr], bootstrap: [relayAddr] })
    await parleyWorker.call('parley:reserved', { name: `n${i}`, timeout: 120_000 }, { timeout: 130_000 })
  }))
  const filled = await usage(relayWorker.pid)
  const fillSeconds = (performance.now() - fillStart.t) / 1000
  const afterFill = await relayWorker.call('relay:status')
  const newReservationMs = 1000 * (filled.cpuSeconds - fillStart.cpu) / afterFill.reservationsGranted
  log(`  relay after the fill: refusals ${JSON.stringify(afterFill.refusals)}, ${afterFill.connectionsRefused} connections refused`)
  log(`  ${afterFill.reservations} reservations (${afterFill.connections} connections) in ${fillSeconds.toFixed(0)} s; relay ${newReservationMs.toFixed(2)} ms CPU per new reservation; load ${load()}`)

  // idle: let the fill's work drain, then measure over several heartbeats
  await sleep(10_000)
  // PARLEY_BENCH_PROFILE=<dir>: the relay's CPU profile of the idle span (test/bench/profile.mjs reads it)
  const profileDir = process.env.PARLEY_BENCH_PROFILE
  if (profileDir != null) await relayWorker.call('profile:start')
  const idle = await measure(idleSeconds)
  if (profileDir != null) await relayWorker.call('profile:stop', { file: `${profileDir}/relay-scale-idle.cpuprofile` })
  const idleStatus = await relayWorker.call('relay:status')
  const mem = idleStatus.memory
  log(`  idle: relay heap ${(mem.heapUsed / 2 ** 20).toFixed(0)} MB used of ${(mem.heapTotal / 2 ** 20).toFixed(0)}, external ${(mem.external / 2 ** 20).toFixed(0)} MB (array buffers ${(mem.arrayBuffers / 2 ** 20).toFixed(0)})`)
  log(`  idle: relay ${idle.rssMb.toFixed(0)} MB RSS, ${idle.cpuPercent.toFixed(1)}% CPU over ${idleSeconds} s (${idleStatus.reservations} reservations); ${processes} client processes ${idle.clientCpuPercent.toFixed(0)}% CPU, ${idle.clientRssMb.toFixed(0)} MB; load ${idle.load}`)
  log(`  idle: muxer PINGs at the relay ${(idle.pingsPerSecond.clients + idle.pingsPerSecond.relay).toFixed(1)}/s: ${idle.pingsPerSecond.clients.toFixed(1)}/s from its clients, ${idle.pingsPerSecond.relay.toFixed(1)}/s of its own`)

  // renewals: every bare client asks for its reservation again
  const renewStart = await usage(relayWorker.pid)
  const t0 = performance.now()
  const renewed = await Promise.all(workers.map(async w => w.call('bare:reserveAgain', { relay: relay.peerId, concurrency: 4 }, { timeout: 600_000 })))
  const renewEnd = await usage(relayWorker.pid)
  const renewals = renewed.reduce((n, r) => n + r.ok, 0)
  const renewFailed = renewed.reduce((n, r) => n + r.failed, 0)
  const renewalMs = 1000 * (renewEnd.cpuSeconds - renewStart.cpuSeconds) / Math.max(1, renewals)
  const renewalsPerSecond = N / ((TTL - RENEW_BEFORE) / 1000)
  const renewalLoadPercent = renewalsPerSecond * renewalMs / 10
  log(`  ${renewals} renewals (${renewFailed} failed) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${renewalMs.toFixed(2)} ms relay CPU each; at ${renewalsPerSecond.toFixed(2)}/s (1 h TTL) ${renewalLoadPercent.toFixed(2)}% of a core; load ${load()}`)

  // M circuits between clients of different processes, each carrying an echo every `interval`
  const perWorker = Math.ceil(M / processes)
  const before = await relayWorker.call('relay:status')
  const starts = await Promise.all(workers.map(async (w, i) => {
    const targets = peers[(i + 1) % processes]
    const count = Math.max(0, Math.min(perWorker, M - i * perWorker))
    const pairs = peers[i].slice(0, count).map((p, k) => ({ from: p.name, peer: targets[perWorker + k].peerId, addr: targets[perWorker + k].circuit }))
    // clients open circuits a few at a time: 500 handshakes at one instant on
    // this machine's two shared cores time out in the clients, not the relay
    return w.call('circuits:start', { pairs, interval, size, concurrency: 8 }, { timeout: 300_000 })
  }))
  const open = starts.reduce((n, c) => n + c.open, 0)
  const failed = starts.reduce((n, c) => n + c.failed, 0)
  await sleep(2_000)
  await Promise.all(workers.map(async w => w.call('circuits:measure')))
  const loaded = await measure(loadedSeconds)
  const loadedStatus = await relayWorker.call('relay:status')
  const results = await Promise.all(workers.map(async w => w.call('circuits:stop')))
  const rtt = summarize(results.flatMap(r => r.samples))
  const broke = results.reduce((n, r) => n + r.errors, 0)
  const refusedConnect = loadedStatus.refusals.filter(r => r.request === 'connect').reduce((n, r) => n + r.count, 0) -
    before.refusals.filter(r => r.request === 'connect').reduce((n, r) => n + r.count, 0)
  const echoesPerSecond = rtt.n / loadedSeconds
  log(`  ${open} circuits open (${failed} failed to open, ${refusedConnect} refused by the relay, ${broke} broke), ${Math.round(echoesPerSecond)} echoes/s: relay ${loaded.rssMb.toFixed(0)} MB RSS (max ${loaded.maxRssMb.toFixed(0)}), ${loaded.cpuPercent.toFixed(0)}% CPU; echo p50 ${rtt.p50?.toFixed(2)} ms; reservations ${loadedStatus.reservations}; load ${loaded.load}`)
  for (const error of starts.flatMap(s => s.errors ?? []).slice(0, 10)) log(`  circuit failed: ${error}`)
  log(`  relay: ${loadedStatus.circuitsOpened - before.circuitsOpened} circuits opened; refusals ${JSON.stringify(loadedStatus.refusals)}`)

  const maxRss = Math.max(idle.maxRssMb, loaded.maxRssMb)
  return {
    raw: { N, M, parleyNodes, processes, fillSeconds, retried: retried.length, gaveUp, newReservationMs, afterFill, idle, idleStatus, renewals, renewFailed, renewalMs, renewalsPerSecond, renewalLoadPercent, circuits: { open, failed, refusedConnect, broke, rtt, echoesPerSecond }, loaded, loadedStatus, baseRssMb: base.rssMb },
    rows: [
      {
        metric: `relay with ${idleStatus.reservations} reservations (${parleyNodes} parley nodes, the rest bare libp2p clients in ${processes} processes), no traffic: CPU over ${idleSeconds} s (load ${idle.load})`,
        parley: { text: `${idle.cpuPercent.toFixed(1)}% of a core` },
        target: '< 5% of a core',
        met: idle.cpuPercent < 5 && idleStatus.reservations >= N
      },
      {
        // ~0.35 ms of relay CPU each (BENCHMARKS.md): under 5 % of a core needs fewer than N / 36 a second
        metric: `muxer PINGs the idle relay answered or sent a second (its clients' heartbeats, its own), ${idleStatus.reservations} reservations`,
        parley: { text: `${(idle.pingsPerSecond.clients + idle.pingsPerSecond.relay).toFixed(1)}/s (${idle.pingsPerSecond.clients.toFixed(1)} + ${idle.pingsPerSecond.relay.toFixed(1)})` },
        target: `< ${Math.round(N / 36)}/s`,
        met: idle.pingsPerSecond.clients + idle.pingsPerSecond.relay < N / 36
      },
      {
        metric: `relay RSS, ${idleStatus.reservations} reservations idle / with ${open} circuits (max)`,
        parley: { text: `${idle.rssMb.toFixed(0)} MB / ${loaded.maxRssMb.toFixed(0)} MB` },
        baseline: { text: `${base.rssMb.toFixed(0)} MB`, name: 'the same relay, no reservations' },
        target: '< 1 GiB',
        met: maxRss < 1024
      },
      {
        metric: `relay with ${loadedStatus.reservations} reservations and ${open} circuits carrying ${Math.round(echoesPerSecond)} echoes/s of ${size} B: CPU over ${loadedSeconds} s (load ${loaded.load})`,
        parley: { text: `${loaded.cpuPercent.toFixed(0)}% of a core` }
      },
      {
        metric: `circuits refused or failed below the limits (of ${M}; limits: ${limits.maxReservations} reservations, 1024 circuits, 16 per peer)`,
        parley: { text: `${failed} failed to open (${refusedConnect} refused by the relay), ${broke} broke` },
        target: '0',
        met: failed === 0 && broke === 0 && open === M
      },
      { metric: 'echo RTT on those circuits', parley: rtt },
      { metric: `relay CPU per new reservation (connection, handshake, RESERVE; ${afterFill.reservationsGranted} made in ${fillSeconds.toFixed(0)} s)`, parley: { value: newReservationMs, unit: 'ms' } },
      {
        metric: `relay CPU per renewal (${renewals} clients asked again, ${renewFailed} failed), and the steady renewal load of ${N} reservations at a 1 h TTL (${renewalsPerSecond.toFixed(2)}/s)`,
        parley: { text: `${renewalMs.toFixed(2)} ms; ${renewalLoadPercent.toFixed(2)}% of a core` }
      }
    ]
  }
}
