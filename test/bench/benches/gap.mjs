// 10. Receiving with a seq gap open: two /im senders that are not parley
// (lib/raw-im.mjs, bare libp2p nodes writing frames as the spec says), both
// contacts of one parley node with a data dir, each on its own connection.
// One never sends seq 1: its first 20,000 messages are held (the gap stays
// open: the node's gap timeout is a day here), and it goes on sending while
// they wait; the other sends in order. Their rounds alternate in the same run:
// the receive rate, each message's write → ack time and the recipient's CPU
// per message, with the gap open and 20,000 (and more) held, against no gap.
import { usage } from '../lib/proc.mjs'
import { rotate, summarize } from '../lib/stats.mjs'

export const title = 'Receive with a seq gap open and 20,000 messages held vs in order, raw /im senders, direct TCP loopback'

export async function run ({ spawn, tempDir, scale, log }) {
  const held = Math.max(2_000, Math.round(20_000 * Math.min(1, scale)))
  const rounds = Math.max(2, Math.round(4 * scale))
  const count = 2_000
  const size = 200
  const [r, s] = await Promise.all([spawn('gap-bob'), spawn('gap-senders')])
  const bob = await r.call('parley:start', {
    name: 'b',
    dataDir: await tempDir(),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    relays: [],
    bootstrap: [],
    gapTimeout: 24 * 3600_000,
    limits: { maxHeldPerPeer: held + rounds * count + count }
  })
  const addrs = bob.addrs.filter(a => a.startsWith('/ip4/127.0.0.1/'))
  const [inOrder, gapped] = await s.call('raw:start', { prefix: 'g', count: 2 })
  await r.call('parley:addContact', { name: 'b', contact: 'in-order', peer: inOrder })
  await r.call('parley:addContact', { name: 'b', contact: 'gapped', peer: gapped })

  const next = { plain: 1, gap: 2 }
  const names = { plain: 'g0', gap: 'g1' }
  const statuses = {}
  const send = async (kind, n) => {
    const before = await usage(r.pid)
    const result = await s.call('raw:send', { senders: [{ name: names[kind], from: next[kind] }], addrs, count: n, size }, { timeout: 900_000 })
    const after = await usage(r.pid)
    next[kind] += n
    for (const [k, v] of Object.entries(result.statuses)) statuses[k] = (statuses[k] ?? 0) + v
    return { ...result, cpuSeconds: after.cpuSeconds - before.cpuSeconds }
  }
  // the gap: seq 1 never comes, seqs 2 … held + 1 wait
  const fillStart = performance.now()
  await send('gap', held)
  log(`  ${held} messages held behind a gap in ${((performance.now() - fillStart) / 1000).toFixed(0)} s`)
  // warm-up for the in-order sender, not counted
  await send('plain', count)

  const samples = { plain: [], gap: [] }
  const rates = { plain: [], gap: [] }
  const cpu = { plain: 0, gap: 0 }
  for (let i = 0; i < rounds; i++) {
    for (const kind of rotate(['plain', 'gap'], i)) {
      const result = await send(kind, count)
      samples[kind].push(...result.latencies)
      rates[kind].push(result.messages / result.seconds)
      cpu[kind] += result.cpuSeconds
    }
    log(`  round ${i + 1}/${rounds}`)
  }
  await Promise.all([r.stop(), s.stop()])

  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  const rate = { plain: median(rates.plain), gap: median(rates.gap) }
  const lat = { plain: summarize(samples.plain), gap: summarize(samples.gap) }
  const perMessage = { plain: cpu.plain / (rounds * count) * 1e6, gap: cpu.gap / (rounds * count) * 1e6 }
  const heldAtEnd = held + rounds * count
  const notOk = Object.entries(statuses).filter(([k]) => k !== 'OK')
  return {
    raw: { held, heldAtEnd, rounds, count, size, rates, perMessage, statuses, summaries: lat },
    rows: [
      { metric: `receive rate, gap open with ${held.toLocaleString('en-US')}–${heldAtEnd.toLocaleString('en-US')} held (pipelined, 64 in flight)`, parley: { rate: rate.gap }, baseline: { name: 'the same node, a sender in order, same run', rate: rate.plain }, ratio: rate.gap / rate.plain, target: '≥ 0.83× (same cost)', met: rate.gap / rate.plain >= 1 / 1.2 },
      { metric: 'ack time per message (write → ack, 64 in flight), gap open', parley: lat.gap, baseline: { name: 'in order', ...lat.plain }, ratio: lat.gap.p50 / lat.plain.p50, target: '≤ 1.2×', met: lat.gap.p50 / lat.plain.p50 <= 1.2 },
      { metric: 'recipient CPU per message received, gap open', parley: { value: perMessage.gap, unit: 'µs' }, baseline: { name: 'in order', value: perMessage.plain, unit: 'µs' }, ratio: perMessage.gap / perMessage.plain, target: '≤ 1.2×', met: perMessage.gap / perMessage.plain <= 1.2 },
      ...(notOk.length === 0 ? [] : [{ metric: `acks other than OK: ${notOk.map(([k, n]) => `${k} ${n}`).join(', ')}`, parley: { text: 'see raw' } }])
    ]
  }
}
