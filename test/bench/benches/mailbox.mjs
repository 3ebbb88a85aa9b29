// 8. Mailboxes on loopback: a relay, a sender and a recipient in three
// processes. Deposit → stored: one message at a time to a recipient that is
// offline (sealed, deposited on its relay, confirmed, written), next to the
// direct send → ack between the same two nodes while both are online. Drain:
// the recipient starts with its mailbox full and fetches every message
// (opened, stored, deleted on the relay, receipts left for the sender), next
// to the same burst sent directly while both are online. The relay's
// per-sender rate limits and share are lifted for the measurement.
import { summarize } from '../lib/stats.mjs'

export const title = 'Mailbox: deposit → stored and drain rate, loopback, relay + sender + recipient processes'

export async function run ({ spawn, tempDir, scale, log }) {
  const count = Math.max(20, Math.round(100 * scale))
  const burst = Math.max(100, Math.round(500 * scale))
  const size = 200
  const tcp = ['/ip4/127.0.0.1/tcp/0']
  const [r, a, b] = await Promise.all([spawn('mailbox-relay'), spawn('mailbox-a'), spawn('mailbox-b')])
  // the relay's per-sender deposit rate (10/s, bursts of 50) and share of a
  // mailbox (25 %) lifted: what is measured is the path, not the limits
  const mailbox = { depositsPerSecondPerPeer: 1_000_000, depositBurstPerPeer: 1_000_000, depositsPerSecondPerIp: 1_000_000, depositBurstPerIp: 1_000_000, depositorSharePercent: 100 }
  const relay = await r.call('relay:start', { listen: tcp, dataDir: await tempDir(), mailbox })
  const relays = [relay.addrs[0]]
  const bobConfig = { name: 'b', dataDir: await tempDir(), listen: tcp, relays, mailboxAfter: 1 }
  const bob = await b.call('parley:start', bobConfig)
  const alice = await a.call('parley:start', { name: 'a', dataDir: await tempDir(), listen: tcp, relays, mailboxAfter: 1 })
  await b.call('parley:addContact', { name: 'b', contact: 'alice', peer: alice.peerId })
  // the invite carries Bob's mailbox record: no DHT lookup in what is measured
  await a.call('parley:addContact', { name: 'a', contact: 'bob', peer: await b.call('parley:invite', { name: 'b' }) })
  await Promise.all([a.call('mbox:open', { name: 'a' }), b.call('mbox:open', { name: 'b' })])
  await a.call('dial', { name: 'a', peer: bob.peerId, addrs: bob.addrs })

  // both online: the direct path between the same nodes
  await a.call('lat:parley', { name: 'a', peer: bob.peerId, count: 20, size })
  const direct = summarize(await a.call('lat:parley', { name: 'a', peer: bob.peerId, count, size }))
  const directBurst = await a.call('mbox:burst', { name: 'a', peer: bob.peerId, count: burst, size, status: 'delivered' })
  log(`  direct: ${direct.p50.toFixed(2)} ms p50; ${Math.round(directBurst.rate)} msg/s`)

  await b.call('parley:stop', { name: 'b' })
  // the first deposit waits out a failed dial and finds the record: not counted
  await a.call('mbox:stored', { name: 'a', peer: bob.peerId, count: 3, size })
  const stored = summarize(await a.call('mbox:stored', { name: 'a', peer: bob.peerId, count, size }))
  const storedBurst = await a.call('mbox:burst', { name: 'a', peer: bob.peerId, count: burst, size, status: 'stored' })
  log(`  stored: ${stored.p50.toFixed(2)} ms p50; ${Math.round(storedBurst.rate)} msg/s`)
  // only the mailbox can deliver now
  await a.call('parley:stop', { name: 'a' })
  const drained = await b.call('mbox:drain', { ...bobConfig, from: alice.peerId, count: count + 3 + burst })
  log(`  drained ${count + 3 + burst} in ${drained.fromOpen.toFixed(0)} ms from the session's start`)
  await Promise.all([a.stop(), b.stop(), r.stop()])

  // the relay's store alone, as a mailbox fills: a deposit's quota check must
  // not grow with what the mailbox holds (its limit is 10,000 by default)
  const s = await spawn('mailbox-store')
  // the first round warms the code up, and is not counted
  const [, few, full] = await s.call('mbox:storeDeposits', { dataDir: await tempDir(), fills: [10, 10, 10_000], count: Math.max(100, Math.round(400 * scale)), size: 1024 })
  await s.stop()
  const deposit = { few: summarize(few.wall), full: summarize(full.wall) }
  log(`  relay store deposit: ${few.cpuMicros.toFixed(0)} µs CPU with 10 in the mailbox, ${full.cpuMicros.toFixed(0)} µs with 10,000`)

  return {
    raw: { count, burst, size, direct, directBurst, stored, storedBurst, drained, storeDeposit: { few: { cpuMicros: few.cpuMicros, ...deposit.few }, full: { cpuMicros: full.cpuMicros, ...deposit.full } } },
    rows: [
      { metric: 'deposit → stored, one message at a time, recipient offline', parley: stored, baseline: { name: 'direct send → ack, same two nodes, both online', ...direct }, ratio: stored.p50 / direct.p50 },
      { metric: `deposit burst: ${burst} messages queued at once until all stored`, parley: { rate: storedBurst.rate }, baseline: { name: 'the same burst sent directly until all delivered', rate: directBurst.rate }, ratio: storedBurst.rate / directBurst.rate },
      { metric: `drain: ${count + 3 + burst} envelopes fetched, opened, stored and deleted (from the session's start)`, parley: { rate: drained.rate }, baseline: { name: 'the direct burst above', rate: directBurst.rate }, ratio: drained.rate / directBurst.rate },
      { metric: 'drain: from the recipient\'s start to its last message', parley: { value: drained.fromStart, unit: 'ms' } },
      { metric: 'relay store: CPU per deposit (quota checks + write), 10,000 envelopes in the mailbox', parley: { value: full.cpuMicros, unit: 'µs' }, baseline: { name: '10 in the mailbox', value: few.cpuMicros, unit: 'µs' }, ratio: full.cpuMicros / few.cpuMicros, target: '≤ 1.2× (flat)', met: full.cpuMicros / few.cpuMicros <= 1.2 },
      { metric: 'relay store: time per deposit (its own commit), 10,000 envelopes in the mailbox', parley: deposit.full, baseline: { name: '10 in the mailbox', ...deposit.few }, ratio: deposit.full.p50 / deposit.few.p50 }
    ]
  }
}
