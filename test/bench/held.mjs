// The message store alone: what a message held behind a seq gap costs against
// one in order, as the inbox commits them (batches of 64 in one transaction,
// on a file, synchronous=FULL), with `held` messages already waiting; ids
// random, as the gap bench's senders (benches/gap.mjs) write them. Prints the
// CPU time per message of each and the write-ahead log written per batch.
// `--same-size`: the in-order conversation first grows as large as the gapped
// one, so that what is compared is the gap alone, not the conversation's size.
// usage: npm run build && node test/bench/held.mjs [held] [--same-size] [--dist <another build's dist>]
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'same-size': { type: 'boolean', default: false }, dist: { type: 'string', default: 'dist' } } })
const { Store } = await import(pathToFileURL(resolve(values.dist, 'node/store/index.js')).href)
const held = Number(positionals[0] ?? 20_000)
const dir = mkdtempSync(join(tmpdir(), 'parley-held-bench-'))
const file = join(dir, 'messages.db')
const store = new Store(file)
const body = 'x'.repeat(200)
const BATCH = 64
const next = { inOrder: 1, gapped: 2 }

/** `n` messages of the conversation, BATCH to a transaction; the WAL bytes written if `wal`. */
function feed (peer, n, wal = false) {
  let bytes = 0
  for (let i = 0; i < n; i += BATCH) {
    const steps = []
    for (let j = 0; j < BATCH; j++) {
      const seq = next[peer]++
      steps.push({ kind: 'receive', maxHeld: Infinity, message: { peer, id: randomUUID(), seq, body, contentType: 'text/plain', sentAt: 1, receivedAt: 1, path: 'direct' } })
    }
    // the WAL emptied, so that its size is what this batch wrote (the store's own connection: a bench may)
    if (wal) store.db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
    const before = wal ? statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0 : 0
    store.inboundBatch(steps)
    if (wal) bytes += statSync(`${file}-wal`).size - before
  }
  return bytes / (n / BATCH)
}

feed('gapped', held)
feed('inOrder', values['same-size'] ? held : 2048)
const cpu = { inOrder: 0, gapped: 0 }
const rounds = 6
const n = 2048
for (let r = 0; r < rounds; r++) {
  for (const kind of r % 2 === 0 ? ['gapped', 'inOrder'] : ['inOrder', 'gapped']) {
    const start = process.cpuUsage()
    feed(kind, n)
    const used = process.cpuUsage(start)
    cpu[kind] += used.user + used.system
  }
}
const wal = { inOrder: feed('inOrder', 640, true), gapped: feed('gapped', 640, true) }
store.close()
rmSync(dir, { recursive: true, force: true })
const per = (kind) => cpu[kind] / (rounds * n)
console.log(`${held} held${values['same-size'] ? ', conversations of the same size' : ''}: CPU per message held ${per('gapped').toFixed(1)} µs, in order ${per('inOrder').toFixed(1)} µs (${(per('gapped') / per('inOrder')).toFixed(2)}×); WAL per batch of ${BATCH}: held ${Math.round(wal.gapped / 1024)} KiB, in order ${Math.round(wal.inOrder / 1024)} KiB`)
