// One bench process: a parley node (or several), a relay, or bare libp2p
// peers, driven by the orchestrator (run.mjs) over IPC. Modules are loaded on
// first use, so that an idle worker is also the "bare Node.js process" baseline.
import { readFile } from 'node:fs/promises'
import { BUILD, buildModule } from './lib/build.mjs'
import { serve } from './lib/rpc.mjs'

const parley = new Map() // name -> ParleyNode
const bare = new Map() // name -> Libp2p
const echoes = new Map() // `${name}>${peer}` -> echo client
const closers = []
/** The stores `store:commits` writes, by data directory: kept open from call to call. */
const commitStores = new Map()
let relay
let circuitRun
let profiler
let dhtNet
let netReceived // body -> times shown, over every node of this process (benches/network-scale.mjs)
const floods = new Map() // name -> running flood (lib/flood.mjs)
let floodLib
let loopDelay
const loadFlood = async () => { floodLib ??= await import('./lib/flood.mjs'); return floodLib }
const raws = new Map() // name -> raw /im sender (lib/raw-im.mjs)

let dist
// the build under test: this tree's, or PARLEY_BENCH_DIST (lib/build.mjs)
const loadParley = async () => { dist ??= await import(BUILD); return dist }
let libs
const loadLibs = async () => {
  if (libs == null) {
    const [peerId, ma, echo, bareLib] = await Promise.all([
      import('@libp2p/peer-id'), import('@multiformats/multiaddr'), import('./lib/echo.mjs'), import('./lib/bare.mjs')
    ])
    libs = { peerIdFromString: peerId.peerIdFromString, multiaddr: ma.multiaddr, ...echo, ...bareLib }
  }
  return libs
}

/** Closes the echo clients the node `name` opened. */
async function closeEchoesOf (name) {
  for (const [key, client] of echoes) {
    if (key.startsWith(`${name}>`)) {
      echoes.delete(key)
      await client.close()
    }
  }
}

function libp2pOf (name) {
  const node = parley.get(name)?.libp2p ?? bare.get(name)
  if (node == null) throw new Error(`no node named ${name}`)
  return node
}

/** The open connection to `peer`: a direct one first, or a relayed one when `relayed`. */
function connectionTo (libp2p, peer, relayed = false) {
  const open = libp2p.getConnections().filter(c => c.remotePeer.toString() === peer && c.status === 'open')
  const conn = open.find(c => (c.limits != null) === relayed)
  if (conn == null) throw new Error(`no open ${relayed ? 'relayed' : 'direct'} connection to ${peer}`)
  return conn
}

async function echoClient (name, peer, relayed = false) {
  return keptClient(`${name}>${peer}>${relayed}`, async ({ openEcho }) => openEcho(connectionTo(libp2pOf(name), peer, relayed)))
}

/** The client kept under `key` (its name first, for closeEchoesOf) while its stream is open, else a new one from `open(libs)`. */
async function keptClient (key, open) {
  let client = echoes.get(key)
  if (client == null || client.stream.status !== 'open') {
    client = await open(await loadLibs())
    echoes.set(key, client)
  }
  return client
}

const payload = (size) => new Uint8Array(size).fill(0x6d)
/** How late this process's 100 ms ticks ran, for the last 10 s (what recentStalls reads): [when (performance.now()), ms late]. */
const ticks = []
let tickTimer
function watchStalls () {
  if (tickTimer != null) return
  let last = performance.now()
  tickTimer = setInterval(() => {
    const now = performance.now()
    ticks.push([now, now - last - 100])
    last = now
    if (ticks.length > 100) ticks.shift()
  }, 100)
  tickTimer.unref()
}
/** The event loop's stalls over the last 10 s: the longest, how long ago it ended, and the ticks over 250 ms late. */
function recentStalls () {
  const now = performance.now()
  const recent = ticks.filter(([at]) => now - at <= 10_000)
  const worst = recent.reduce((w, t) => t[1] > w[1] ? t : w, [now, 0])
  return { maxMs: Math.round(worst[1]), endedMsAgo: Math.round(now - worst[0]), over250ms: recent.filter(([, late]) => late > 250).length }
}
/**
 * `count` round trips of a `size`-byte frame, one at a time, on an echo-like
 * client: their times in ms. `gap` (ms): each starts after that long with
 * nothing sent, as a person's lone messages do; otherwise back to back.
 */
async function roundTrips (client, count, size, gap = 0) {
  const data = payload(size)
  const samples = []
  for (let i = 0; i < count; i++) {
    if (gap > 0) await sleep(gap)
    samples.push(await client.roundTrip(data))
  }
  return samples
}
const body = (size) => 'm'.repeat(size)
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor (check, target, event, timeout, what) {
  if (check()) return
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { target.removeEventListener(event, on); reject(new Error(`timed out waiting for ${what}`)) }, timeout)
    const on = () => {
      if (!check()) return
      clearTimeout(timer)
      target.removeEventListener(event, on)
      resolve()
    }
    target.addEventListener(event, on)
  })
}

