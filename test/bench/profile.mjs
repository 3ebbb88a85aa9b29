// Summarises V8 CPU profiles (from `npm run bench -- --prof <dir>`, or any
// `node --cpu-prof`): where the samples fall, by package and by function.
//   node test/bench/profile.mjs <file.cpuprofile>... [--top 25]
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } })
const top = Number(values.top)

/** "libp2p", "@libp2p/yamux", "parley" (the project's dist), "node:..." or "(program)"... */
function owner (url) {
  if (url === '') return '(native / runtime)'
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/')[0]
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  if (url.includes('/dist/')) return 'parley'
  if (url.includes('/test/bench/')) return 'bench harness'
  return url
}

for (const file of positionals) {
  const profile = JSON.parse(await readFile(file, 'utf8'))
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const self = new Map()
  for (const id of profile.samples) self.set(id, (self.get(id) ?? 0) + 1)
  const total = profile.samples.length
  const byOwner = new Map()
  const byFunction = new Map()
  for (const [id, count] of self) {
    const { callFrame } = byId.get(id)
    const o = callFrame.functionName.startsWith('(') ? callFrame.functionName : owner(callFrame.url)
    byOwner.set(o, (byOwner.get(o) ?? 0) + count)
    const fn = `${callFrame.functionName || '(anonymous)'} ${o === callFrame.functionName ? '' : `[${o}] ${callFrame.url.split('/').slice(-1)[0]}:${callFrame.lineNumber + 1}`}`
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + count)
  }
  const pct = (n) => `${(100 * n / total).toFixed(1).padStart(5)}%`
  const seconds = (profile.endTime - profile.startTime) / 1e6
  console.log(`\n${file}: ${total} samples over ${seconds.toFixed(1)} s`)
  console.log('  self time by package:')
  for (const [o, n] of [...byOwner].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(n)}  ${o}`)
  console.log('  self time by function:')
  for (const [f, n] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(n)}  ${f}`)
}
