// 9. A year of history: one node whose store holds 1,000,000 messages in
// 10,000 conversations (written through the store's own API), next to the
// same node with an empty store, in the same run. Each is its own process,
// both receive from the same sender over direct TCP loopback; every figure is
// a ratio of the full store's to the empty one's: send → ack, the receive
// rate, the first page of history and a page 10,000 messages back, status(),
// start-up time (createNode on the data dir) and RSS.
import { usage } from '../lib/proc.mjs'
import { rotate, summarize } from '../lib/stats.mjs'

export const title = 'Store at scale: 1,000,000 messages in 10,000 conversations vs an empty store'

export async function run ({ spawn, tempDir, scale, log }) {
  const conversations = Math.max(100, Math.round(10_000 * Math.min(1, scale)))
  const bigCount = Math.max(12_000, Math.round(20_000 * Math.min(1, scale)))
  const total = Math.max(conversations * 10, Math.round(1_000_000 * Math.min(1, scale)))
  const perConversation = Math.max(2, Math.floor((total - bigCount) / conversations))
  const rounds = Math.max(2, Math.round(4 * scale))
  const count = 50
  const size = 200
  const tcp = ['/ip4/127.0.0.1/tcp/0']
  const since = Date.now() - 366 * 24 * 3600_000
  const [a, full, empty] = await Promise.all([spawn('scale-sender'), spawn('scale-full', { execArgv: ['--expose-gc'] }), spawn('scale-empty', { execArgv: ['--expose-gc'] })])
  const alice = await a.call('parley:start', { name: 'a', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [] })

  const fullDir = await tempDir()
  const fillStart = performance.now()
  const filled = await full.call('store:fill', { dataDir: fullDir, conversations, perConversation, bigPeer: alice.peerId, bigCount, since }, { timeout: 1_800_000 })
  log(`  filled ${filled.rows} messages in ${conversations + 1} conversations in ${((performance.now() - fillStart) / 1000).toFixed(0)} s`)

  // start-up: createNode on each data dir (the full one first opened by its fill, so both are in the page cache)
  const starts = { full: [], empty: [] }
  const emptyDir = await tempDir()
  const dirs = { full: fullDir, empty: emptyDir }
  const workers = { full, empty }
  const nodes = {}
  for (let r = 0; r < rounds; r++) {
    for (const kind of rotate(['full', 'empty'], r)) {
      if (nodes[kind] != null) await workers[kind].call('parley:stop', { name: kind })
      nodes[kind] = await workers[kind].call('parley:start', { name: kind, dataDir: dirs[kind], listen: tcp, relays: [], bootstrap: [] })
      starts[kind].push(nodes[kind].ms)
    }
  }
  for (const kind of ['full', 'empty']) {
    await workers[kind].call('parley:addContact', { name: kind, contact: 'alice', peer: alice.peerId })
    await a.call('dial', { name: 'a', peer: nodes[kind].peerId, addrs: nodes[kind].addrs })
  }

  const samples = { ackFull: [], ackEmpty: [], rateFull: [], rateEmpty: [], firstFull: [], firstEmpty: [], deepFull: [], deepEmpty: [], deepTimeFull: [], statusFull: [], statusEmpty: [] }
  // the page that ends 10,000 messages back in alice's conversation (one a second from `since`)
  const deep = since + (bigCount - 10_000) * 1000
  const methods = {
    ackFull: () => a.call('lat:parley', { name: 'a', peer: nodes.full.peerId, count, size }),
    ackEmpty: () => a.call('lat:parley', { name: 'a', peer: nodes.empty.peerId, count, size }),
    // a loaded machine (another bench, other users) can make 1,000 messages take minutes
    rateFull: async () => [rate(await a.call('tput:parley', { senders: [{ name: 'a', peer: nodes.full.peerId }], count: 1000, size, timeout: 600_000 }, { timeout: 660_000 }))],
    rateEmpty: async () => [rate(await a.call('tput:parley', { senders: [{ name: 'a', peer: nodes.empty.peerId }], count: 1000, size, timeout: 600_000 }, { timeout: 660_000 }))],
    firstFull: () => full.call('parley:timeReads', { name: 'full', read: 'history', peer: alice.peerId }),
    firstEmpty: () => empty.call('parley:timeReads', { name: 'empty', read: 'history', peer: alice.peerId }),
    // paging back: the page before a message already shown (its id), 10,000 messages from the end
    deepFull: () => full.call('parley:timeReads', { name: 'full', read: 'history', peer: alice.peerId, beforeId: filled.deepId }),
    // the same page asked for by time, which is filtered row by row from the newest
    deepTimeFull: () => full.call('parley:timeReads', { name: 'full', read: 'history', peer: alice.peerId, before: deep }),
    // the empty store has no page 10,000 back: its first page is the baseline
    deepEmpty: () => empty.call('parley:timeReads', { name: 'empty', read: 'history', peer: alice.peerId }),
    statusFull: () => full.call('parley:timeReads', { name: 'full', read: 'status' }),
    statusEmpty: () => empty.call('parley:timeReads', { name: 'empty', read: 'status' })
  }
  for (const m of Object.values(methods)) await m()
  for (let r = 0; r < rounds; r++) {
    for (const name of rotate(Object.keys(methods), r)) samples[name].push(...await methods[name]())
    log(`  round ${r + 1}/${rounds}`)
  }
  const rss = {}
  for (const kind of ['full', 'empty']) {
    await workers[kind].call('gc')
    rss[kind] = (await usage(workers[kind].pid)).rssMb
  }
  await Promise.all([a.stop(), full.stop(), empty.stop()])

  const s = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v)]))
  const st = { full: summarize(starts.full), empty: summarize(starts.empty) }
  const rates = { full: s.rateFull.p50, empty: s.rateEmpty.p50 }
  const row = (metric, fullS, emptyS, target = 1.2) => {
    const ratio = fullS.p50 / emptyS.p50
    return { metric, parley: fullS, baseline: { name: 'the same, empty store', ...emptyS }, ratio, target: `≤ ${target}×`, met: ratio <= target }
  }
  return {
    raw: { conversations, perConversation, bigCount, rows: filled.rows, rounds, samples: s, starts: st, rss },
    rows: [
      row('send → ack RTT, recipient with 1,000,000 messages', s.ackFull, s.ackEmpty),
      { metric: 'receive rate, 1,000 messages pipelined, recipient with 1,000,000 messages', parley: { value: rates.full, unit: 'msg/s' }, baseline: { name: 'the same, empty store', value: rates.empty, unit: 'msg/s' }, ratio: rates.empty / rates.full, target: '≤ 1.2× (time per message)', met: rates.empty / rates.full <= 1.2 },
      row('history(), first page of 50', s.firstFull, s.firstEmpty),
      row('history(), a page of 50 ending 10,000 messages back (beforeId: the page before a message shown)', s.deepFull, s.deepEmpty),
      { ...row('history(), the same page asked for by time (before: ms)', s.deepTimeFull, s.deepEmpty), target: 'diagnostic', met: undefined },
      row('status()', s.statusFull, s.statusEmpty),
      row('start-up: createNode() on the data dir', st.full, st.empty, 1.5),
      { metric: 'RSS after GC, node started on the data dir and used', parley: { value: rss.full, unit: 'MB' }, baseline: { name: 'the same, empty store', value: rss.empty, unit: 'MB' }, ratio: rss.full / rss.empty, target: '≤ 1.2×', met: rss.full / rss.empty <= 1.2 }
    ]
  }
}

function rate ({ messages, seconds }) {
  return messages / seconds
}
