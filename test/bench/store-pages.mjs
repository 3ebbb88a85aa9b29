// Pages each hot-path commit writes to the store's write-ahead log (each a
// 4 KiB frame: on disk, a write per page), for this build or others: a
// message queued, its delivered mark, a message received. Counted from the
// WAL's size, with checkpoints off, over `count` commits of each.
//
//   npm run build && node test/bench/store-pages.mjs [count] [<other build>/dist/index.js ...]
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const [countArg, ...others] = process.argv.slice(2)
const count = Number(countArg ?? 100)
const builds = [new URL('../../dist/index.js', import.meta.url).href, ...others.map(dist => pathToFileURL(resolve(dist)).href)]
const peer = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const body = 'x'.repeat(200)
for (const build of builds) {
  const { Store } = await import(new URL('./node/store/index.js', build).href)
  const dir = mkdtempSync(join(tmpdir(), 'parley-store-pages-'))
  const file = join(dir, 'messages.db')
  const store = new Store(file)
  // a little history first, so that the tables have their pages
  for (let i = 0; i < 50; i++) {
    const m = store.enqueue({ peer, id: randomUUID(), body, contentType: 'text/plain', sentAt: Date.now() })
    store.record({ at: 1, delivered: [{ id: m.id, path: 'direct' }], retried: [], failed: [] })
    store.receive({ peer, id: randomUUID(), seq: i + 1, body, contentType: 'text/plain', sentAt: 1, receivedAt: 1, path: 'direct' })
  }
  const db = store.db
  db.exec('PRAGMA wal_autocheckpoint = 0')
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)')
  const pages = () => { try { return Math.max(0, (statSync(`${file}-wal`).size - 32) / (4096 + 24)) } catch { return 0 } }
  let before = pages()
  const perCommit = () => { const now = pages(); const n = (now - before) / count; before = now; return n.toFixed(2) }
  const ids = []
  for (let i = 0; i < count; i++) ids.push(store.enqueue({ peer, id: randomUUID(), body, contentType: 'text/plain', sentAt: Date.now() }, { durable: false }).id)
  const queued = perCommit()
  for (const id of ids) store.record({ at: 1, delivered: [{ id, path: 'direct' }], retried: [], failed: [] }, { durable: false })
  const delivered = perCommit()
  for (let i = 0; i < count; i++) store.inboundBatch([{ kind: 'receive', message: { peer, id: randomUUID(), seq: 51 + i, body, contentType: 'text/plain', sentAt: 1, receivedAt: 1, path: 'direct' } }])
  const received = perCommit()
  console.log(`${build}: WAL pages per commit: message queued ${queued}, delivered mark ${delivered}, message received ${received}`)
  store.close()
  rmSync(dir, { recursive: true, force: true })
}
