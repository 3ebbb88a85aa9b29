// Hostile /im/1.0.0 senders for the flood bench: bare libp2p nodes (TCP,
// Noise, yamux, as test/fixtures/raw-im.ts builds them) that write messages as
// the spec frames them, pipelined, and ignore what the recipient answers: a
// RATE_LIMITED ack is counted, not obeyed, and a closed connection is dialled
// again. Every loop here ends by count and by time.
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import * as lp from 'it-length-prefixed'
import { createLibp2p } from 'libp2p'
import { buildModule } from './build.mjs'

// the frame codec of the build under test (see build.mjs)
const IM = buildModule('./protocols/im/index.js')
const { Frame, PROTOCOL } = await import(IM)

const STATUS = ['OK', 'DUPLICATE', 'TOO_LARGE', 'INVALID', 'BLOCKED', 'RATE_LIMITED']
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

/** A stranger: a fresh identity, no listener, nothing but TCP + Noise + yamux. */
export async function strangerNode () {
  return createLibp2p({
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // it dials one peer again and again: no dial queue limits in the way
    connectionManager: { maxParallelDials: 1024 }
  })
}

/** Counters shared by every identity of one run. */
export function newStats () {
  return {
    framesSent: 0,
    bytesSent: 0,
    acks: Object.fromEntries(STATUS.map(s => [s, 0])),
    /** /im streams opened (a dial, or a stream on a connection still open). */
    sessions: 0,
    /** Distinct connections those were on. */
    connections: 0,
    /** Dials or stream opens that failed (refused by the recipient, or timed out). */
    dialFailures: 0,
    /** Connections the recipient closed while this side was using them. */
    disconnected: 0,
    /** Streams that ended or were reset while the connection stayed open. */
    streamsEnded: 0,
    /** Errors seen, by kind (the first 10 kinds): why dials failed and streams ended. */
    errors: {}
  }
}

function note (stats, where, err) {
  const key = `${where}: ${String(err?.message ?? err).slice(0, 100)}`
  if (key in stats.errors || Object.keys(stats.errors).length < 10) stats.errors[key] = (stats.errors[key] ?? 0) + 1
}

/** Connections seen (a WeakSet: each counted once). */
const seen = new WeakSet()

let counter = 0
function frame (seq, body) {
  const id = crypto.getRandomValues(new Uint8Array(16))
  new DataView(id.buffer).setUint32(12, ++counter)
  return lp.encode.single(Frame.encode({ message: { id, seq: BigInt(seq), sentAt: BigInt(Date.now()), body } }))
}

/**
 * One connection's worth of sending: dials `addrs`, opens /im, and writes
 * frames (`next()` gives each, `null` when there is nothing more) with up to
 * `window` unacknowledged, as fast as the stream takes them. Resolves when the
 * connection or stream ends, `next()` runs dry and every ack is in, or
 * `control.stopped`; `onAck(status)` for each ack.
 */
async function session (node, addrs, { window, next, onAck, control, stats, dialTimeout = 10_000 }) {
  let conn
  let stream
  try {
    conn = await node.dial(addrs, { signal: AbortSignal.timeout(dialTimeout) })
    stream = await conn.newStream(PROTOCOL, { signal: AbortSignal.timeout(dialTimeout) })
  } catch (err) {
    stats.dialFailures++
    note(stats, 'dial', err)
    if (conn != null) conn.abort(err)
    return { opened: false }
  }
  stats.sessions++
  if (!seen.has(conn)) { seen.add(conn); stats.connections++ }
  let remoteClosed = false
  let closing = false
  const onClose = () => { if (!control.stopped && !closing) remoteClosed = true }
  if (conn.status === 'open') conn.addEventListener('close', onClose, { once: true })
  else remoteClosed = true
  control.streams.add(stream)
  let unacked = 0
  let wake
  // set by the reader
  const read = { ended: false }
  let drained = false
  const wakeWriter = () => { const w = wake; wake = undefined; w?.() }
  const reader = (async () => {
    try {
      for await (const buf of lp.decode(stream)) {
        const ack = Frame.decode(buf).ack
        if (ack == null) throw new Error('not an ack')
        unacked--
        // protons decodes the enum to its name
        const status = typeof ack.status === 'number' ? STATUS[ack.status] : ack.status ?? 'OK'
        stats.acks[status] = (stats.acks[status] ?? 0) + 1
        onAck?.(status)
        wakeWriter()
      }
    } catch (err) {
      note(stats, 'read', err)
    } finally {
      read.ended = true
      wakeWriter()
    }
  })()
  try {
    while (!read.ended && !control.stopped) {
      if (unacked >= window) { await new Promise(resolve => { wake = resolve }); continue }
      const data = next()
      if (data == null) {
        if (unacked === 0) { drained = true; break }
        await new Promise(resolve => { wake = resolve })
        continue
      }
      unacked++
      stats.framesSent++
      stats.bytesSent += data.byteLength
      if (!stream.send(data)) await stream.onDrain({ signal: AbortSignal.timeout(30_000) })
    }
  } catch (err) {
    note(stats, 'write', err)
  }
  if (!drained && !control.stopped && !remoteClosed) {
    // the stream ended: was it the connection? (its close event may come a moment later)
    await Promise.race([new Promise(resolve => conn.addEventListener('close', resolve, { once: true })), sleep(200)])
    remoteClosed ||= conn.status !== 'open'
  }
  if (remoteClosed && !control.stopped) stats.disconnected++
  else if (!drained && !control.stopped) stats.streamsEnded++
  control.streams.delete(stream)
  closing = true
  conn.removeEventListener('close', onClose)
  if (drained || control.stopped) {
    // done with this connection: close it (a fresh identity's one message)
    await conn.close({ signal: AbortSignal.timeout(2_000) }).catch(err => conn.abort(err))
  } else {
    stream.abort(new Error('flood: starting over'))
  }
  await reader
  return { opened: true, unacked }
}

