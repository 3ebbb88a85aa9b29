// 5. Footprint: resident memory of an idle parley node (the `parley node`
// daemon as a user runs it: the `parley` command in its own process, data dir
// on disk, a relay reservation, the DHT, the local API; 3 s and 3 minutes
// after start), memory per extra connected peer, and
// start-up time; next to a bare Node.js process and a bare libp2p node of the
// same stack (TCP, Noise, Yamux, identify, ping).
import { startDaemon } from '../lib/daemon.mjs'
import { usage } from '../lib/proc.mjs'
import { median, rotate, summarize } from '../lib/stats.mjs'

export const title = 'Footprint: idle RSS, memory per connected peer, start-up time'

// every peer here dials from 127.0.0.1: lift the per-IP and per-subnet limits
const RELAY_LIMITS = { inboundConnectionsPerSecond: 10_000, maxPendingConnections: 1024, maxReservationsPerIp: 100_000, maxReservationsPerSubnet: 100_000, maxCircuitsPerIp: 100_000, maxCircuitsPerSubnet: 100_000, maxConnectionsPerIp: 100_000, maxConnectionsPerSubnet: 100_000 }
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
/** How long the daemon read as `top` shows it has been idle: its RSS stops growing within it. */
const LONG_IDLE = 180_000

export async function run ({ spawn, tempDir, scale, log }) {
  const rounds = Math.max(2, Math.round(4 * scale))
  const peersToAdd = 50
  const relayWorker = await spawn('footprint-relay')
  const relay = await relayWorker.call('relay:start', { listen: ['/ip4/127.0.0.1/tcp/0'], limits: RELAY_LIMITS })
  const relayAddr = relay.addrs[0]
  const peerWorker = await spawn('footprint-peers')
  // one daemon left running through the rounds: its memory grows for the first
  // minutes (V8's heap settling), so what a user sees in `top` is read at LONG_IDLE
  const longIdle = await startDaemon({ dataDir: await tempDir(), relay: relayAddr })
  const longIdleStarted = performance.now()

  /** RSS (from /proc) and V8 heap after a full GC, in MB. */
  const settle = async (w) => {
    const mem = await w.call('gc')
    const u = await usage(w.pid)
    return { rssMb: u.rssMb, heapMb: mem.heapUsed / 2 ** 20 }
  }

  const kinds = {
    // a Node.js process that loaded nothing but the bench's IPC
    node: async () => {
      const w = await spawn('footprint-node')
      await sleep(1_000)
      const m = await settle(w)
      await w.stop()
      return { ...m, spawnMs: w.spawnMs }
    },
    libp2p: async () => {
      const w = await spawn('footprint-libp2p')
      const { ms, addrs, peerId } = await w.call('bare:start', { name: 'n', listen: ['/ip4/127.0.0.1/tcp/0'] })
      await w.call('dial', { name: 'n', peer: relay.peerId, addrs: [relayAddr] })
      await sleep(3_000)
      const idle = await settle(w)
      const perPeer = await addPeers(w, peerId, addrs)
      await w.stop()
      return { ...idle, startMs: ms, spawnMs: w.spawnMs, perPeer }
    },
    // what a user runs: the bundled command; RSS read from /proc after 3 s idle (no forced GC)
    daemon: async () => {
      const d = await startDaemon({ dataDir: await tempDir(), relay: relayAddr })
      await sleep(3_000)
      const { rssMb } = await usage(d.pid)
      await d.stop()
      return { rssMb, readyMs: d.readyMs }
    },
    // diagnostic: the same daemon with V8's young generation capped (a runtime flag)
    daemonSmallHeap: async () => {
      const d = await startDaemon({ dataDir: await tempDir(), relay: relayAddr, nodeFlags: ['--max-semi-space-size=1'] })
      await sleep(3_000)
      const { rssMb } = await usage(d.pid)
      await d.stop()
      return { rssMb }
    },
    // createNode() in a process that imports the library (dist/index.js, module by module)
    parley: async () => {
      const w = await spawn('footprint-parley')
      const loadMs = await w.call('loadParley')
      const { ms, peerId } = await w.call('parley:start', { name: 'n', dataDir: await tempDir(), listen: ['/ip4/127.0.0.1/tcp/0', '/webrtc'], relays: [relayAddr] })
      const addrs = await w.call('parley:reserved', { name: 'n' })
      await sleep(3_000)
      const idle = await settle(w)
      const perPeer = await addPeers(w, peerId, addrs.filter(a => !a.includes('p2p-circuit')))
      await w.stop()
      return { ...idle, startMs: ms, loadMs, spawnMs: w.spawnMs, perPeer }
    }
  }

  /** Connects `peersToAdd` bare peers (identify, ping) to the node; MB of RSS and heap each adds. */
  async function addPeers (w, peerId, addrs) {
    const before = await settle(w)
    const names = Array.from({ length: peersToAdd }, (_, i) => `peer${i}`)
    // 10 at a time: a node takes 32 inbound connections in their handshake at once
    for (let i = 0; i < names.length; i += 10) {
      await Promise.all(names.slice(i, i + 10).map(async name => {
        await peerWorker.call('bare:start', { name })
        await peerWorker.call('dial', { name, peer: peerId, addrs })
      }))
    }
    await sleep(3_000)
    const after = await settle(w)
    await Promise.all(names.map(async name => peerWorker.call('bare:stop', { name })))
    return { rssMb: (after.rssMb - before.rssMb) / peersToAdd, heapMb: (after.heapMb - before.heapMb) / peersToAdd }
  }

  const results = { node: [], libp2p: [], daemon: [], daemonSmallHeap: [], parley: [] }
  for (let r = 0; r < rounds; r++) {
    for (const kind of rotate(Object.keys(kinds), r)) results[kind].push(await kinds[kind]())
    const p = results.parley.at(-1)
    log(`  round ${r + 1}/${rounds}: parley node ${results.daemon.at(-1).rssMb.toFixed(0)} MB idle; createNode() process ${p.rssMb.toFixed(0)} MB, +${(p.perPeer.rssMb * 1024).toFixed(0)} kB/peer, createNode ${p.startMs.toFixed(0)} ms; libp2p ${results.libp2p.at(-1).rssMb.toFixed(0)} MB; node ${results.node.at(-1).rssMb.toFixed(0)} MB`)
  }
  await sleep(Math.max(0, longIdleStarted + LONG_IDLE - performance.now()))
  const settled = (await usage(longIdle.pid)).rssMb
  await longIdle.stop()
  log(`  parley node ${settled.toFixed(0)} MB after ${LONG_IDLE / 60_000} minutes idle`)
  const med = (kind, f) => median(results[kind].map(f))
  const atStart = med('daemon', x => x.rssMb)
  const daemonReady = summarize(results.daemon.map(x => x.readyMs))
  const perPeer = med('parley', x => x.perPeer.rssMb * 1024)
  const perPeerHeap = med('parley', x => x.perPeer.heapMb * 1024)
  const perPeerBase = med('libp2p', x => x.perPeer.rssMb * 1024)
  const start = summarize(results.parley.map(x => x.startMs))
  const startBase = summarize(results.libp2p.map(x => x.startMs))
  const toReady = summarize(results.parley.map(x => x.spawnMs + x.loadMs + x.startMs))
  return {
    raw: { rounds, peersToAdd, results },
    rows: [
      { metric: `RSS of an idle node: \`parley node\` (data dir, relay reservation, DHT, local API), as \`top\` shows it ${LONG_IDLE / 60_000} minutes after start`, parley: { value: settled, unit: 'MB' }, baseline: { value: med('libp2p', x => x.rssMb), unit: 'MB', name: `bare libp2p node (after GC); a bare Node.js process: ${med('node', x => x.rssMb).toFixed(0)} MB` }, ratio: settled / med('libp2p', x => x.rssMb), target: '< 100 MB', met: settled < 100 },
      { metric: 'diagnostic: the same, 3 s after start', parley: { value: atStart, unit: 'MB' } },
      { metric: 'diagnostic: the same daemon under NODE_OPTIONS=--max-semi-space-size=1, 3 s after start', parley: { value: med('daemonSmallHeap', x => x.rssMb), unit: 'MB' } },
      { metric: 'diagnostic: createNode() in a process importing the library module by module (dist/index.js; after GC)', parley: { value: med('parley', x => x.rssMb), unit: 'MB' } },
      { metric: `memory per extra connected peer (${peersToAdd} bare peers connect)`, parley: { text: `${perPeer.toFixed(0)} kB RSS (${perPeerHeap.toFixed(0)} kB heap)` }, baseline: { value: perPeerBase, unit: 'kB RSS', name: 'bare libp2p node' }, ratio: perPeer / perPeerBase },
      { metric: 'start-up: createNode() (data dir on disk)', parley: start, baseline: { name: 'createLibp2p() of a bare node', ...startBase }, ratio: start.p50 / startBase.p50 },
      { metric: 'start-up: `parley node` spawn → reachable through its relay', parley: daemonReady, baseline: { value: med('node', x => x.spawnMs), unit: 'ms', name: 'spawn of a bare Node.js process' } },
      { metric: 'start-up: library process spawn → module load → createNode() done', parley: toReady }
    ]
  }
}
