// Messages sent one at a time, each awaited (send → ack), between two
// processes with both stores in memory: p50 and the CPU time each process
// spends per message, for this build or another; optionally under the V8
// profiler (summarise with test/bench/profile.mjs). `--echo`: the raw
// length-prefixed echo on the same connection instead, for its CPU per round
// trip. `--raw`: the sender is an /im client that is not parley
// (lib/raw-im.mjs), in rounds alternating with the echo on its own
// connection: the recipient's part alone (the in-memory measure).
// `--durable <dir> --durable <dir>`: the sender's and the recipient's stores
// on disk, each in a fresh directory under the one given (a tmpfs such as
// /dev/shm for the sender's takes its fsync off this machine's one disk, as
// on two users' machines, where it overlaps the round trip). `--gap <ms>`:
// each send (or echo) after that long with nothing sent, as a person's
// messages come, instead of back to back.
//
//   npm run build && node test/bench/lone-sends.mjs [--count 2000] [--dist <other build>/dist/index.js] [--prof <dir>] [--echo | --raw] [--durable <dir> --durable <dir>] [--gap <ms>]
import { parseArgs } from 'node:util'
import { mkdtempSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { killAll, spawnWorker } from './lib/rpc.mjs'
import { median } from './lib/stats.mjs'

const { values: opts } = parseArgs({ options: { count: { type: 'string', default: '2000' }, dist: { type: 'string' }, prof: { type: 'string' }, echo: { type: 'boolean', default: false }, raw: { type: 'boolean', default: false }, durable: { type: 'string', multiple: true }, gap: { type: 'string', default: '0' } } })
const count = Number(opts.count)
const env = opts.dist == null ? {} : { PARLEY_BENCH_DIST: resolve(opts.dist) }
const cpu = async (w) => { const u = await w.call('usage'); return { cpu: u.cpu.user + u.cpu.system, system: u.cpu.system, ...u.syscalls } }
// --durable <sender's dir> --durable <recipient's dir>: stores on disk, each under its own directory
const dataDirs = (opts.durable ?? []).map(dir => mkdtempSync(join(dir, 'parley-lone-')))
const [senderDir, recipientDir] = dataDirs
try {
  const [a, b] = await Promise.all([spawnWorker('sender', { env }), spawnWorker('recipient', { env })])
  const tcp = ['/ip4/127.0.0.1/tcp/0']
  const bob = await b.call('parley:start', { name: 'b', dataDir: recipientDir, listen: tcp, relays: [], bootstrap: [], echo: true })
  if (opts.raw) await rawRounds(a, b, bob)
  else await parleySends(a, b, bob, senderDir)
} finally {
  await killAll()
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
}

async function parleySends (a, b, bob, senderDir) {
  const alice = await a.call('parley:start', { name: 'a', dataDir: senderDir, listen: ['/ip4/127.0.0.1/tcp/0'], relays: [], bootstrap: [] })
  await b.call('parley:addContact', { name: 'b', contact: 'alice', peer: alice.peerId })
  await a.call('dial', { name: 'a', peer: bob.peerId, addrs: bob.addrs })
  const method = opts.echo ? 'lat:echo' : 'lat:parley'
  // warm-up, not counted
  await a.call(method, { name: 'a', peer: bob.peerId, count: 300, size: 200 })
  if (opts.prof != null) await Promise.all([a.call('profile:start'), b.call('profile:start')])
  const [a0, b0] = [await cpu(a), await cpu(b)]
  const samples = await a.call(method, { name: 'a', peer: bob.peerId, count, size: 200, gap: Number(opts.gap) }, { timeout: 600_000 })
  const [a1, b1] = [await cpu(a), await cpu(b)]
  const per = (x1, x0, key) => ((x1[key] - x0[key]) / count).toFixed(1)
  if (opts.prof != null) await Promise.all([a.call('profile:stop', { file: `${opts.prof}/sender.cpuprofile` }), b.call('profile:stop', { file: `${opts.prof}/recipient.cpuprofile` })])
  console.log(`${opts.echo ? 'echo' : 'parley'}: p50 ${median(samples).toFixed(3)} ms; CPU per message: sender ${((a1.cpu - a0.cpu) / count).toFixed(0)} µs (system ${per(a1, a0, 'system')}), recipient ${((b1.cpu - b0.cpu) / count).toFixed(0)} µs (system ${per(b1, b0, 'system')}); system calls per message (read/write): sender ${per(a1, a0, 'read')}/${per(a1, a0, 'write')}, recipient ${per(b1, b0, 'read')}/${per(b1, b0, 'write')}`)
}

/** Two rounds each of the raw client's messages and the echo on its connection, alternating; the second pair is reported (and profiled). */
async function rawRounds (a, b, bob) {
  const [raw] = await a.call('raw:start', { prefix: 'raw', count: 1 })
  await b.call('parley:addContact', { name: 'b', contact: 'raw', peer: raw })
  const addrs = bob.addrs.filter(addr => addr.startsWith('/ip4/127.0.0.1/'))
  await a.call('raw:connect', { names: ['raw0'], addrs })
  let seq = 1
  const messages = async (n) => {
    const run = await a.call('raw:send', { senders: [{ name: 'raw0', from: seq }], addrs, count: n, size: 200, window: 1 }, { timeout: 600_000 })
    seq += n
    if (run.statuses.OK !== n) throw new Error(`not all acknowledged OK: ${JSON.stringify(run.statuses)}`)
    return run.latencies
  }
  const echo = async (n) => a.call('raw:echo', { name: 'raw0', count: n, size: 200 }, { timeout: 600_000 })
  // warm-up, not counted
  await messages(300)
  await echo(300)
  for (let round = 1; round <= 2; round++) {
    const echoes = await echo(count)
    const profiled = opts.prof != null && round === 2
    if (profiled) await b.call('profile:start')
    const b0 = await cpu(b)
    const acks = await messages(count)
    const b1 = await cpu(b)
    if (profiled) await b.call('profile:stop', { file: `${opts.prof}/recipient.cpuprofile` })
    if (round === 1) continue
    console.log(`raw /im client → parley in memory: write → ack p50 ${median(acks).toFixed(3)} ms, echo on its connection ${median(echoes).toFixed(3)} ms: ${(median(acks) / median(echoes)).toFixed(2)}×; recipient CPU per message ${((b1.cpu - b0.cpu) / count).toFixed(0)} µs`)
  }
}
