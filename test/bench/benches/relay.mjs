// 4. Relay capacity: one relay process; N peers hold reservations on it (N up
// to 1,000, bare libp2p peers spread over 4 client processes), then M circuits
// through it carry messages (a 200-byte length-prefixed echo every 250 ms on
// each). Reports the relay's RSS and CPU at each step, and the latency the
// relay adds: echo round trip over a circuit versus over a direct connection
// between the same two peers, under that load and once the circuits are gone
// (the reservations still held).
import { sampler, usage } from '../lib/proc.mjs'
import { summarize } from '../lib/stats.mjs'

export const title = 'Relay capacity: N reservations, M circuits carrying messages; relay RSS/CPU and added latency'

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

export async function run ({ spawn, scale, log }) {
  const N = Math.max(100, Math.round(1000 * Math.min(1, scale)))
  const M = Math.max(20, Math.round(200 * Math.min(1, scale)))
  const steps = [...new Set([Math.round(N / 4), Math.round(N / 2), N])]
  const clients = 4
  const interval = 250
  const size = 200
  const window = Math.round(15_000 * Math.max(0.5, Math.min(1, scale)))
  const relayWorker = await spawn('relay')
  const workers = await Promise.all(Array.from({ length: clients }, async (_, i) => spawn(`relay-clients-${i}`)))
  const relay = await relayWorker.call('relay:start', {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    // every peer here dials from 127.0.0.1: lift the per-IP limits and make room for N
    limits: {
      maxReservations: N + 16,
      maxReservationsPerIp: N + 16,
      maxCircuits: Math.max(1024, M + 16),
      inboundConnectionsPerSecond: 10_000,
      maxPendingConnections: 1024,
      maxReservationsPerSubnet: 100_000,
      maxCircuitsPerIp: 100_000,
      maxCircuitsPerSubnet: 100_000,
      maxConnectionsPerIp: 100_000,
      maxConnectionsPerSubnet: 100_000
    }
  })
  const relayAddr = relay.addrs[0]
  const measure = async (seconds) => {
    const s = sampler(relayWorker.pid, 500)
    await sleep(seconds * 1000)
    return s.stop()
  }

  // the probe pair: TCP listeners (for the direct connection) and a reservation each
  const probeA = await workers[0].call('bare:start', { name: 'probe-a', listen: ['/ip4/127.0.0.1/tcp/0', `${relayAddr}/p2p-circuit`], circuits: true, echo: true })
  const probeB = await workers[1].call('bare:start', { name: 'probe-b', listen: ['/ip4/127.0.0.1/tcp/0', `${relayAddr}/p2p-circuit`], circuits: true, echo: true })
  await sleep(1_000)
  await workers[0].call('dial', { name: 'probe-a', peer: probeB.peerId, addrs: [`${relayAddr}/p2p-circuit/p2p/${probeB.peerId}`] })
  await workers[1].call('dial', { name: 'probe-b', peer: probeA.peerId, addrs: probeA.addrs.filter(a => !a.includes('p2p-circuit')) })
  const probe = async () => {
    // one echo stream on the circuit (probe-a -> probe-b) and one on the direct
    // connection (probe-b -> probe-a), interleaved. A circuit carries 128 KiB
    // at most (relay-v2's default limit): 60 round trips of 200 bytes take a
    // quarter of it: each probe dials a new circuit.
    const relayed = []
    const direct = []
    await workers[0].call('hangup', { name: 'probe-a', peer: probeB.peerId, relayed: true })
    await workers[0].call('dial', { name: 'probe-a', peer: probeB.peerId, addrs: [`${relayAddr}/p2p-circuit/p2p/${probeB.peerId}`], force: true })
    for (let i = 0; i < 3; i++) {
      relayed.push(...await workers[0].call('lat:echo', { name: 'probe-a', peer: probeB.peerId, count: 20, size, relayed: true }))
      direct.push(...await workers[1].call('lat:echo', { name: 'probe-b', peer: probeA.peerId, count: 20, size }))
    }
    return { relayed: summarize(relayed), direct: summarize(direct) }
  }
  await probe() // warm-up
  const idleProbe = await probe()
  const base = await usage(relayWorker.pid)
  log(`  relay idle: ${base.rssMb.toFixed(0)} MB; relayed echo ${idleProbe.relayed.p50.toFixed(2)} ms, direct ${idleProbe.direct.p50.toFixed(2)} ms`)

  // reservations, in steps
  const peers = Array.from({ length: clients }, () => [])
  let held = 0
  const stepResults = []
  for (const target of steps) {
    const started = performance.now()
    const add = target - held
    await Promise.all(workers.map(async (w, i) => {
      const count = Math.floor(add / clients) + (i < add % clients ? 1 : 0)
      const got = await w.call('bare:startMany', { prefix: `p${held}-${i}-`, count, relay: relayAddr, concurrency: 8 }, { timeout: 300_000 })
      peers[i].push(...got)
    }))
    held = target
    const status = await relayWorker.call('relay:status')
    const m = await measure(3)
    stepResults.push({ reservations: status.reservations, connections: status.connections, rssMb: m.rssMb, cpuPercent: m.cpuPercent, seconds: (performance.now() - started) / 1000 })
    log(`  ${status.reservations} reservations (${status.connections} connections): relay ${m.rssMb.toFixed(0)} MB RSS, ${m.cpuPercent.toFixed(1)}% CPU idle; took ${((performance.now() - started) / 1000).toFixed(1)} s`)
  }

  // M circuits between peers of different client processes, each carrying messages
  const perWorker = Math.ceil(M / clients)
  const circuitStarts = await Promise.all(workers.map(async (w, i) => {
    const targets = peers[(i + 1) % clients]
    const pairs = peers[i].slice(0, perWorker).map((p, k) => ({ from: p.name, peer: targets[perWorker + k].peerId, addr: targets[perWorker + k].circuit }))
    return w.call('circuits:start', { pairs: pairs.slice(0, Math.min(pairs.length, M - i * perWorker)), interval, size }, { timeout: 120_000 })
  }))
  const open = circuitStarts.reduce((n, c) => n + c.open, 0)
  const failed = circuitStarts.reduce((n, c) => n + c.failed, 0)
  await sleep(2_000)
  await Promise.all(workers.map(async w => w.call('circuits:measure')))
  const loaded = await measure(window / 1000)
  const status = await relayWorker.call('relay:status')
  const loadProbe = await probe()
  const results = await Promise.all(workers.map(async w => w.call('circuits:stop')))
  const circuitRtt = summarize(results.flatMap(r => r.samples))
  const errors = results.reduce((n, r) => n + r.errors, 0)
  const peak = await usage(relayWorker.pid)
  await sleep(1_000)
  const quietProbe = await probe()
  log(`  ${open} circuits open (${failed} failed, ${errors} broke), relay ${loaded.rssMb.toFixed(0)} MB RSS (max ${loaded.maxRssMb.toFixed(0)}), ${loaded.cpuPercent.toFixed(1)}% CPU; circuit echo p50 ${circuitRtt.p50.toFixed(2)} ms; ${circuitRtt.n} round trips`)

  const addedQuiet = quietProbe.relayed.p50 - quietProbe.direct.p50
  const addedLoaded = loadProbe.relayed.p50 - loadProbe.direct.p50
  const rateRtPerS = circuitRtt.n / (window / 1000)
  const met = status.reservations >= N && open >= M && loaded.maxRssMb < 512 && errors === 0
  return {
    raw: { N, M, steps: stepResults, idleProbe, loadProbe, quietProbe, circuits: { open, failed, errors, rtt: circuitRtt, roundTripsPerSecond: rateRtPerS }, loaded, relayIdleRssMb: base.rssMb, relayPeakRssMb: peak.peakRssMb, status },
    rows: [
      ...stepResults.map(s => ({ metric: `relay with ${s.reservations} reservations, no traffic`, parley: { text: `${s.rssMb.toFixed(0)} MB RSS, ${s.cpuPercent.toFixed(1)}% CPU` } })),
      {
        metric: `relay with ${status.reservations} reservations and ${open} circuits carrying ${Math.round(rateRtPerS)} echoes/s (${failed} circuits refused, ${errors} broke)`,
        parley: { text: `${loaded.maxRssMb.toFixed(0)} MB RSS (max), ${loaded.cpuPercent.toFixed(0)}% CPU` },
        baseline: { text: `${base.rssMb.toFixed(0)} MB`, name: 'the same relay idle, no reservations' },
        ratio: loaded.maxRssMb / base.rssMb,
        target: `${N} reservations + ${M} circuits < 512 MB`,
        met
      },
      { metric: `echo RTT over a circuit, relay under the load above (the relay adds ${addedLoaded.toFixed(2)} ms)`, parley: loadProbe.relayed, baseline: { name: 'direct connection, same two peers', ...loadProbe.direct }, ratio: loadProbe.relayed.p50 / loadProbe.direct.p50 },
      { metric: `echo RTT over a circuit, relay quiet (${status.reservations} reservations, no circuits; adds ${addedQuiet.toFixed(2)} ms)`, parley: quietProbe.relayed, baseline: { name: 'direct connection, same two peers', ...quietProbe.direct }, ratio: quietProbe.relayed.p50 / quietProbe.direct.p50 },
      { metric: 'echo RTT on the loaded circuits themselves', parley: circuitRtt }
    ]
  }
}
