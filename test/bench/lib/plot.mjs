// SVG line charts written as text: what benches/network-scale.mjs draws, with
// no plotting dependency. Each panel: network size on x, one line per series.

const W = 360
const H = 260
const M = { left: 56, right: 12, top: 28, bottom: 74 }
const COLOURS = ['#1f77b4', '#1f77b4', '#d62728', '#d62728', '#7f7f7f', '#2ca02c', '#9467bd']

const esc = (s) => String(s).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
const fmt = (x) => x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toPrecision(2)

/** A "nice" upper bound for an axis: 1, 2 or 5 × a power of ten at or above `max`. */
function niceMax (max) {
  if (!(max > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(max))
  return [1, 2, 5, 10].map(k => k * p).find(v => v >= max)
}

/**
 * One panel at (`x0`, `y0`): `series` is [{ name, points: [[x, y]], dashed }],
 * x on a log scale (network sizes), y linear from 0.
 */
function panel ({ x0, y0, title, unit, xs, series }) {
  const pw = W - M.left - M.right
  const ph = H - M.top - M.bottom
  const ymax = niceMax(Math.max(...series.flatMap(s => s.points.map(p => p[1])).filter(Number.isFinite)))
  const lx = (x) => Math.log(x)
  const [xmin, xmax] = [lx(Math.min(...xs)), lx(Math.max(...xs))]
  const px = (x) => M.left + (xmax === xmin ? pw / 2 : (lx(x) - xmin) / (xmax - xmin) * pw)
  const py = (y) => M.top + ph - (y / ymax) * ph
  const out = [`<g transform="translate(${x0},${y0})">`, `<text x="${W / 2}" y="16" text-anchor="middle" font-weight="bold">${esc(title)}</text>`]
  out.push(`<line x1="${M.left}" y1="${M.top + ph}" x2="${M.left + pw}" y2="${M.top + ph}" stroke="#000"/>`, `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + ph}" stroke="#000"/>`)
  for (let i = 0; i <= 4; i++) {
    const y = ymax * i / 4
    out.push(`<line x1="${M.left}" y1="${py(y)}" x2="${M.left + pw}" y2="${py(y)}" stroke="#ddd"/>`, `<text x="${M.left - 4}" y="${py(y) + 4}" text-anchor="end">${fmt(y)}</text>`)
  }
  out.push(`<text x="12" y="${M.top + ph / 2}" transform="rotate(-90 12 ${M.top + ph / 2})" text-anchor="middle">${esc(unit)}</text>`)
  for (const x of xs) out.push(`<text x="${px(x)}" y="${M.top + ph + 16}" text-anchor="middle">${x}</text>`)
  out.push(`<text x="${M.left + pw / 2}" y="${M.top + ph + 32}" text-anchor="middle">nodes</text>`)
  series.forEach((s, i) => {
    const colour = s.colour ?? COLOURS[i % COLOURS.length]
    const pts = s.points.filter(p => Number.isFinite(p[1]))
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${pts.map(p => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ')}"/>`)
    for (const p of pts) out.push(`<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3" fill="${colour}"/>`)
    const ly = M.top + ph + 46 + Math.floor(i / 2) * 14
    const lx0 = M.left + (i % 2) * (pw / 2)
    out.push(`<line x1="${lx0}" y1="${ly - 4}" x2="${lx0 + 18}" y2="${ly - 4}" stroke="${colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`, `<text x="${lx0 + 22}" y="${ly}">${esc(s.name)}</text>`)
  })
  out.push('</g>')
  return out.join('\n')
}

/** The network-scale figure: lookup and first-message latency (p50, p99) and memory per node against network size. */
export function networkScaleSvg (results) {
  const xs = results.map(r => r.size)
  const at = (f) => results.map(r => [r.size, f(r)])
  const panels = [
    {
      title: 'DHT lookup of a peer record',
      unit: 'ms',
      series: [
        { name: 'p50', points: at(r => r.lookup.p50) },
        { name: 'p99', points: at(r => r.lookup.p99), dashed: true },
        { name: 'FIND_NODE walk p50', points: at(r => r.walk.p50), colour: '#7f7f7f' },
        { name: 'FIND_NODE walk p99', points: at(r => r.walk.p99), colour: '#7f7f7f', dashed: true }
      ]
    },
    {
      title: 'First message by peer ID, send → ack',
      unit: 'ms',
      series: [
        { name: 'p50', points: at(r => r.first.p50), colour: '#d62728' },
        { name: 'p99', points: at(r => r.first.p99), colour: '#d62728', dashed: true }
      ]
    },
    {
      title: 'Memory per node',
      unit: 'MB',
      series: [
        { name: 'RSS', points: at(r => r.rssPerNodeMb), colour: '#2ca02c' },
        { name: 'JS heap', points: at(r => r.heapPerNodeMb), colour: '#9467bd' }
      ]
    }
  ]
  const width = W * panels.length
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H}" viewBox="0 0 ${width} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${H}" fill="#fff"/>`,
    ...panels.map((p, i) => panel({ x0: i * W, y0: 0, xs, ...p })),
    '</svg>',
    ''
  ].join('\n')
}

// `node test/bench/lib/plot.mjs <results.json> <out.svg>`: the figure again from
// saved results (network-scale.partial.json, or latest.json's raw.results)
if (import.meta.url === `file://${process.argv[1]}`) {
  const { readFile, writeFile } = await import('node:fs/promises')
  const saved = JSON.parse(await readFile(process.argv[2], 'utf8'))
  const results = Array.isArray(saved) ? saved : saved.benches['network-scale'].raw.results
  await writeFile(process.argv[3], networkScaleSvg(results))
}
