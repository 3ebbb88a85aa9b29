// File transfer: MiB/s of a 50 MiB file between two node processes, from the
// recipient's accept to the file complete (every chunk hash-verified, written,
// fsynced every 32 chunks, the whole SHA-256 checked), over direct TCP and over
// WebRTC (after the path upgrade through a relay). Baseline: the same bytes
// copied disk to disk over a raw libp2p stream of the same connection, with
// one fsync at the end. The sender's hashing (at the offer) is its own row.
import { join } from 'node:path'
import { median, rotate } from '../lib/stats.mjs'

export const title = 'File transfer: a 50 MiB file, accept → verified on disk, TCP and WebRTC, against a raw stream copy'

const RELAY_LIMITS = { inboundConnectionsPerSecond: 10_000, maxPendingConnections: 1024, maxReservationsPerIp: 100_000, maxReservationsPerSubnet: 100_000, maxCircuitsPerIp: 100_000, maxCircuitsPerSubnet: 100_000, maxConnectionsPerIp: 100_000, maxConnectionsPerSubnet: 100_000 }
const MiB = 1024 * 1024

export async function run ({ spawn, tempDir, scale, log }) {
  const rounds = Math.max(2, Math.round(3 * scale))
  const size = 50 * MiB
  const [relayWorker, a, b] = await Promise.all([spawn('file-relay'), spawn('file-sender'), spawn('file-receiver')])
  const relay = await relayWorker.call('relay:start', { listen: ['/ip4/127.0.0.1/tcp/0'], limits: RELAY_LIMITS })
  const files = await tempDir()
  const tcp = ['/ip4/127.0.0.1/tcp/0']
  // a file offered waits for the accept whatever its size: the clock starts there
  const receiver = { files: { autoAcceptSize: 1 } }

  const setups = {}
  {
    const alice = await a.call('parley:start', { name: 'a', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [] })
    const bob = await b.call('parley:start', { name: 'b', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [], ...receiver })
    await a.call('dial', { name: 'a', peer: bob.peerId, addrs: bob.addrs })
    setups.tcp = { sender: 'a', receiver: 'b', senderId: alice.peerId, receiverId: bob.peerId, webrtc: false }
  }
  {
    const relayed = { listen: ['/webrtc'], relays: [relay.addrs[0]], bootstrap: [] }
    const alice = await a.call('parley:start', { name: 'a2', dataDir: await tempDir(), ...relayed })
    const bob = await b.call('parley:start', { name: 'b2', dataDir: await tempDir(), ...relayed, ...receiver })
    const [, bobAddrs] = await Promise.all([a.call('parley:reserved', { name: 'a2' }), b.call('parley:reserved', { name: 'b2' })])
    await a.call('parley:direct', { name: 'a2', peer: bob.peerId, addrs: bobAddrs })
    setups.webrtc = { sender: 'a2', receiver: 'b2', senderId: alice.peerId, receiverId: bob.peerId, webrtc: true }
  }
  await Promise.all([a.call('blob:handle', { name: 'a' }), a.call('blob:handle', { name: 'a2' })])

  let n = 0
  const offerMs = []
  const once = async (setup, how) => {
    const path = join(files, `f${n++}`)
    await a.call('file:make', { path, size })
    if (how === 'parley') {
      const { id, ms } = await a.call('file:offer', { name: setup.sender, peer: setup.receiverId, path })
      offerMs.push(ms)
      const got = await b.call('file:receive', { name: setup.receiver, id }, { timeout: 300_000 })
      return size / MiB / (got.ms / 1000)
    }
    const got = await b.call('blob:fetch', { name: setup.receiver, peer: setup.senderId, path, dest: join(files, `raw${n}`), webrtc: setup.webrtc }, { timeout: 300_000 })
    if (got.bytes !== size) throw new Error(`the raw copy carried ${got.bytes} of ${size} bytes`)
    return size / MiB / (got.ms / 1000)
  }
  const methods = {
    'parley-tcp': () => once(setups.tcp, 'parley'),
    'raw-tcp': () => once(setups.tcp, 'raw'),
    'parley-webrtc': () => once(setups.webrtc, 'parley'),
    'raw-webrtc': () => once(setups.webrtc, 'raw')
  }
  const rates = Object.fromEntries(Object.keys(methods).map(k => [k, []]))
  for (const name of Object.keys(methods)) await methods[name]() // warm-up
  offerMs.length = 0
  for (let r = 0; r < rounds; r++) {
    for (const name of rotate(Object.keys(methods), r)) rates[name].push(await methods[name]())
    log(`  round ${r + 1}/${rounds}: ${Object.entries(rates).map(([k, v]) => `${k} ${v.at(-1).toFixed(1)} MiB/s`).join(', ')}`)
  }
  await Promise.all([a.stop(), b.stop(), relayWorker.stop()])
  const ratio = (p, r) => median(rates[p].map((x, i) => x / rates[r][i]))
  const mibs = (x) => ({ value: x, unit: 'MiB/s' })
  const tcpRatio = ratio('parley-tcp', 'raw-tcp')
  const webrtcRatio = ratio('parley-webrtc', 'raw-webrtc')
  return {
    raw: { rounds, size, rates, offerMs },
    rows: [
      { metric: 'direct TCP, 50 MiB, accept → verified on disk', parley: mibs(median(rates['parley-tcp'])), baseline: { ...mibs(median(rates['raw-tcp'])), name: 'raw libp2p stream copying the file, same connection' }, ratio: tcpRatio, target: '≥ 0.8×', met: tcpRatio >= 0.8 },
      { metric: 'WebRTC (after the upgrade), 50 MiB', parley: mibs(median(rates['parley-webrtc'])), baseline: { ...mibs(median(rates['raw-webrtc'])), name: 'raw libp2p stream copying the file, same WebRTC connection' }, ratio: webrtcRatio, target: '≥ 0.8×', met: webrtcRatio >= 0.8 },
      { metric: 'sendFile on 50 MiB: hash (chunks, root, SHA-256) and queue the offer', parley: { value: median(offerMs), unit: 'ms' } }
    ]
  }
}
