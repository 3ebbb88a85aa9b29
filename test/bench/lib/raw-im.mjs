// An /im/1.0.0 sender that is not parley, for benches that measure a parley
// node receiving: a bare libp2p node (TCP, Noise, yamux, as
// test/fixtures/raw-im.ts builds it) writing frames as the spec says, with
// the seqs the bench chooses (a gap left open on purpose), pipelined, and
// timing each message from its write to its ack.
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

/** A raw sender: a fresh identity, no listener. */
export async function rawSender () {
  const node = await createLibp2p({
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  let conn
  let stream
  /** What the stream's reader tells the `send` under way. */
  let onAck
  let onEnd
  return {
    peerId: node.peerId.toString(),
    /** The connection `connect` or `send` opened (for a baseline on the same connection). */
    get connection () { return conn },
    /** Dials `addrs` (the connection is kept for `send`), a few times if the recipient refuses for now. */
    async connect (addrs) {
      for (let attempt = 1; ; attempt++) {
        try {
          conn = await node.dial(addrs.map(a => multiaddr(a)), { signal: AbortSignal.timeout(30_000) })
          return
        } catch (err) {
          if (attempt >= 10) throw err
          await new Promise(resolve => setTimeout(resolve, 200 * attempt))
        }
      }
    },
    /**
     * Sends `count` messages of `size` bytes with seqs `from`, `from + 1`, …
     * on the sender's /im stream to `addrs` (opened once, kept between calls:
     * the recipient takes only a few streams per connection at a time),
     * `window` unacknowledged at most. Resolves with the time from the first
     * write to the last ack, each message's write → ack time, and the acks'
     * statuses.
     */
    async send ({ addrs, from, count, size, window = 64 }) {
      if (stream == null || stream.status !== 'open') {
        if (conn == null || conn.status !== 'open') conn = await node.dial(addrs.map(a => multiaddr(a)), { signal: AbortSignal.timeout(30_000) })
        stream = await conn.newStream(PROTOCOL, { signal: AbortSignal.timeout(30_000) })
        const s = stream
        // one reader for the stream's life: each ack goes to the call under way
        ;(async () => {
          for await (const buf of lp.decode(s)) {
            const ack = Frame.decode(buf).ack
            if (ack == null) throw new Error('not an ack')
            onAck?.(ack)
          }
          throw new Error('the recipient closed the stream')
        })().catch(err => { onEnd?.(err) })
      }
      const body = 'x'.repeat(size)
      const sentAt = []
      const latencies = []
      const statuses = {}
      let written = 0
      let acked = 0
      let wake
      const done = Promise.withResolvers()
      const wakeWriter = () => { const w = wake; wake = undefined; w?.() }
      onAck = (ack) => {
        latencies.push(performance.now() - sentAt[acked])
        const status = typeof ack.status === 'number' ? STATUS[ack.status] : ack.status ?? 'OK'
        statuses[status] = (statuses[status] ?? 0) + 1
        acked++
        wakeWriter()
        if (acked === count) done.resolve()
      }
      onEnd = (err) => {
        done.reject(new Error(`the stream ended after ${acked} of ${count} acks: ${err.message}`))
        wakeWriter()
      }
      done.promise.catch(() => {})
      const start = performance.now()
      while (written < count && stream.status === 'open') {
        if (written - acked >= window) {
          await new Promise(resolve => { wake = resolve })
          continue
        }
        const id = crypto.getRandomValues(new Uint8Array(16))
        const frame = lp.encode.single(Frame.encode({ message: { id, seq: BigInt(from + written), sentAt: BigInt(Date.now()), body } }))
        sentAt.push(performance.now())
        written++
        if (!stream.send(frame)) await stream.onDrain({ signal: AbortSignal.timeout(30_000) })
      }
      await done.promise
      onAck = undefined
      onEnd = undefined
      return { seconds: (performance.now() - start) / 1000, latencies, statuses }
    },
    async stop () {
      await node.stop()
    }
  }
}
