// Before/after: parley's send → ack latency and outbox drain rate for this
// build (dist/) and another one, side by side in one run, rounds interleaved.
// Each build gets its own two processes (sender, receiver) on loopback TCP.
//
//   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci && npm run build)
//   npm run build && node test/bench/compare.mjs /tmp/before/dist/index.js [rounds] [messages]
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { killAll, spawnWorker } from './lib/rpc.mjs'
import { median } from './lib/stats.mjs'

const [other, roundsArg, countArg] = process.argv.slice(2)
if (other == null) {
  console.error('usage: node test/bench/compare.mjs <other build>/dist/index.js [rounds=5] [messages=1000]')
  process.exit(2)
}
const rounds = Number(roundsArg ?? 5)
const count = Number(countArg ?? 1000)
const dirs = []
const tempDir = async () => { const d = await mkdtemp(join(tmpdir(), 'parley-compare-')); dirs.push(d); return d }

try {
  const builds = []
  for (const [label, dist] of [['this build', undefined], [other, resolve(other)]]) {
    const env = dist == null ? {} : { PARLEY_BENCH_DIST: dist }
    const [a, b] = await Promise.all([spawnWorker('sender', { env }), spawnWorker('receiver', { env })])
    const tcp = ['/ip4/127.0.0.1/tcp/0']
    const bob = await b.call('parley:start', { name: 'b', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [] })
    const alice = await a.call('parley:start', { name: 'a', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [] })
    // alice is bob's contact: a stranger's messages past its request quota (50) would wait
    await b.call('parley:addContact', { name: 'b', contact: 'alice', peer: alice.peerId })
    await a.call('dial', { name: 'a', peer: bob.peerId, addrs: bob.addrs })
    builds.push({ label, a, peer: bob.peerId, drain: [], latency: [] })
  }
  for (let r = 0; r < rounds; r++) {
    for (const build of r % 2 === 0 ? builds : [...builds].reverse()) {
      const x = await build.a.call('tput:parley', { senders: [{ name: 'a', peer: build.peer }], count, size: 200 }, { timeout: 600_000 })
      build.drain.push(x.messages / x.seconds)
      build.latency.push(median(await build.a.call('lat:parley', { name: 'a', peer: build.peer, count: 100, size: 200 })))
    }
    console.error(`round ${r + 1}/${rounds}`)
  }
  for (const build of builds) {
    console.log(`${build.label}: outbox drain ${Math.round(median(build.drain))} msg/s (rounds: ${build.drain.map(Math.round).join(' ')}), send → ack p50 ${median(build.latency).toFixed(2)} ms (rounds: ${build.latency.map(x => x.toFixed(2)).join(' ')})`)
  }
  console.log(`(each round adds ${count + 100} messages to both stores: a store that slows down as it grows shows it round by round)`)
} finally {
  await killAll()
  await Promise.allSettled(dirs.map(async d => rm(d, { recursive: true, force: true })))
}
