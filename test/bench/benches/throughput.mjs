// 2. Throughput: acknowledged (so durably stored by the receiver) messages per
// second between two node processes, pipelined as /im allows (64 unacked per
// stream), in one conversation and in 10 at once (10 senders, one receiver).
// The sender queues all the messages (durably), then the clock runs until the
// last ack: the rate at which an outbox drains. Baseline: the same number of
// 200-byte frames through a pipelined length-prefixed echo (64 in flight) on
// a raw libp2p stream of each of the same connections. How fast queue() itself
// is (one durable SQLite transaction per call) is reported on its own row.
import { median, rotate } from '../lib/stats.mjs'

export const title = 'Throughput: acknowledged durable messages/s, two processes, 1 and 10 conversations'

export async function run ({ spawn, tempDir, scale, log }) {
  const rounds = Math.max(2, Math.round(4 * scale))
  const size = 200
  const window = 64
  const one = Math.round(2000 * Math.max(0.5, scale))
  const perConversation = Math.round(400 * Math.max(0.5, scale))
  const senders = 10
  const [a, b] = await Promise.all([spawn('throughput-senders'), spawn('throughput-receiver')])
  const tcp = ['/ip4/127.0.0.1/tcp/0']
  const bob = await b.call('parley:start', { name: 'b', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [], echo: true })
  const names = Array.from({ length: senders }, (_, i) => `a${i}`)
  for (const name of names) {
    const sender = await a.call('parley:start', { name, dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [] })
    // the senders are bob's contacts: a stranger's messages would wait as a request past a quota
    await b.call('parley:addContact', { name: 'b', contact: name, peer: sender.peerId })
    await a.call('dial', { name, peer: bob.peerId, addrs: bob.addrs })
  }
  const single = [{ name: 'a0', peer: bob.peerId }]
  const all = names.map(name => ({ name, peer: bob.peerId }))
  const rate = (r) => r.messages / r.seconds
  const queueRates = []
  const parleyRate = (r) => { queueRates.push(r.messages / r.queueSeconds); return rate(r) }
  // CPU time per message in each process, 1 conversation (process.cpuUsage: user + system)
  const cpu = { parley: { sender: [], receiver: [] }, echo: { sender: [], receiver: [] } }
  const cpuOf = async (w) => { const u = await w.call('usage'); return (u.cpu.user + u.cpu.system) / 1e6 }
  const withCpu = async (into, fn) => {
    const [a0, b0] = await Promise.all([cpuOf(a), cpuOf(b)])
    const r = await fn()
    const [a1, b1] = await Promise.all([cpuOf(a), cpuOf(b)])
    // the sender's queue() calls are not part of the drain: tput:parley counts its own CPU
    into.sender.push(1e6 * (r.cpuSeconds ?? (a1 - a0)) / r.messages)
    into.receiver.push(1e6 * (b1 - b0) / r.messages)
    return r
  }

  const methods = {
    'parley-1': async () => parleyRate(await withCpu(cpu.parley, async () => a.call('tput:parley', { senders: single, count: one, size }))),
    'echo-1': async () => rate(await withCpu(cpu.echo, async () => a.call('tput:echo', { senders: single, count: one, size, window }))),
    'parley-10': async () => parleyRate(await a.call('tput:parley', { senders: all, count: perConversation, size })),
    'echo-10': async () => rate(await a.call('tput:echo', { senders: all, count: perConversation, size, window }))
  }
  const rates = Object.fromEntries(Object.keys(methods).map(k => [k, []]))
  // warm-up, not counted: every method, as a running node is warm (the
  // first 10-conversation round also opens nine /im streams and prepares
  // nine stores' statements, which the cold start bench measures)
  for (const method of Object.values(methods)) await method()
  for (const side of [cpu.parley, cpu.echo]) { side.sender.length = 0; side.receiver.length = 0 }
  queueRates.length = 0
  for (let r = 0; r < rounds; r++) {
    for (const name of rotate(Object.keys(methods), r)) rates[name].push(await methods[name]())
    log(`  round ${r + 1}/${rounds}: ${Object.entries(rates).map(([k, v]) => `${k} ${Math.round(v.at(-1))}/s`).join(', ')}`)
  }
  await Promise.all([a.stop(), b.stop()])

  const m = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v)]))
  // parley and its baseline ran in the same round, under the same load: the
  // ratio is the median of the per-round ratios
  const r1 = median(rates['parley-1'].map((x, i) => x / rates['echo-1'][i]))
  const r10 = median(rates['parley-10'].map((x, i) => x / rates['echo-10'][i]))
  return {
    raw: { rounds, size, window, one, perConversation, senders, rates, queueRates, cpu },
    rows: [
      { metric: `1 conversation, ${one} messages`, parley: { rate: m['parley-1'] }, baseline: { rate: m['echo-1'], name: 'pipelined length-prefixed echo, raw libp2p stream, same connection' }, ratio: r1, target: '≥ 0.7×', met: r1 >= 0.7 },
      { metric: `${senders} conversations at once, ${perConversation} messages each`, parley: { rate: m['parley-10'] }, baseline: { rate: m['echo-10'], name: `${senders} pipelined echo streams, same connections` }, ratio: r10, target: '≥ 0.7×', met: r10 >= 0.7 },
      {
        metric: 'CPU per message, 1 conversation: sender / receiver process',
        parley: { text: `${median(cpu.parley.sender).toFixed(0)} / ${median(cpu.parley.receiver).toFixed(0)} µs` },
        baseline: { text: `${median(cpu.echo.sender).toFixed(0)} / ${median(cpu.echo.receiver).toFixed(0)} µs`, name: 'the echo above' },
        ratio: Math.max(median(cpu.parley.sender), median(cpu.parley.receiver)) / Math.max(median(cpu.echo.sender), median(cpu.echo.receiver))
      },
      { metric: 'queue() calls (each one durable SQLite transaction, synchronous=FULL)', parley: { text: `${Math.round(median(queueRates)).toLocaleString('en-US')} calls/s` } }
    ]
  }
}
