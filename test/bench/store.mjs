// How many messages a second the SQLite store sustains, on a file in WAL mode
// with synchronous=FULL (what a node uses), one transaction per message (no
// batching): the receiving side (dedup check + insert + in-order presentation,
// as before every ack), per block of `count` messages so that a cost that grows
// with history shows, and the sending side (enqueue + mark delivered on ack).
// usage: npm run build && node test/bench/store.mjs [count] [blocks]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { v7 as uuidv7 } from 'uuid'
import { Store } from '../../dist/node/store/index.js'

const count = Number(process.argv[2] ?? 5000)
const blocks = Number(process.argv[3] ?? 1)
const dir = mkdtempSync(join(tmpdir(), 'parley-store-bench-'))
const store = new Store(join(dir, 'messages.db'))
const peer = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const body = 'x'.repeat(200)

const inbound = []
let seq = 1
for (let b = 0; b < blocks; b++) {
  const start = performance.now()
  for (let i = 0; i < count; i++, seq++) {
    store.receive({ peer, id: uuidv7(), seq, body, contentType: 'text/plain', sentAt: Date.now(), receivedAt: Date.now(), path: 'direct' })
  }
  inbound.push(Math.round(count / ((performance.now() - start) / 1000)))
}

const start = performance.now()
for (let i = 0; i < count; i++) {
  const m = store.enqueue({ peer: 'other', id: uuidv7(), body, contentType: 'text/plain', sentAt: Date.now() })
  store.markDelivered(m.id, 'direct', Date.now())
}
const outbound = count / ((performance.now() - start) / 1000)
store.close()
rmSync(dir, { recursive: true, force: true })
console.log(JSON.stringify({ count, inboundStoredPerSec: blocks === 1 ? inbound[0] : inbound, outboundQueuedAndAckedPerSec: Math.round(outbound) }))
