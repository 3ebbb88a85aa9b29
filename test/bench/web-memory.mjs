// The web app's cost in the daemon's memory: the resident memory of a real
// `parley node` (the bundled command, as a user runs it) idle, then after
// as many API requests as what follows (the control: what any client costs),
// then after browsers loaded the app `--loads` times (a login link and its login, then
// every file of dist/web), then as many times again. Expects a built dist/.
// Uses dist/web as built; when it is missing, a stand-in of the app's budget
// (150 KB gzipped JS is about 450 KB of JS, a stylesheet, an icon) is put
// there for the run and removed after it.
//
//   npm run build && node test/bench/web-memory.mjs [--loads 300]
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { usage } from './lib/proc.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const WEB = join(ROOT, 'dist', 'web')
const NODE = existsSync(join(ROOT, 'node_modules/.bin/node')) ? join(ROOT, 'node_modules/.bin/node') : process.execPath
const { values: opts } = parseArgs({ options: { loads: { type: 'string', default: '300' } } })
const loads = Number(opts.loads)
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

async function standIn () {
  await mkdir(join(WEB, 'assets'), { recursive: true })
  const js = Array.from({ length: 9000 }, () => `export const v${randomBytes(6).toString('hex')} = () => ${randomBytes(8).toString('hex')};\n`).join('')
  await writeFile(join(WEB, 'assets', 'app-3f9a1c.js'), js)
  await writeFile(join(WEB, 'assets', 'app-3f9a1c.css'), ':root { color-scheme: light dark }\n'.repeat(800))
  await writeFile(join(WEB, 'assets', 'icon-77ab.svg'), `<svg xmlns="http://www.w3.org/2000/svg">${'<g/>'.repeat(400)}</svg>`)
  await writeFile(join(WEB, 'index.html'), '<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/assets/app-3f9a1c.css"><script type="module" src="/assets/app-3f9a1c.js"></script></head><body></body></html>\n')
}

async function files (dir) {
  const out = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...await files(path))
    else if (entry.isFile()) out.push('/' + relative(WEB, path).split('\\').join('/'))
  }
  return out
}

/** RSS after `ms` idle: the median of five readings a second apart. */
async function idleRss (pid, ms) {
  await sleep(ms)
  const readings = []
  for (let i = 0; i < 5; i++) {
    readings.push((await usage(pid)).rssMb)
    await sleep(1000)
  }
  return readings.sort((a, b) => a - b)[2]
}

const made = !existsSync(join(WEB, 'index.html'))
if (made) await standIn()
const dataDir = await mkdtemp(join(tmpdir(), 'parley-web-bench-'))
const daemon = spawn(NODE, [join(ROOT, 'dist/bin/parley.js'), 'node', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
try {
  await new Promise((resolve, reject) => {
    let out = ''
    daemon.stdout.on('data', chunk => { out += chunk; if (/^web app: /m.test(out)) resolve() })
    daemon.once('exit', code => { reject(new Error(`the daemon exited (${code})`)) })
  })
  daemon.stdout.resume()
  const api = JSON.parse(await readFile(join(dataDir, 'api.json'), 'utf8'))
  const paths = await files(WEB)
  const bytes = (await Promise.all(paths.map(async p => (await readFile(join(WEB, p))).length))).reduce((a, b) => a + b, 0)

  const load = async () => {
    const link = await (await fetch(`${api.url}/v1/login-links`, { method: 'POST', headers: { authorization: `Bearer ${api.token}` } })).json()
    const login = await fetch(link.url, { redirect: 'manual' })
    await login.arrayBuffer()
    const cookie = login.headers.get('set-cookie').split(';')[0]
    for (const path of ['/', ...paths]) {
      const res = await fetch(`${api.url}${path}`, { headers: { cookie } })
      if (res.status !== 200) throw new Error(`${path}: ${res.status}`)
      await res.arrayBuffer()
    }
    await (await fetch(`${api.url}/v1/conversations`, { headers: { cookie } })).arrayBuffer()
  }
  // the API's own path warmed first, so that what follows is the web app's
  for (let i = 0; i < 20; i++) await (await fetch(`${api.url}/v1/status`, { headers: { authorization: `Bearer ${api.token}` } })).arrayBuffer()
  const idle = await idleRss(daemon.pid, 5000)
  // the control: as many requests of the API alone (what any client costs the daemon's HTTP server)
  for (let i = 0; i < loads; i++) {
    for (let j = 0; j < paths.length + 4; j++) await (await fetch(`${api.url}/v1/status`, { headers: { authorization: `Bearer ${api.token}` } })).arrayBuffer()
  }
  const control = await idleRss(daemon.pid, 3000)
  const cpu0 = (await usage(daemon.pid)).cpuSeconds
  for (let i = 0; i < loads; i++) await load()
  const cpu1 = (await usage(daemon.pid)).cpuSeconds
  const after = await idleRss(daemon.pid, 3000)
  for (let i = 0; i < loads; i++) await load()
  const again = await idleRss(daemon.pid, 3000)
  const result = {
    app: made ? 'stand-in (dist/web was not built)' : 'dist/web',
    files: paths.length,
    appKiB: Math.round(bytes / 1024),
    loads,
    idleRssMb: +idle.toFixed(1),
    afterApiOnlyRssMb: +control.toFixed(1),
    afterRssMb: +after.toFixed(1),
    afterTwiceRssMb: +again.toFixed(1),
    apiOnlyGrowthMb: +(control - idle).toFixed(1),
    appGrowthMb: +(after - control).toFixed(1),
    appGrowthTwiceMb: +(again - control).toFixed(1),
    daemonCpuMsPerLoad: +((cpu1 - cpu0) * 1000 / loads).toFixed(2),
    load: loadavg().map(x => x.toFixed(2)).join(' ')
  }
  console.log(JSON.stringify(result, null, 2))
} finally {
  daemon.kill('SIGTERM')
  await new Promise(resolve => { if (daemon.exitCode != null) resolve(); else daemon.once('exit', resolve) })
  await rm(dataDir, { recursive: true, force: true })
  if (made) await rm(WEB, { recursive: true, force: true })
}
