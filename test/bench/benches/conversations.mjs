// 11. Throughput across conversations: 100 conversations writing at once into
// one parley node (a data dir, direct TCP loopback), against one conversation
// carrying the same total, rounds alternating in the same run. The senders
// are 100 identities that are not parley (lib/raw-im.mjs: bare libp2p nodes
// writing /im frames as the spec says, each on its own connection, all
// contacts of the node), in one process: what is measured is the receiving
// node's cost per conversation (its connections, streams, policy and inbox
// state, store rows per peer), which 100 parley nodes would bury under 100
// senders' own CPU on this 2-core machine.
//
// Every sender keeps up to 64 messages in flight (the /im window), so that
// both runs keep the node busy: the total acknowledged rate and the
// recipient's CPU per message. Each message's write → ack time is compared
// at about the same work in flight: the 100 conversations with one message
// in flight each (100 in all) against the one with 64; with 64 each, 6,400
// in flight, it would measure the queue.
import { usage } from '../lib/proc.mjs'
import { rotate, summarize } from '../lib/stats.mjs'

export const title = 'Throughput across conversations: 100 senders at once into one node vs one sender, raw /im senders, direct TCP loopback'

export async function run ({ spawn, tempDir, scale, log }) {
  const conversations = 100
  const rounds = Math.max(2, Math.round(4 * scale))
  const perConversation = Math.max(20, Math.round(200 * scale))
  const total = conversations * perConversation
  const size = 200
  const [r, s] = await Promise.all([spawn('conv-bob'), spawn('conv-senders')])
  const bob = await r.call('parley:start', { name: 'b', dataDir: await tempDir(), listen: ['/ip4/127.0.0.1/tcp/0'], relays: [], bootstrap: [] })
  const addrs = bob.addrs.filter(a => a.startsWith('/ip4/127.0.0.1/'))
  const [single] = await s.call('raw:start', { prefix: 'one', count: 1 })
  const many = await s.call('raw:start', { prefix: 'many', count: conversations }, { timeout: 120_000 })
  for (const [i, peer] of [single, ...many].entries()) await r.call('parley:addContact', { name: 'b', contact: `c${i}`, peer })

  await s.call('raw:connect', { names: ['one0', ...many.map((_, i) => `many${i}`)], addrs }, { timeout: 300_000 })

  const next = new Map()
  const statuses = {}
  const runs = {
    one: { senders: ['one0'], count: total, window: 64 },
    many: { senders: many.map((_, i) => `many${i}`), count: perConversation, window: 64 },
    paced: { senders: many.map((_, i) => `many${i}`), count: Math.max(5, Math.round(perConversation / 4)), window: 1 }
  }
  const kinds = Object.keys(runs)
  const send = async (kind) => {
    const { senders, count, window } = runs[kind]
    const before = await usage(r.pid)
    const result = await s.call('raw:send', { senders: senders.map(name => ({ name, from: next.get(name) ?? 1 })), addrs, count, size, window }, { timeout: 600_000 })
    const after = await usage(r.pid)
    for (const name of senders) next.set(name, (next.get(name) ?? 1) + count)
    for (const [k, v] of Object.entries(result.statuses)) statuses[k] = (statuses[k] ?? 0) + v
    return { ...result, cpuSeconds: after.cpuSeconds - before.cpuSeconds }
  }
  // warm-up (every connection dialled), not counted
  for (const kind of kinds) await send(kind)

  const samples = Object.fromEntries(kinds.map(k => [k, []]))
  const rates = Object.fromEntries(kinds.map(k => [k, []]))
  const cpu = Object.fromEntries(kinds.map(k => [k, 0]))
  const messages = Object.fromEntries(kinds.map(k => [k, 0]))
  for (let i = 0; i < rounds; i++) {
    for (const kind of rotate(kinds, i)) {
      const result = await send(kind)
      samples[kind].push(...result.latencies)
      rates[kind].push(result.messages / result.seconds)
      cpu[kind] += result.cpuSeconds
      messages[kind] += result.messages
    }
    log(`  round ${i + 1}/${rounds}`)
  }
  await Promise.all([r.stop(), s.stop()])

  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  const rate = Object.fromEntries(kinds.map(k => [k, median(rates[k])]))
  const lat = Object.fromEntries(kinds.map(k => [k, summarize(samples[k])]))
  const perMessage = Object.fromEntries(kinds.map(k => [k, cpu[k] / messages[k] * 1e6]))
  const notOk = Object.entries(statuses).filter(([k]) => k !== 'OK')
  return {
    raw: { conversations, perConversation, rounds, size, rates, perMessage, statuses, summaries: lat },
    rows: [
      { metric: `acknowledged rate, ${conversations} conversations at once (up to 64 in flight each)`, parley: { rate: rate.many }, baseline: { name: `one conversation, the same ${total.toLocaleString('en-US')} messages, 64 in flight`, rate: rate.one }, ratio: rate.many / rate.one, target: '≥ 0.83× (flat)', met: rate.many / rate.one >= 1 / 1.2 },
      { metric: `recipient CPU per message, ${conversations} conversations`, parley: { value: perMessage.many, unit: 'µs' }, baseline: { name: 'one conversation', value: perMessage.one, unit: 'µs' }, ratio: perMessage.many / perMessage.one, target: '≤ 1.2×', met: perMessage.many / perMessage.one <= 1.2 },
      { metric: `ack time per message (write → ack), ${conversations} conversations with 1 in flight each`, parley: lat.paced, baseline: { name: 'one conversation, 64 in flight', ...lat.one }, ratio: lat.paced.p50 / lat.one.p50 },
      { metric: `diagnostic: acknowledged rate, ${conversations} conversations with 1 in flight each`, parley: { rate: rate.paced }, baseline: { name: 'one conversation, 64 in flight', rate: rate.one }, ratio: rate.paced / rate.one },
      { metric: `diagnostic: recipient CPU per message, ${conversations} conversations with 1 in flight each (nothing to batch)`, parley: { value: perMessage.paced, unit: 'µs' }, baseline: { name: 'one conversation, 64 in flight', value: perMessage.one, unit: 'µs' }, ratio: perMessage.paced / perMessage.one },
      ...(notOk.length === 0 ? [] : [{ metric: `acks other than OK: ${notOk.map(([k, n]) => `${k} ${n}`).join(', ')}`, parley: { text: 'see raw' } }])
    ]
  }
}
