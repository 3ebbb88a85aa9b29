import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CONVERSATIONS_KEPT, Store } from '../../node/store/index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { watchStatements } from '../fixtures/statements.js'
import type { NewInbound } from '../../node/store/index.js'

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'

function inbound (seq: number, receivedAt = 1000 + seq): NewInbound {
  return { peer: PEER, id: `00000000-0000-7000-8000-${String(seq).padStart(12, '0')}`, seq, body: `m${seq}`, contentType: 'text/plain', sentAt: seq, receivedAt, path: 'direct' }
}

/** A statement by its first words. */
const firstWords = (text: string): string => text.replace(/\s+/g, ' ').split(' ').slice(0, 3).join(' ')

describe('Store, inbound side', () => {
  const tempDir = useTempDirs()

  it('runs the same few statements for each in-order message, with no held lookup while no gap is open', () => {
    const store = new Store()
    for (let seq = 1; seq <= 100; seq++) store.receive(inbound(seq))
    const { run } = watchStatements(store)
    store.receive(inbound(101))
    expect(run.map(firstWords)).toEqual([
      'BEGIN IMMEDIATE', // the transaction's own statements are prepared once too
      // where the conversation stands, and whether it has refused seqs, are known from the message before
      'INSERT INTO messages', // the message, unless (sender, id) is stored already: the dedup is the insert's
      'UPDATE conversations SET', // where it then stands, and the history's end (see Store.position)
      'COMMIT'
    ])
    store.close()
  })

  it('keeps at most CONVERSATIONS_KEPT conversations\' state in memory, however many senders write, and reads the rest again as they are needed', () => {
    const store = new Store()
    const from = (peer: string, seq: number): NewInbound => ({ ...inbound(seq), peer, id: `${peer}-${seq}` })
    for (let n = 0; n <= CONVERSATIONS_KEPT; n++) store.receive(from(`stranger-${n}`, 1))
    expect((store as any).inbound.size).toBeLessThanOrEqual(CONVERSATIONS_KEPT)
    // the first sender's state was let go: read again, it is where it was
    expect(store.receive(from('stranger-0', 3)).presented).toEqual([])
    expect(store.receive(from('stranger-0', 2)).presented.map(m => m.seq)).toEqual([2, 3])
    store.close()
  })

  it('reads where a conversation stands again after a write is undone, and finds the seqs refused before', () => {
    const store = new Store()
    store.receive(inbound(1))
    expect(() => store.transaction(() => {
      store.receive(inbound(2))
      throw new Error('undone')
    })).toThrow('undone')
    // seq 2 is not stored: 3 waits for it
    expect(store.receive(inbound(3)).presented).toEqual([])
    expect(store.receive(inbound(2)).presented.map(m => m.seq)).toEqual([2, 3])
    // a refused seq fills its place when the one before it comes
    store.refuseSeq(PEER, 5, 2000)
    expect(store.receive(inbound(6)).presented).toEqual([])
    expect(store.receive(inbound(4)).presented.map(m => m.seq)).toEqual([4, 6])
    expect(store.receive(inbound(7)).presented.map(m => m.seq)).toEqual([7])
    store.close()
  })

  it('keeps where each conversation stands across a restart: its next seq, its open gap and what it holds', async () => {
    const file = join(await tempDir(), 'messages.db')
    let store = new Store(file)
    store.receive(inbound(1))
    store.receive(inbound(4))
    store.refuseSeq(PEER, 3, 2000)
    store.close()
    store = new Store(file)
    expect(store.oldestGap()).toBe(1004)
    expect(store.receive(inbound(2)).presented.map(m => m.seq)).toEqual([2, 4])
    expect(store.oldestGap()).toBeUndefined()
    expect(store.history(PEER).map(m => [m.seq, m.status])).toEqual([[1, 'presented'], [2, 'presented'], [4, 'presented']])
    store.close()
  })

  it('returns presented messages as history reads them back', () => {
    const store = new Store()
    const presented = [
      ...store.receive({ ...inbound(2), replyTo: '00000000-0000-7000-8000-00000000000a', request: true }).presented,
      ...store.receive({ ...inbound(1), path: 'relayed' }).presented,
      ...store.receive(inbound(4)).presented,
      ...store.releaseGaps(1004 + 60_000, 60_000).presented
    ]
    expect(presented.map(m => m.seq)).toEqual([1, 2, 4])
    expect(presented).toEqual(store.history(PEER))
    store.close()
  })
})