/**
 * `identities` strangers, each on its own connection, writing `size`-byte
 * bodies to `addrs` as fast as their streams take them (pipelined, `window`
 * unacked), until `stop()` or `duration` ms; dialled again at once after a
 * connection closes, `reconnectDelay` ms after a dial fails. With `rotate`,
 * a stranger that was hung up on or refused comes back as a fresh identity
 * (identities cost nothing), `identities` of them at a time.
 */
export async function startFlood ({ addrs, identities = 20, size = 32_768, window = 64, reconnectDelay = 100, duration = 120_000, rotate = false }) {
  const targets = addrs.map(a => multiaddr(a))
  const body = 'f'.repeat(size)
  const nodes = new Set(await Promise.all(Array.from({ length: identities }, strangerNode)))
  const stats = { ...newStats(), identitiesUsed: nodes.size }
  const control = { stopped: false, streams: new Set() }
  const until = Date.now() + duration
  const loops = [...nodes].map(async (node) => {
    let seq = 0
    while (!control.stopped && Date.now() < until) {
      const { opened } = await session(node, targets, { window, next: () => frame(++seq, body), control, stats })
      if (control.stopped) break
      if (rotate) {
        // a new identity: a new key, seq from 1, no penalty of the old one's
        nodes.delete(node)
        node.stop().catch(() => {})
        node = await strangerNode()
        nodes.add(node)
        stats.identitiesUsed++
        seq = 0
        if (opened) continue
      }
      // an attacker comes straight back; a failed dial waits a little
      if (!opened) await sleep(reconnectDelay)
    }
  })
  const timer = setTimeout(() => { control.stopped = true }, duration)
  return {
    stats,
    async stop () {
      clearTimeout(timer)
      control.stopped = true
      for (const s of control.streams) s.abort(new Error('flood stopped'))
      await Promise.race([Promise.allSettled(loops), sleep(15_000)])
      await Promise.allSettled([...nodes].map(async n => n.stop()))
      return stats
    }
  }
}

/**
 * Sends exactly `count` messages of `size` bytes from each of `identities`
 * fresh strangers (`concurrency` at a time), each message until it has an ack
 * of any status (written again on a new connection if its connection closed
 * before the ack came), within `timeout` ms in all. A stranger whose dials
 * are refused `maxRefusals` times in a row gives up (`gaveUp`).
 */
export async function sendFrom ({ addrs, identities = 1, count = 1, size = 32_768, window = 64, concurrency = 8, reconnectDelay = 100, maxRefusals = 20, timeout = 90_000 }) {
  const targets = addrs.map(a => multiaddr(a))
  const body = 'f'.repeat(size)
  const stats = newStats()
  const control = { stopped: false, streams: new Set() }
  const timer = setTimeout(() => { control.stopped = true; for (const s of control.streams) s.abort(new Error('timed out')) }, timeout)
  const start = performance.now()
  let nextIdentity = 0
  let completeIdentities = 0
  let gaveUp = 0
  const worker = async () => {
    while (!control.stopped && nextIdentity < identities) {
      nextIdentity++
      const node = await strangerNode()
      try {
        let acked = 0
        let written = 0
        // the frames written and not yet acked, by seq: written again, same id, on a new connection
        const unacked = new Map()
        let refusals = 0
        while (!control.stopped && acked < count && refusals < maxRefusals) {
          written = acked
          await session(node, targets, {
            window,
            next: () => {
              if (written >= count) return null
              const seq = ++written
              if (!unacked.has(seq)) unacked.set(seq, frame(seq, body))
              return unacked.get(seq)
            },
            onAck: () => { unacked.delete(++acked) },
            control,
            stats
          }).then(async ({ opened }) => {
            refusals = opened ? 0 : refusals + 1
            if (!opened) await sleep(reconnectDelay)
          })
        }
        if (acked >= count) completeIdentities++
        else if (refusals >= maxRefusals) gaveUp++
      } finally {
        await node.stop().catch(() => {})
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, identities) }, worker))
  } finally {
    clearTimeout(timer)
  }
  return { ...stats, completeIdentities, gaveUp, identities, timedOut: control.stopped, seconds: (performance.now() - start) / 1000 }
}
