// 9. Group fan-out on loopback: a sender and 10 or 50 members (in five
// processes beside the sender's), all with data dirs (every outbox row and
// every stored message durable). Fan-out time: sendGroup → every member has
// acknowledged its copy, one message at a time, connections open. Next to the
// same message sent as that many one-to-one messages at once (what a group
// message costs by construction: one carrier per member).
import { summarize } from '../lib/stats.mjs'

export const title = 'Group fan-out: sendGroup → every member acknowledged, 10 and 50 members on loopback'

const MEMBER_PROCESSES = 5

export async function run ({ spawn, tempDir, scale, log }) {
  const count = Math.max(5, Math.round(20 * scale))
  const size = 200
  const tcp = ['/ip4/127.0.0.1/tcp/0']
  const sender = await spawn('group-sender')
  const hosts = await Promise.all(Array.from({ length: MEMBER_PROCESSES }, async (_, i) => spawn(`group-members-${i}`)))
  const me = await sender.call('parley:start', { name: 's', dataDir: await tempDir(), listen: tcp })
  const members = []
  for (let i = 0; i < 50; i++) {
    const host = hosts[i % hosts.length]
    const name = `m${i}`
    const started = await host.call('parley:start', { name, dataDir: await tempDir(), listen: tcp })
    members.push({ host, name, peerId: started.peerId, addrs: started.addrs })
  }
  await sender.call('group:peers', { name: 's', peers: members.map(m => [m.peerId, m.addrs]) })
  await Promise.all(members.map(async m => m.host.call('group:peers', { name: m.name, peers: [[me.peerId, me.addrs]] })))
  // the sender is each member's contact, as the one who makes a family's group is: a
  // stranger's group (and a stranger's messages) would be held to the stranger quotas
  await Promise.all(members.map(async m => m.host.call('parley:addContact', { name: m.name, contact: 'sender', peer: me.peerId })))

  const rows = []
  const raw = {}
  for (const n of [10, 50]) {
    const group = members.slice(0, n)
    const created = await sender.call('group:create', { name: 's', group: `bench ${n}`, members: group.map(m => m.peerId) })
    await Promise.all(group.map(async m => m.host.call('group:known', { name: m.name, id: created.id })))
    // warm: connections open, statements prepared
    await sender.call('group:send', { name: 's', id: created.id, count: 3, size })
    await sender.call('group:oneToOne', { name: 's', peers: group.map(m => m.peerId), count: 3, size })
    const fanOut = summarize(await sender.call('group:send', { name: 's', id: created.id, count, size }))
    const oneToOne = summarize(await sender.call('group:oneToOne', { name: 's', peers: group.map(m => m.peerId), count, size }))
    log(`  ${n} members: ${fanOut.p50.toFixed(1)} ms p50 (one-to-one to each at once: ${oneToOne.p50.toFixed(1)} ms)`)
    raw[n] = { fanOut, oneToOne }
    rows.push({
      metric: `fan-out to ${n} members: sendGroup → every member acknowledged`,
      parley: fanOut,
      baseline: { name: `${n} one-to-one messages sent at once, until all acknowledged`, ...oneToOne },
      ratio: fanOut.p50 / oneToOne.p50
    })
  }
  await Promise.all([sender.stop(), ...hosts.map(async h => h.stop())])
  return { raw: { count, size, ...raw }, rows }
}