const handlers = {
  /**
   * How long one durable commit of the store takes on this disk: `count`
   * enqueue() calls on the store in `dataDir`, each its own SQLite
   * transaction with synchronous=FULL (the write a sender makes before a
   * message goes out, and a recipient before its ack). The store is kept open
   * from call to call, as a node's is: once its write-ahead log has filled
   * (~1,000 pages, checkpointed), SQLite writes it again from its start, and
   * a commit's fsync then has no change of the file's size to write. A fresh
   * store's first commits append to the log, and cost more on this disk
   * (BENCHMARKS.md, "The floor's commit, measured as the nodes commit").
   */
  async 'store:commits' ({ dataDir, count, gap = 0 }) {
    let store = commitStores.get(dataDir)
    if (store == null) {
      const { Store } = await import(buildModule('./node/store/index.js'))
      const opened = store = new Store(`${dataDir}/commits.db`)
      commitStores.set(dataDir, store)
      closers.push(() => { opened.close() })
    }
    const samples = []
    for (let i = 0; i < count; i++) {
      if (gap > 0) await sleep(gap)
      const start = performance.now()
      store.enqueue({ peer: 'bench', id: crypto.randomUUID(), body: 'x'.repeat(200), contentType: 'text/plain', sentAt: Date.now() })
      samples.push(performance.now() - start)
    }
    return samples
  },
  /**
   * What one deposit costs the relay's mailbox store as a mailbox fills: for
   * each of `fills`, a fresh store in `dataDir` with one mailbox holding that
   * many envelopes of `size` bytes (written through `deposit()` in one
   * transaction), then `count` deposits as the service makes them (the
   * mailbox looked up, its quota and the depositor's checked, the envelope
   * written: its own commit, synchronous=FULL). The worker's CPU time per
   * deposit and each deposit's wall time.
   */
  async 'mbox:storeDeposits' ({ dataDir, fills, count, size }) {
    const { MailboxStore } = await import(buildModule('./relay/mailbox/store.js'))
    const { systemClock: clock } = await import(buildModule('./common/clock.js'))
    const envelope = crypto.getRandomValues(new Uint8Array(size))
    const results = []
    for (const fill of fills) {
      const store = await MailboxStore.open({ dataDir: `${dataDir}/${results.length}`, clock })
      try {
        const owner = crypto.getRandomValues(new Uint8Array(34))
        const now = Date.now()
        store.register(owner, now, now + 3600_000)
        const filler = store.depositorTag(owner, new Uint8Array([1]))
        store.db.exec('BEGIN')
        for (let i = 0; i < fill; i++) store.deposit({ mailbox: owner, envelope, storedAt: now, expiresAt: now + 3600_000, depositor: filler })
        store.db.exec('COMMIT')
        const depositor = store.depositorTag(owner, new Uint8Array([2]))
        const wall = []
        const cpu = process.cpuUsage()
        for (let i = 0; i < count; i++) {
          const start = performance.now()
          if (store.mailbox(owner, now) == null) throw new Error('no mailbox')
          store.usage(owner)
          store.depositorUsage(owner, depositor)
          store.deposit({ mailbox: owner, envelope, storedAt: now, expiresAt: now + 3600_000, depositor })
          wall.push(performance.now() - start)
        }
        const used = process.cpuUsage(cpu)
        results.push({ fill, cpuMicros: (used.user + used.system) / count, wall })
      } finally {
        store.close()
      }
    }
    return results
  },
  /**
   * Fills the message store of a data dir through the store's own API, as a
   * year of use would: `conversations` peers with `perConversation` messages
   * each (half sent and delivered, half received), plus `bigCount` messages
   * with `bigPeer`, one a second from `since`. Returns the rows written.
   */
  async 'store:fill' ({ dataDir, conversations, perConversation, bigPeer, bigCount, since }) {
    const { Store } = await import(buildModule('./node/store/index.js'))
    const { generateKeyPair } = await import('@libp2p/crypto/keys')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const store = new Store(`${dataDir}/messages.db`)
    const text = body(200)
    let rows = 0
    const ids = []
    const fill = (peer, count, start, keep = false) => {
      let seq = 0
      for (let i = 0; i < count; i++) {
        const at = start + i * 1000
        const id = crypto.randomUUID()
        if (i % 2 === 0) {
          store.enqueue({ peer, id, body: text, contentType: 'text/plain', sentAt: at })
          store.markDelivered(id, 'direct', at)
        } else {
          store.receive({ peer, id, seq: ++seq, body: text, contentType: 'text/plain', sentAt: at, receivedAt: at, path: 'direct' })
        }
        if (keep) ids.push(id)
        rows++
      }
    }
    try {
      for (let c = 0; c < conversations; c += 100) {
        const peers = await Promise.all(Array.from({ length: Math.min(100, conversations - c) }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
        store.transaction(() => { for (const peer of peers) fill(peer, perConversation, since) }, { durable: false })
      }
      for (let i = 0; i < bigCount; i += 10_000) {
        store.transaction(() => fill(bigPeer, Math.min(10_000, bigCount - i), since + i * 1000, true), { durable: false })
      }
      store.transaction(() => {}, { durable: true })
    } finally {
      store.close()
    }
    // the message 10,000 from the end of bigPeer's conversation: a page back from there
    return { rows, deepId: ids[Math.max(0, ids.length - 10_000)] }
  },
  /** Times `repeat` calls of a read of node `name`: history (a page, `before` or `beforeId`), status or conversations; ms each. */
  async 'parley:timeReads' ({ name, read, peer, limit = 50, before, beforeId, repeat = 20 }) {
    const node = parley.get(name)
    const calls = {
      history: () => node.history(peer, { limit, before, beforeId }),
      status: () => node.status(),
      conversations: () => node.conversations()
    }
    const samples = []
    for (let i = 0; i < repeat; i++) {
      const start = performance.now()
      calls[read]()
      samples.push(performance.now() - start)
    }
    return samples
  },
  async usage () {
    // read and write system calls so far (Linux: /proc/self/io), sockets and files alike
    const io = await readFile('/proc/self/io', 'utf8').catch(() => '')
    const count = (key) => Number(new RegExp(`^${key}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN)
    return { memory: process.memoryUsage(), cpu: process.cpuUsage(), syscalls: { read: count('syscr'), write: count('syscw') } }
  },
  async gc () {
    for (let i = 0; i < 3; i++) { globalThis.gc?.(); await sleep(20) }
    return process.memoryUsage()
  },
  /** Starts recording this process's event-loop delay (perf_hooks, 10 ms resolution). */
  async 'loop:start' () {
    const { monitorEventLoopDelay } = await import('node:perf_hooks')
    loopDelay?.disable()
    loopDelay = monitorEventLoopDelay({ resolution: 10 })
    loopDelay.elu = performance.eventLoopUtilization()
    loopDelay.enable()
  },
  /** Stops it: how late the loop was (p50, p99, max, ms), and the share of the time it was busy (ELU; a synchronous fsync counts as busy). */
  async 'loop:stop' () {
    const h = loopDelay
    loopDelay = undefined
    h.disable()
    const elu = performance.eventLoopUtilization(h.elu)
    // the histogram holds the time between the 10 ms timer's ticks: the delay is what exceeds 10 ms
    const late = (ns) => Math.max(0, ns / 1e6 - 10)
    return { p50: late(h.percentile(50)), p99: late(h.percentile(99)), max: late(h.max), busy: elu.utilization }
  },
  /** Starts the V8 CPU profiler in this process (for a section of a bench; see profile.mjs). */
  async 'profile:start' () {
    const { Session } = await import('node:inspector/promises')
    profiler = new Session()
    profiler.connect()
    await profiler.post('Profiler.enable')
    await profiler.post('Profiler.setSamplingInterval', { interval: 200 })
    await profiler.post('Profiler.start')
  },
  /** Stops it and writes the profile to `file` (a .cpuprofile). */
  async 'profile:stop' ({ file }) {
    const { writeFile } = await import('node:fs/promises')
    const { profile } = await profiler.post('Profiler.stop')
    profiler.disconnect()
    profiler = undefined
    await writeFile(file, JSON.stringify(profile))
  },
  /** Loads the parley package; ms it took. */
  async loadParley () {
    const start = performance.now()
    await loadParley()
    return performance.now() - start
  },

  // ---- parley nodes ----

  async 'parley:start' ({ name, echo = false, ...config }) {
    const { createNode } = await loadParley()
    const start = performance.now()
    // WebRTC on 127.0.0.1 like everything else here (ICE offers every interface by default)
    const node = await createNode({ iceBindAddress: '127.0.0.1', ...config })
    const ms = performance.now() - start
    parley.set(name, node)
    if (echo) await (await loadLibs()).handleEcho(node.libp2p)
    return { peerId: node.peerId.toString(), addrs: node.multiaddrs.map(a => a.toString()), ms }
  },
  async 'parley:stop' ({ name }) {
    const node = parley.get(name)
    parley.delete(name)
    await closeEchoesOf(name)
    await node?.stop()
  },
  /** Adds a contact on node `name` (peer ID or invite): its messages are then not a stranger's. */
  async 'parley:addContact' ({ name, contact, peer }) {
    return parley.get(name).addContact(contact, peer)
  },
  /** Strangers' message requests the node holds: how many peers, messages and body bytes. */
  async 'parley:requests' ({ name }) {
    const requests = parley.get(name).requests()
    return { peers: requests.length, messages: requests.reduce((n, r) => n + r.messages, 0), bytes: requests.reduce((n, r) => n + r.bytes, 0) }
  },
  async 'parley:stopAll' () {
    await Promise.allSettled([...parley.keys()].map(async name => handlers['parley:stop']({ name })))
  },
  /** Waits until the node holds a relay reservation; its addresses. */
  async 'parley:reserved' ({ name, timeout = 30_000 }) {
    const node = parley.get(name)
    const has = () => node.multiaddrs.some(a => a.toString().includes('/p2p-circuit'))
    await waitFor(has, node.libp2p, 'self:peer:update', timeout, 'a reservation')
    return node.multiaddrs.map(a => a.toString())
  },
  async 'parley:publish' ({ name }) {
    await parley.get(name).libp2p.services.peerRecords.publish()
  },
  /** Waits until the node has a DHT peer to ask. */
  async 'parley:dhtReady' ({ name, timeout = 30_000 }) {
    const node = parley.get(name)
    const dht = node.libp2p.services.dht
    const deadline = Date.now() + timeout
    while ((dht.routingTable?.size ?? 0) === 0) {
      if (Date.now() > deadline) throw new Error('no DHT peer in time')
      await sleep(10)
    }
  },

  // ---- bare libp2p nodes ----

  async 'bare:start' ({ name, listen = [], circuits = false, echo = false }) {
    const { bareNode, handleEcho } = await loadLibs()
    const start = performance.now()
    const node = await bareNode({ listen, circuits })
    const ms = performance.now() - start
    bare.set(name, node)
    if (echo) await handleEcho(node)
    return { peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()), ms }
  },
  /** Starts `count` bare nodes that each reserve a slot on `relay` and serve echo; `concurrency` at a time. */
  async 'bare:startMany' ({ prefix, count, relay: relayAddr, concurrency = 16, timeout = 60_000, heartbeat = false, withRetries = false }) {
    const { bareNode, handleEcho, reservedOn } = await loadLibs()
    const out = []
    let next = 0
    const one = async () => {
      while (next < count) {
        const i = next++
        const name = `${prefix}${i}`
        // on a loaded machine a reservation can miss the transport's 30 s
        // (libp2p then fails the start): counted, and tried again up to 4 times
        // (then given up on; `withRetries` returns those counts, otherwise they fail the call)
        for (let attempt = 1; ; attempt++) {
          let node
          try {
            node = await bareNode({ listen: [`${relayAddr}/p2p-circuit`], circuits: true, heartbeat })
            await handleEcho(node)
            const circuit = await reservedOn(node, timeout)
            bare.set(name, node)
            out.push({ name, peerId: node.peerId.toString(), circuit: circuit.toString() })
            break
          } catch (err) {
            await node?.stop().catch(() => {})
            retried.push(err.message.split('\n')[0])
            if (attempt === 5) {
              gaveUp++
              break
            }
          }
        }
      }
    }
    const retried = []
    let gaveUp = 0
    await Promise.all(Array.from({ length: concurrency }, one))
    if (withRetries) return { peers: out, retried, gaveUp }
    if (gaveUp > 0) throw new Error(`${gaveUp} nodes got no reservation: ${retried.at(-1)}`)
    return out
  },
  /** Pings sent so far by the heartbeats of the bare and parley nodes here, in all. */
  async 'heartbeats' () {
    let pinged = 0
    for (const node of bare.values()) pinged += node.services.heartbeat?.pinged ?? 0
    for (const node of parley.values()) pinged += node.libp2p.services.heartbeat.pinged
    return { pinged }
  },
  /**
   * Every bare node here asks `relay` for its reservation again, as a client
   * renewing one does (a RESERVE on a new HOP stream), `concurrency` at a
   * time; how many got OK.
   */
  async 'bare:reserveAgain' ({ relay: relayPeer, concurrency = 16 }) {
    const { peerIdFromString } = await loadLibs()
    const { pbStream } = await import('@libp2p/utils')
    const { HopMessage } = await import('../../dist/relay/pb/circuit.js')
    const relayId = peerIdFromString(relayPeer)
    const nodes = [...bare.values()]
    let next = 0
    let ok = 0
    let failed = 0
    const one = async () => {
      while (next < nodes.length) {
        const node = nodes[next++]
        try {
          const connection = node.getConnections(relayId).find(c => c.status === 'open')
          if (connection == null) throw new Error('no connection to the relay')
          const stream = await connection.newStream('/libp2p/circuit/relay/0.2.0/hop', { signal: AbortSignal.timeout(30_000) })
          const pb = pbStream(stream).pb(HopMessage)
          await pb.write({ type: HopMessage.Type.RESERVE })
          const answer = await pb.read({ signal: AbortSignal.timeout(30_000) })
          await stream.close()
          if (answer.status === 'OK') ok++
          else failed++
        } catch {
          failed++
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, one))
    return { ok, failed }
  },
  async 'bare:stop' ({ name }) {
    const node = bare.get(name)
    bare.delete(name)
    await closeEchoesOf(name)
    await node?.stop()
  },
  async 'bare:stopAll' () {
    const nodes = [...bare.values()]
    bare.clear()
    for (let i = 0; i < nodes.length; i += 50) {
      await Promise.allSettled(nodes.slice(i, i + 50).map(async n => n.stop()))
    }
  },
  async 'echo:handle' ({ name }) {
    await (await loadLibs()).handleEcho(libp2pOf(name))
  },

  // ---- groups ----

  /** Node `name` may dial each of `peers` ([peer ID, addrs]) directly. */
  async 'group:peers' ({ name, peers }) {
    const { multiaddr, peerIdFromString } = await loadLibs()
    const node = parley.get(name)
    await Promise.all(peers.map(async ([peer, addrs]) => node.libp2p.peerStore.merge(peerIdFromString(peer), { multiaddrs: addrs.map(a => multiaddr(a)) })))
  },
  async 'group:create' ({ name, group, members }) {
    return parley.get(name).createGroup(group, members)
  },
  /** Waits until node `name` knows the group `id`. */
  async 'group:known' ({ name, id, timeout = 60_000 }) {
    const node = parley.get(name)
    const deadline = Date.now() + timeout
    while (!node.groups().some(g => g.id === id)) {
      if (Date.now() > deadline) throw new Error(`${name} does not know group ${id}`)
      await new Promise(resolve => { node.addEventListener('group:change', resolve, { once: true }); setTimeout(resolve, 500) })
    }
  },
  /** `count` group sends one after the other: each sendGroup → every member delivered, in ms. */
  async 'group:send' ({ name, id, count, size }) {
    const node = parley.get(name)
    const text = body(size)
    const samples = []
    for (let i = 0; i < count; i++) {
      const start = performance.now()
      const result = await node.sendGroup(id, text, { timeout: 60_000 })
      samples.push(performance.now() - start)
      const late = result.recipients.filter(r => r.status !== 'delivered')
      if (late.length > 0) throw new Error(`${late.length} members not delivered: ${late.map(r => r.status).join(', ')}`)
    }
    return samples
  },
  /** Baseline: the same message as one-to-one messages to each of `peers` at once, until every one is acknowledged, in ms. */
  async 'group:oneToOne' ({ name, peers, count, size }) {
    const node = parley.get(name)
    const text = body(size)
    const samples = []
    for (let i = 0; i < count; i++) {
      const start = performance.now()
      await Promise.all(peers.map(async peer => node.send(peer, text, { timeout: 60_000 })))
      samples.push(performance.now() - start)
    }
    return samples
  },

  // ---- connections and round trips ----

  /** Dials `peer` at `addrs` from node `name`; one connection is then used by every method. */
  async dial ({ name, peer, addrs, force = false }) {
    const { multiaddr, peerIdFromString } = await loadLibs()
    const libp2p = libp2pOf(name)
    const peerId = peerIdFromString(peer)
    const targets = addrs.map(a => multiaddr(a))
    const start = performance.now()
    const conn = await libp2p.dial(targets.length === 1 ? targets[0] : targets, { signal: AbortSignal.timeout(30_000), force })
    return { ms: performance.now() - start, remoteAddr: conn.remoteAddr.toString(), limited: conn.limits != null, id: peerId.toString() }
  },
  /** Closes node `name`'s relayed (or direct) connections to `peer`. */
  async hangup ({ name, peer, relayed = false }) {
    const libp2p = libp2pOf(name)
    for (const [key, client] of echoes) if (key.startsWith(`${name}>${peer}>`)) { echoes.delete(key); await client.close() }
    await Promise.all(libp2p.getConnections().filter(c => c.remotePeer.toString() === peer && (c.limits != null) === relayed)
      .map(async c => c.close().catch(err => c.abort(err))))
  },
  /** `count` sends one after the other (or as many as `budget` ms allow, at least one): each send → ack in ms. */
  async 'lat:parley' ({ name, peer, count, size, budget = Infinity, gap = 0 }) {
    const node = parley.get(name)
    const text = body(size)
    const samples = []
    const until = performance.now() + budget
    for (let i = 0; i < count && (i === 0 || performance.now() < until); i++) {
      if (gap > 0) await sleep(gap)
      const start = performance.now()
      const receipt = await node.send(peer, text, { timeout: 30_000 })
      samples.push(performance.now() - start)
      if (receipt.status !== 'delivered') throw new Error('not delivered')
    }
    return samples
  },
  /**
   * libp2p ping (/ipfs/ping/1.0.0, 32 random bytes echoed) on one stream kept
   * open on the connection, as the ping spec allows. (Ping.ping() opens a
   * stream per ping and, back to back, trips over its own limit of one
   * outbound ping stream: the last one is seen to stay "open" with both halves
   * closed.)
   */
  async 'lat:ping' ({ name, peer, count }) {
    const libp2p = libp2pOf(name)
    const stream = await connectionTo(libp2p, peer).newStream(libp2p.services.ping.protocol, { runOnLimitedConnection: true })
    const source = stream[Symbol.asyncIterator]()
    const samples = []
    try {
      for (let i = 0; i < count; i++) {
        const data = crypto.getRandomValues(new Uint8Array(32))
        const start = performance.now()
        if (!stream.send(data)) await stream.onDrain()
        let got = 0
        while (got < data.length) {
          const { done, value } = await source.next()
          if (done) throw new Error('ping stream ended')
          got += value.byteLength
        }
        samples.push(performance.now() - start)
      }
    } finally {
      await stream.close().catch(err => stream.abort(err))
    }
    return samples
  },
  async 'lat:echo' ({ name, peer, count, size, relayed = false, gap = 0 }) {
    const client = await echoClient(name, peer, relayed)
    return roundTrips(client, count, size, gap)
  },
  /** The least a store-and-acknowledge messenger does (test/bench/lib/echo.mjs), on the echo's connection: round-trip times. */
  async 'lat:store-echo' ({ name, peer, count, size, gap = 0, ...variant }) {
    // variant: durable, senderSync, indexed, senderRoot (see openStoreEcho)
    const { durable, senderSync = false, indexed = false, senderRoot } = variant
    const client = await keptClient(`${name}>${peer}>store-echo>${durable}>${senderSync}>${indexed}>${senderRoot}`, async ({ openStoreEcho }) => openStoreEcho(connectionTo(libp2pOf(name), peer, false), variant))
    return roundTrips(client, count, size, gap)
  },
  /** The same least store-and-ack, each side's rows in parley's own store (test/bench/lib/echo.mjs), on the echo's connection: round-trip times. */
  async 'lat:parley-store-echo' ({ name, peer, count, size, durable }) {
    const client = await keptClient(`${name}>${peer}>parley-store-echo>${durable}`, async ({ openParleyStoreEcho }) => openParleyStoreEcho(connectionTo(libp2pOf(name), peer, false), durable))
    return roundTrips(client, count, size)
  },
  async 'tcp:server' () {
    const server = await (await loadLibs()).tcpEchoServer()
    closers.push(() => server.close())
    return server.port
  },
  async 'lat:tcp' ({ port, count, size }) {
    const client = await (await loadLibs()).tcpEchoClient(port)
    const data = Buffer.alloc(size, 0x6d)
    const samples = []
    try {
      for (let i = 0; i < count; i++) samples.push(await client.roundTrip(data))
    } finally {
      client.close()
    }
    return samples
  },

  /**
   * Each sender queues `count` messages for its peer, all at once (each
   * queue() is a durable write), then the clock runs until every one is
   * acknowledged, i.e. stored durably by the receiver: the outbox drains,
   * pipelined. Also returns how long the queue() calls took.
   */
  async 'tput:parley' ({ senders, count, size, timeout = 120_000, profile }) {
    const text = body(size)
    const runs = senders.map(({ name, peer }) => {
      const node = parley.get(name)
      const waiting = new Set()
      let delivered = 0
      const done = Promise.withResolvers()
      const onStatus = (evt) => {
        const { id, status, reason } = evt.detail
        if (status === 'delivered' && waiting.delete(id)) {
          delivered++
          if (delivered === count) done.resolve()
        } else if (status === 'failed' && waiting.has(id)) {
          done.reject(new Error(`message failed: ${reason}`))
        }
      }
      node.addEventListener('message:status', onStatus)
      return { node, peer, waiting, done, onStatus, delivered: () => delivered }
    })
    const queueStart = performance.now()
    for (let i = 0; i < count; i++) {
      for (const run of runs) run.waiting.add(run.node.queue(run.peer, text))
    }
    if (profile != null) await handlers['profile:start']()
    const cpu = process.cpuUsage()
    const start = performance.now()
    const timer = setTimeout(() => {
      for (const run of runs) run.done.reject(new Error(`${run.delivered()}/${count} delivered after ${timeout} ms`))
    }, timeout)
    try {
      await Promise.all(runs.map(run => run.done.promise))
    } finally {
      clearTimeout(timer)
      for (const run of runs) run.node.removeEventListener('message:status', run.onStatus)
      if (profile != null) await handlers['profile:stop']({ file: profile })
    }
    const used = process.cpuUsage(cpu)
    return { messages: count * senders.length, seconds: (performance.now() - start) / 1000, queueSeconds: (start - queueStart) / 1000, cpuSeconds: (used.user + used.system) / 1e6 }
  },
  /** Each sender runs `count` pipelined echoes (`window` in flight) on its raw stream, all at once. */
  async 'tput:echo' ({ senders, count, size, window }) {
    const data = payload(size)
    const clients = await Promise.all(senders.map(async ({ name, peer }) => echoClient(name, peer)))
    const start = performance.now()
    await Promise.all(clients.map(async c => c.pipelined(data, count, window)))
    return { messages: count * senders.length, seconds: (performance.now() - start) / 1000 }
  },

  // ---- raw /im senders, not parley (see lib/raw-im.mjs) ----

  /** Starts `count` raw senders named `${prefix}0`…; their peer IDs. */
  async 'raw:start' ({ prefix, count = 1 }) {
    const { rawSender } = await import('./lib/raw-im.mjs')
    const started = await Promise.all(Array.from({ length: count }, async () => rawSender()))
    started.forEach((sender, i) => { raws.set(`${prefix}${i}`, sender); closers.push(async () => sender.stop()) })
    return started.map(sender => sender.peerId)
  },
  /** The raw senders named `names` dial `addrs`, `concurrency` at a time (a node takes a few pending handshakes at once). */
  async 'raw:connect' ({ names, addrs, concurrency = 8 }) {
    const queue = [...names]
    await Promise.all(Array.from({ length: concurrency }, async () => {
      for (let name = queue.shift(); name != null; name = queue.shift()) await raws.get(name).connect(addrs)
    }))
  },
  /**
   * Each of `senders` ({ name, from }) sends `count` messages from seq `from`
   * to `addrs`, all at once, `window` unacknowledged each: the time from the
   * first write to the last ack of all, every message's write → ack time,
   * and the acks' statuses added up.
   */
  async 'raw:send' ({ senders, addrs, count, size, window = 64 }) {
    const start = performance.now()
    const runs = await Promise.all(senders.map(async ({ name, from }) => raws.get(name).send({ addrs, from, count, size, window })))
    const statuses = {}
    for (const run of runs) for (const [k, n] of Object.entries(run.statuses)) statuses[k] = (statuses[k] ?? 0) + n
    return { messages: count * senders.length, seconds: (performance.now() - start) / 1000, latencies: runs.flatMap(run => run.latencies), statuses }
  },
  /** The length-prefixed echo on the raw sender `name`'s connection (opened by raw:connect or raw:send): round-trip times. */
  async 'raw:echo' ({ name, count, size }) {
    const client = await keptClient(`${name}>raw-echo`, async ({ openEcho }) => openEcho(raws.get(name).connection))
    return roundTrips(client, count, size)
  },

  // ---- hostile strangers (see lib/flood.mjs) ----

  /** `identities` strangers start flooding `addrs` with /im messages (lib/flood.mjs startFlood); runs until flood:stop (or `duration`). */
  async 'flood:start' ({ flood: key = 'flood', ...options }) {
    if (floods.has(key)) throw new Error(`a flood ${key} is running`)
    floods.set(key, await (await loadFlood()).startFlood(options))
  },
  async 'flood:stop' ({ flood: key = 'flood' }) {
    const run = floods.get(key)
    floods.delete(key)
    return run?.stop()
  },
  async 'flood:stopAll' () {
    await Promise.allSettled([...floods.keys()].map(async flood => handlers['flood:stop']({ flood })))
  },
  /** Fresh strangers each send `count` messages (each until it has an ack of any status); counters. */
  async 'flood:send' (options) {
    return (await loadFlood()).sendFrom(options)
  },

  // ---- relay ----

  async 'relay:start' (config) {
    const { createRelay } = await loadParley()
    relay = await createRelay({ metrics: false, ...config })
    return { peerId: relay.peerId.toString(), addrs: relay.multiaddrs.map(a => a.toString()) }
  },
  async 'relay:status' () {
    const count = async (counter) => (await counter.get()).values.reduce((n, v) => n + v.value, 0)
    const { refusals, connectionsRefused, reservationsGranted, circuitsOpened } = relay.metrics
    return {
      reservations: relay.reservations,
      circuits: relay.circuits,
      connections: relay.libp2p.getConnections().length,
      memory: process.memoryUsage(),
      refusals: (await refusals.get()).values.filter(v => v.value > 0).map(v => ({ ...v.labels, count: v.value })),
      connectionsRefused: await count(connectionsRefused),
      reservationsGranted: await count(reservationsGranted),
      circuitsOpened: await count(circuitsOpened),
      heartbeat: { pinged: relay.libp2p.services.heartbeat.pinged, answered: relay.libp2p.services.heartbeat.answered, aborted: relay.libp2p.services.heartbeat.aborted }
    }
  },
  async 'relay:stop' () {
    await relay?.stop()
    relay = undefined
  },

  // ---- mailboxes ----

  async 'parley:invite' ({ name }) {
    return parley.get(name).invite()
  },
  /** Waits until every mailbox of node `name` has a session open. */
  async 'mbox:open' ({ name, timeout = 30_000 }) {
    const node = parley.get(name)
    await waitFor(() => node.status().mailboxes.length > 0 && node.status().mailboxes.every(m => m.connected), node, 'mailbox:change', timeout, `${name}'s mailboxes to open`)
  },
  /**
   * One message at a time from node `name` to `peer`, offline: ms from
   * queue() to `stored` (sealed, deposited, confirmed by the host, written).
   */
  async 'mbox:stored' ({ name, peer, count, size, timeout = 30_000 }) {
    const node = parley.get(name)
    const samples = []
    for (let i = 0; i < count; i++) {
      const sent = {}
      const stored = new Promise((resolve, reject) => {
        const timer = setTimeout(() => { node.removeEventListener('message:status', on); reject(new Error('timed out waiting for stored')) }, timeout)
        const on = (evt) => {
          if (evt.detail.id !== sent.id || evt.detail.status !== 'stored') return
          clearTimeout(timer)
          node.removeEventListener('message:status', on)
          resolve()
        }
        node.addEventListener('message:status', on)
      })
      const t0 = performance.now()
      sent.id = node.queue(peer, body(size))
      await stored
      samples.push(performance.now() - t0)
    }
    return samples
  },
  /** Queues `count` messages to `peer` at once; resolves once every one is `status` (ms, and the rate). */
  async 'mbox:burst' ({ name, peer, count, size, status, timeout = 120_000 }) {
    const node = parley.get(name)
    const waiting = new Set()
    const done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => { node.removeEventListener('message:status', on); reject(new Error(`timed out: ${waiting.size} not ${status}`)) }, timeout)
      const on = (evt) => {
        if (evt.detail.status !== status || !waiting.delete(evt.detail.id) || waiting.size > 0) return
        clearTimeout(timer)
        node.removeEventListener('message:status', on)
        resolve()
      }
      node.addEventListener('message:status', on)
    })
    const t0 = performance.now()
    for (let i = 0; i < count; i++) waiting.add(node.queue(peer, body(size)))
    await done
    const ms = performance.now() - t0
    return { ms, rate: count / (ms / 1000) }
  },
  /**
   * Starts node `name` (its mailbox full) and waits for `count` messages: ms
   * from the start call, and from its mailbox session opening, to the last.
   */
  async 'mbox:drain' ({ name, from, count, timeout = 120_000, ...config }) {
    const { createNode } = await loadParley()
    const t0 = performance.now()
    let opened
    const node = await createNode({ iceBindAddress: '127.0.0.1', ...config })
    parley.set(name, node)
    const isOpen = () => { if (opened == null && node.status().mailboxes.some(m => m.connected)) opened = performance.now() }
    node.addEventListener('mailbox:change', isOpen)
    isOpen()
    // the drain starts as the node does: count from its history, not only from events to come
    await waitFor(() => node.history(from, { limit: count }).length >= count, node, 'message', timeout, `${count} messages from the mailbox`)
    const end = performance.now()
    const since = opened ?? t0
    return { fromStart: end - t0, fromOpen: end - since, rate: count / ((end - since) / 1000) }
  },

  // ---- files (benches/file.mjs) ----

  /** Writes `size` random bytes to `path`: content no receiver has yet. */
  async 'file:make' ({ path, size }) {
    const { open } = await import('node:fs/promises')
    const { randomFillSync } = await import('node:crypto')
    const handle = await open(path, 'w')
    const block = new Uint8Array(1024 * 1024)
    for (let written = 0; written < size; written += block.length) {
      randomFillSync(block)
      await handle.write(block, 0, Math.min(block.length, size - written))
    }
    await handle.close()
  },
  /** Node `name` offers the file at `path` to `peer`: its id, and the ms hashing and queueing took. */
  async 'file:offer' ({ name, peer, path }) {
    const start = performance.now()
    const { id } = await parley.get(name).sendFile(peer, path)
    return { id, ms: performance.now() - start }
  },
  /** Node `name` waits for the offer `id`, accepts it, and waits for it to complete: ms from the accept. */
  async 'file:receive' ({ name, id, timeout = 300_000 }) {
    const node = parley.get(name)
    await waitFor(() => node.file(id) != null, node, 'file:offer', timeout, `the offer ${id}`)
    const start = performance.now()
    node.acceptFile(id)
    await waitFor(() => ['complete', 'failed'].includes(node.file(id)?.status), node, 'file:status', timeout, `the file ${id}`)
    const file = node.file(id)
    if (file.status !== 'complete') throw new Error(`the file failed: ${file.reason}`)
    return { ms: performance.now() - start, path: file.path }
  },
  async 'blob:handle' ({ name }) {
    const { handleBlob } = await import('./lib/blob.mjs')
    await handleBlob(libp2pOf(name))
  },
  /** Copies `path` from `peer` to `dest` over the direct connection (a WebRTC one when `webrtc`): ms. */
  async 'blob:fetch' ({ name, peer, path, dest, webrtc = false }) {
    const { fetchBlob } = await import('./lib/blob.mjs')
    const libp2p = libp2pOf(name)
    const connection = libp2p.getConnections().find(c => c.remotePeer.toString() === peer && c.status === 'open' && c.limits == null && c.remoteAddr.toString().includes('/webrtc') === webrtc)
    if (connection == null) throw new Error(`no open ${webrtc ? 'WebRTC' : 'direct'} connection to ${peer}`)
    const start = performance.now()
    const bytes = await fetchBlob(connection, path, dest)
    return { ms: performance.now() - start, bytes }
  },
  /** Node `name` learns `addrs` of `peer`, sends it a message and waits for the path to become direct. */
  async 'parley:direct' ({ name, peer, addrs, timeout = 60_000 }) {
    const { multiaddr, peerIdFromString } = await loadLibs()
    const node = parley.get(name)
    await node.libp2p.peerStore.merge(peerIdFromString(peer), { multiaddrs: addrs.map(a => multiaddr(a)) })
    await node.send(peer, 'hello', { timeout: 30_000 })
    await waitFor(() => node.pathTo(peer) === 'direct', node, 'path:change', timeout, 'a direct path')
  },

  // ---- cold first message ----

  /**
   * `send` from node `name` to a peer it knows by ID only; ms until the
   * receipt, and then until the path to it is direct (WebRTC), if it gets there
   * within `upgradeTimeout`.
   */
  async 'cold:send' ({ name, peer, size, upgradeTimeout = 20_000 }) {
    const node = parley.get(name)
    const start = performance.now()
    let directMs
    const direct = new Promise(resolve => {
      const on = (evt) => {
        if (evt.detail.peer === peer && evt.detail.path === 'direct') {
          directMs = performance.now() - start
          node.removeEventListener('path:change', on)
          resolve()
        }
      }
      node.addEventListener('path:change', on)
      setTimeout(resolve, upgradeTimeout).unref()
    })
    const receipt = await node.send(peer, body(size), { timeout: 30_000 })
    const sendMs = performance.now() - start
    await direct
    return { sendMs, path: receipt.path, directMs }
  },
  /** Baseline: a fresh bare node dials the peer's relay circuit address (known) and pings it. */
  async 'cold:baseline' ({ addr, peer }) {
    const { bareNode, multiaddr, peerIdFromString } = await loadLibs()
    const node = await bareNode({ circuits: true })
    try {
      const start = performance.now()
      await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(30_000) })
      await node.services.ping.ping(peerIdFromString(peer), { signal: AbortSignal.timeout(10_000) })
      return performance.now() - start
    } finally {
      await node.stop()
    }
  },

  // ---- a DHT network in this process ----

  /**
   * `servers` relays (DHT servers, each bootstrapped to up to 3 earlier ones)
   * and `clients` parley nodes behind them (no listener of their own: each
   * reserves on one relay, joins the DHT through 3 and publishes its signed
   * peer record). Resolves once every record is published.
   */
  async 'dht:build' ({ servers, clients, limits }) {
    const { createNode, createRelay } = await loadParley()
    const pick = (list, n) => [...list].sort(() => Math.random() - 0.5).slice(0, n)
    dhtNet = { relays: [], nodes: [] }
    const start = performance.now()
    for (let i = 0; i < servers; i++) {
      const bootstrap = pick(dhtNet.relays, 3).map(r => r.multiaddrs[0])
      dhtNet.relays.push(await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, metrics: false, limits }))
    }
    for (let i = 0; i < clients; i += 10) {
      dhtNet.nodes.push(...await Promise.all(Array.from({ length: Math.min(10, clients - i) }, async () => {
        const home = pick(dhtNet.relays, 1)[0]
        return createNode({ listen: [], relays: [home.multiaddrs[0]], bootstrap: pick(dhtNet.relays, 3).map(r => r.multiaddrs[0]) })
      })))
    }
    const built = performance.now()
    const published = await Promise.allSettled(dhtNet.nodes.map(async node => {
      await waitFor(() => node.multiaddrs.some(a => a.toString().includes('/p2p-circuit')), node.libp2p, 'self:peer:update', 60_000, 'a reservation')
      await node.libp2p.services.peerRecords.publish({ signal: AbortSignal.timeout(60_000) })
    }))
    return {
      buildSeconds: (built - start) / 1000,
      publishSeconds: (performance.now() - built) / 1000,
      published: published.filter(r => r.status === 'fulfilled').length,
      routingTables: dhtNet.relays.map(r => r.libp2p.services.dht.routingTable.size)
    }
  },
  /**
   * `count` lookups from random nodes of random other nodes, three ways:
   * parley's signed peer record (DHT get), the libp2p peer routing call the
   * router makes first (kad-dht FIND_NODE), and, as the baseline, a kad-dht
   * FIND_NODE of a DHT server (a relay), bypassing the peer store.
   */
  async 'dht:lookups' ({ count, timeout = 15_000 }) {
    const { nodes, relays } = dhtNet
    const rand = (list) => list[Math.floor(Math.random() * list.length)]
    const out = { record: [], findPeer: [], server: [] }
    const time = async (fn) => {
      const start = performance.now()
      let ok = false
      try { ok = await fn() } catch {}
      return { ok, ms: performance.now() - start }
    }
    for (let i = 0; i < count; i++) {
      const a = rand(nodes)
      let b = rand(nodes)
      while (b === a) b = rand(nodes)
      const target = b.peerId
      out.record.push(await time(async () => {
        const addrs = await a.libp2p.services.peerRecords.lookup(target, { signal: AbortSignal.timeout(timeout) })
        return addrs.some(x => x.toString().includes('/p2p-circuit'))
      }))
      out.findPeer.push(await time(async () => {
        const info = await a.libp2p.peerRouting.findPeer(target, { signal: AbortSignal.timeout(timeout) })
        return info.multiaddrs.length > 0
      }))
      const server = rand(relays)
      out.server.push(await time(async () => {
        for await (const event of a.libp2p.services.dht.findPeer(server.peerId, { useCache: false, signal: AbortSignal.timeout(timeout) })) {
          if (event.name === 'FINAL_PEER') return event.peer.multiaddrs.length > 0
        }
        return false
      }))
    }
    return out
  },
  async 'dht:stop' () {
    if (dhtNet == null) return
    const { nodes, relays } = dhtNet
    dhtNet = undefined
    await Promise.allSettled(nodes.map(async n => n.stop()))
    await Promise.allSettled(relays.map(async r => r.stop()))
  },

  // ---- a network at scale (benches/network-scale.mjs): many nodes in this process ----

  /**
   * Starts parley nodes in this process, `concurrency` at a time, each
   * counting the messages it is shown (by body: each bench message's body is
   * unique). A node `public` listens on 127.0.0.1 and serves the DHT;
   * otherwise it listens only through its relay, as behind NAT. Resolves
   * once each has its reservation (or listener) and its peer record is in the DHT.
   */
  async 'net:start' ({ nodes, bootstrap, connectionLimits, concurrency = 4, timeout = 120_000 }) {
    watchStalls()
    const { createNode } = await loadParley()
    netReceived ??= new Map()
    const out = []
    let next = 0
    const one = async () => {
      while (next < nodes.length) {
        const { name, relay: home, public: isPublic } = nodes[next++]
        const start = performance.now()
        const node = await createNode({
          listen: isPublic ? ['/ip4/127.0.0.1/tcp/0'] : [],
          relays: isPublic ? [] : [home],
          bootstrap,
          connectionLimits,
          iceBindAddress: '127.0.0.1'
        })
        parley.set(name, node)
        node.addEventListener('message', (evt) => { netReceived.set(evt.detail.body, (netReceived.get(evt.detail.body) ?? 0) + 1) })
        // a node with a dialable address serving the DHT, as kad-dht's
        // automatic mode would make it on a public address
        let reserved = true
        if (isPublic) await node.libp2p.services.dht.setMode('server')
        // counted, not fatal: under CPU starvation a reservation can take longer than any fixed wait
        else reserved = await waitFor(() => node.multiaddrs.some(a => a.toString().includes('/p2p-circuit')), node.libp2p, 'self:peer:update', timeout, 'a reservation').then(() => true, () => false)
        let published = false
        for (let attempt = 0; attempt < 3 && !published; attempt++) {
          try {
            await node.libp2p.services.peerRecords.publish({ signal: AbortSignal.timeout(30_000) })
            published = true
          } catch {
            await sleep(1_000)
          }
        }
        out.push({ name, peerId: node.peerId.toString(), public: isPublic, reserved, published, ms: performance.now() - start })
      }
    }
    await Promise.all(Array.from({ length: concurrency }, one))
    return out
  },
  /**
   * A DHT lookup from node `from` of node `to`: its signed peer record (what
   * the router falls back to) and, as the baseline, a kad-dht FIND_NODE walk
   * to the DHT server `server`, peer store bypassed. ms each, and whether found.
   */
  async 'net:lookup' ({ from, to, server, timeout = 30_000 }) {
    const { peerIdFromString } = await loadLibs()
    const libp2p = parley.get(from).libp2p
    const time = async (fn) => {
      const start = performance.now()
      let ok = false
      try { ok = await fn() } catch {}
      return { ok, ms: performance.now() - start }
    }
    const record = await time(async () => (await libp2p.services.peerRecords.lookup(peerIdFromString(to), { signal: AbortSignal.timeout(timeout) })).length > 0)
    const walk = await time(async () => {
      for await (const event of libp2p.services.dht.findPeer(peerIdFromString(server), { useCache: false, signal: AbortSignal.timeout(timeout) })) {
        if (event.name === 'FINAL_PEER') return event.peer.multiaddrs.length > 0
      }
      return false
    })
    return { record, walk }
  },
  /** Node `from` sends `body` to `to`, known by peer ID only: ms from send to ack, and the path. */
  async 'net:send' ({ from, to, body: text, timeout = 60_000 }) {
    const node = parley.get(from)
    // what the outbox went through on the way (attempts that did not get through and why)
    const steps = []
    const onStatus = (evt) => { if (evt.detail.peer === to) steps.push({ ms: Math.round(performance.now() - start), status: evt.detail.status, reason: evt.detail.reason?.slice(0, 400) }) }
    node.addEventListener('message:status', onStatus)
    const start = performance.now()
    try {
      const receipt = await node.send(to, text, { timeout })
      return { ms: performance.now() - start, status: receipt.status, path: receipt.path, steps }
    } catch (err) {
      return { ms: performance.now() - start, error: String(err.message ?? err), steps }
    } finally {
      node.removeEventListener('message:status', onStatus)
    }
  },
  /** What the sender `from` holds of the message with `body` in its outbox (status, attempts, last error, next attempt), and what it knows of the recipient's mailbox. */
  async 'net:outbox' ({ from, to, body }) {
    const node = parley.get(from)
    const entry = node.outbox().find(e => e.body === body)
    const mailbox = await node.mailboxOf(to, { signal: AbortSignal.timeout(10_000) }).then(m => m == null ? 'none known' : `${m.hosts.length} hosts`, err => `lookup failed: ${err.message}`)
    return { entry: entry == null ? undefined : { status: entry.status, attempts: entry.attempts, nextAttemptInMs: entry.nextAttemptAt - Date.now(), lastError: entry.lastError?.slice(0, 300) }, mailbox, connections: node.libp2p.getConnections().filter(c => c.remotePeer.toString() === to).map(c => `${c.status} ${c.remoteAddr}`) }
  },
  /** What node `name` looks like from inside: its connections, libp2p's pending inbound upgrades and dial queue, its addresses, and how late its process's timers run. */
  async 'net:probe' ({ name }) {
    const node = parley.get(name)
    const cm = node.libp2p.components?.connectionManager
    const lag = await new Promise(resolve => { const t = performance.now(); setTimeout(() => resolve(performance.now() - t - 10), 10) })
    return {
      connections: node.libp2p.getConnections().length,
      inboundPending: cm?.incomingPendingConnections,
      dialQueue: node.libp2p.getDialQueue().length,
      addrs: node.multiaddrs.map(String),
      timerLagMs: Math.round(lag),
      // the nodes of this process share one event loop: a stall of any stops every one of them accepting
      nodesInProcess: parley.size,
      stalls: recentStalls(),
      refused: node.libp2p.services.connectionGuard.refused,
      deniedIps: [...node.libp2p.services.connectionGuard.deniedIps ?? []]
    }
  },
  /** A fresh dial from `from` to `to` now, with what `from`'s peer store holds of `to`'s addresses: ms and the error, if any. */
  async 'net:dial' ({ from, to, timeout = 20_000 }) {
    const { peerIdFromString } = await loadLibs()
    const libp2p = parley.get(from).libp2p
    const peer = peerIdFromString(to)
    const known = await libp2p.peerStore.get(peer).then(p => p.addresses.map(a => String(a.multiaddr)), () => [])
    // a dial to the peer already under way: a new one joins it
    const queued = libp2p.getDialQueue().filter(d => d.peerId?.equals(peer)).map(d => ({ status: d.status, addrs: d.multiaddrs.map(String) }))
    const start = performance.now()
    try {
      const conn = await libp2p.dial(peer, { signal: AbortSignal.timeout(timeout) })
      return { known, queued, ms: Math.round(performance.now() - start), remoteAddr: String(conn.remoteAddr) }
    } catch (err) {
      return { known, queued, ms: Math.round(performance.now() - start), error: String(err.message ?? err).slice(0, 300) }
    }
  },
  /** The bodies this process's nodes were shown, with how many times each. */
  async 'net:received' () {
    return [...(netReceived ?? new Map())]
  },
  /** What this process's nodes hold: DHT routing table sizes, peer store sizes, connections. */
  async 'net:state' () {
    const nodes = [...parley.values()]
    const list = await Promise.all(nodes.map(async n => ({
      routingTable: n.libp2p.services.dht.routingTable?.size ?? 0,
      peerStore: (await n.libp2p.peerStore.all()).length,
      connections: n.libp2p.getConnections().length,
      refused: n.libp2p.services.connectionGuard.refused
    })))
    return { nodes: nodes.length, list }
  },

  // ---- circuits through the relay, carrying messages ----

  /**
   * Dials each pair's circuit address and keeps an echo stream on it sending
   * one `size`-byte message every `interval` ms, recording round-trip times.
   */
  async 'circuits:start' ({ pairs, interval, size, concurrency = Infinity }) {
    const { multiaddr } = await loadLibs()
    const data = payload(size)
    const run = { samples: [], errors: 0, stopped: false, loops: [] }
    circuitRun = run
    // at most `concurrency` dials at once
    let slots = concurrency
    const waiting = []
    const take = async () => { if (slots > 0) slots--; else await new Promise(resolve => waiting.push(resolve)) }
    const give = () => { const next = waiting.shift(); if (next != null) next(); else slots++ }
    const opened = await Promise.allSettled(pairs.map(async ({ from, addr, peer }) => {
      await take()
      try {
        return await openCircuit({ from, addr, peer })
      } finally {
        give()
      }
    }))
    async function openCircuit ({ from, addr, peer }) {
      const libp2p = libp2pOf(from)
      const started = performance.now()
      let stage = 'dial'
      try {
        await libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(30_000) })
        stage = 'echo stream'
        return await echoClient(from, peer, true)
      } catch (err) {
        throw new Error(`${stage} after ${Math.round(performance.now() - started)} ms: ${err.name}: ${err.message}`)
      }
    }
    const clients = opened.filter(r => r.status === 'fulfilled').map(r => r.value)
    const failures = opened.filter(r => r.status === 'rejected').map(r => r.reason?.message)
    run.loops = clients.map(async (client, i) => {
      await sleep(Math.random() * interval)
      while (!run.stopped) {
        const started = performance.now()
        try {
          const rtt = await client.roundTrip(data)
          if (run.measuring) run.samples.push(rtt)
        } catch {
          run.errors++
          return
        }
        await sleep(Math.max(0, interval - (performance.now() - started)))
      }
    })
    return { open: clients.length, failed: failures.length, firstError: failures[0], errors: failures.slice(0, 20) }
  },
  async 'circuits:measure' () {
    circuitRun.samples = []
    circuitRun.errors = 0
    circuitRun.measuring = true
  },
  async 'circuits:stop' () {
    const run = circuitRun
    run.stopped = true
    await Promise.all(run.loops)
    circuitRun = undefined
    return { samples: run.samples, errors: run.errors }
  }
}

async function stopAll () {
  if (circuitRun != null) circuitRun.stopped = true
  await Promise.allSettled([
    handlers['flood:stopAll'](),
    handlers['dht:stop'](),
    handlers['parley:stopAll'](),
    handlers['bare:stopAll'](),
    relay?.stop(),
    ...closers.map(async c => c())
  ])
}

serve(handlers, stopAll)
