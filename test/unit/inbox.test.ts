import { describe, expect, it } from 'vitest'
import { Inbox } from '../../node/inbox/inbox.js'
import { Store } from '../../node/store/index.js'
import type { StoredMessage } from '../../node/store/index.js'

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'

describe('Inbox', () => {
  it('gives up an expired gap a page at a time, so a flood of held messages is never in memory at once', async () => {
    const store = new Store()
    const long = Date.now() - 120_000
    // seq 1 never came; 1,000 later ones are held
    for (let seq = 2; seq <= 1_001; seq++) {
      store.receive({ peer: PEER, id: `00000000-0000-7000-8000-${String(seq).padStart(12, '0')}`, seq, body: `m${seq}`, contentType: 'text/plain', sentAt: seq, receivedAt: long, path: 'direct' })
    }
    const pages: StoredMessage[][] = []
    const done = Promise.withResolvers<void>()
    const inbox = new Inbox(store, (messages) => {
      pages.push(messages)
      if (pages.flat().length === 1_000) done.resolve()
    }, 60_000)
    inbox.start()
    await done.promise
    inbox.stop()
    expect(pages.length).toBeGreaterThan(1)
    expect(Math.max(...pages.map(p => p.length))).toBeLessThanOrEqual(256)
    expect(pages.flat().map(m => m.seq)).toEqual(Array.from({ length: 1_000 }, (_, i) => i + 2))
    expect(store.oldestGap()).toBeUndefined()
    store.close()
  })
})
