// `npm run bench`: parley next to its baselines, in the same run, on the same
// machine. Prints one row per measurement (medians, p99 for latencies, and the
// ratio to the baseline), and writes test/bench/results/latest.json and
// latest.md. Expects a built dist/ (the npm script builds first).
//
//   npm run bench                          # every benchmark (about 10 minutes)
//   npm run bench -- --only latency,throughput
//   npm run bench -- --scale 0.5           # fewer rounds, for a quick look
//   npm run bench -- --out /tmp/results    # another results directory
//   npm run bench -- --only throughput --prof /tmp/prof
//                                          # every worker under node --cpu-prof;
//                                          # summarise with test/bench/profile.mjs
//   npm run bench -- --node-flags="--max-semi-space-size=1"
//                                          # every worker under these Node flags
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { killAll, spawnWorker } from './lib/rpc.mjs'
import { sig } from './lib/stats.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = join(HERE, '..', '..')
const BENCHES = ['latency', 'throughput', 'cold', 'relay', 'footprint', 'dht', 'flood', 'mailbox', 'group', 'file', 'store-scale', 'gap', 'conversations', 'relay-scale', 'network-scale']

const { values: opts } = parseArgs({
  options: {
    only: { type: 'string' },
    scale: { type: 'string', default: '1' },
    out: { type: 'string', default: join(HERE, 'results') },
    prof: { type: 'string' },
    'node-flags': { type: 'string', default: '' }
  }
})
const only = opts.only == null ? BENCHES : opts.only.split(',').map(s => s.trim())
for (const name of only) if (!BENCHES.includes(name)) throw new Error(`unknown benchmark ${name}; there are: ${BENCHES.join(', ')}`)
const scale = Number(opts.scale)
if (!existsSync(join(ROOT, 'dist', 'index.js'))) {
  console.error('dist/ is missing: run `npm run build` first (`npm run bench` does)')
  process.exit(1)
}

const log = (line) => { process.stderr.write(line + '\n') }

function machine () {
  const cpu = cpus()
  let fs = ''
  try { fs = execFileSync('df', ['-T', tmpdir()], { encoding: 'utf8' }).split('\n')[1]?.split(/\s+/)[1] ?? '' } catch {}
  return {
    cpu: `${cpu[0]?.model ?? '?'} × ${cpu.length}`,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    storeFs: `${tmpdir()} (${fs})`,
    loadAtStart: loadavg().map(x => x.toFixed(2)).join(' ')
  }
}

/** A latency ({p50, p99}), a rate ({rate}) or a value ({value, unit}) as table text. */
function fmt (x) {
  if (x == null) return ''
  if (x.text != null) return x.text
  if (x.p50 != null) return `${sig(x.p50)} ms (p99 ${sig(x.p99)})`
  if (x.rate != null) return `${Math.round(x.rate).toLocaleString('en-US')} msg/s`
  if (x.value != null) return `${sig(x.value)} ${x.unit ?? ''}`.trim()
  return ''
}

function markdown (results) {
  const lines = [
    '| benchmark | measurement | parley | baseline | ratio | target |',
    '|---|---|---|---|---|---|'
  ]
  for (const [bench, result] of Object.entries(results.benches)) {
    if (result.error != null) {
      lines.push(`| ${bench} | failed: ${result.error.split('\n')[0].replaceAll('|', '\\|')} | | | | |`)
      continue
    }
    for (const row of result.rows) {
      const baseline = row.baseline == null ? '' : `${fmt(row.baseline)}${row.baseline.name == null ? '' : `: ${row.baseline.name}`}`
      const ratio = row.ratio == null || !Number.isFinite(row.ratio) ? '' : `${sig(row.ratio, 2)}×`
      const target = row.target == null ? '' : `${row.target} ${row.met === true ? '✅' : row.met === false ? '❌' : ''}`
      lines.push(`| ${bench} | ${row.metric} | ${fmt(row.parley)} | ${baseline} | ${ratio} | ${target} |`)
    }
  }
  return lines.join('\n')
}

const temps = []
/** A fresh directory, removed at the end; `tmpfs`: on /dev/shm (memory: an fsync there waits for no disk), undefined where there is none. */
async function tempDir ({ tmpfs = false } = {}) {
  if (tmpfs && !existsSync('/dev/shm')) return undefined
  const dir = await mkdtemp(join(tmpfs ? '/dev/shm' : tmpdir(), 'parley-bench-'))
  temps.push(dir)
  return dir
}

const results = {
  command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
  startedAt: new Date().toISOString(),
  machine: machine(),
  benches: {}
}

const started = performance.now()
let failed = false
try {
  for (const name of only) {
    const bench = await import(`./benches/${name}.mjs`)
    log(`${name}: ${bench.title}`)
    const t0 = performance.now()
    const workers = []
    const spawn = async (label, options = {}) => {
      const execArgv = opts['node-flags'].split(/\s+/).filter(Boolean)
      if (opts.prof != null) execArgv.push('--cpu-prof', `--cpu-prof-dir=${opts.prof}`, `--cpu-prof-name=${name}-${label}-\${pid}.cpuprofile`)
      const w = await spawnWorker(label, { ...options, execArgv: [...execArgv, ...(options.execArgv ?? [])] })
      workers.push(w)
      return w
    }
    try {
      results.benches[name] = await bench.run({ spawn, tempDir, scale, log })
    } catch (err) {
      failed = true
      log(`${name} failed: ${err.stack}`)
      results.benches[name] = { error: String(err.message ?? err), rows: [] }
    } finally {
      await Promise.allSettled(workers.map(async w => w.stop()))
      results.benches[name].seconds = Math.round((performance.now() - t0) / 1000)
      log(`${name}: ${results.benches[name].seconds} s`)
    }
  }
} finally {
  await killAll()
  await Promise.allSettled(temps.map(async d => rm(d, { recursive: true, force: true })))
}
results.seconds = Math.round((performance.now() - started) / 1000)
results.machine.loadAtEnd = loadavg().map(x => x.toFixed(2)).join(' ')

const table = markdown(results)
await mkdir(opts.out, { recursive: true })
await writeFile(join(opts.out, 'latest.json'), JSON.stringify(results, null, 2) + '\n')
const m = results.machine
await writeFile(join(opts.out, 'latest.md'), [
  `# parley benchmarks, ${results.startedAt}`,
  '',
  `\`${results.command}\` in ${results.seconds} s on ${m.cpu}, ${m.memoryGb} GB, Linux ${m.kernel}, Node ${m.node}; store on ${m.storeFs}; load average ${m.loadAtStart} at start, ${m.loadAtEnd} at end.`,
  '',
  table,
  ''
].join('\n'))
console.log(table)
log(`\nwritten: ${relative(process.cwd(), join(opts.out, 'latest.json'))}, ${relative(process.cwd(), join(opts.out, 'latest.md'))} (${results.seconds} s)`)
process.exitCode = failed ? 1 : 0
