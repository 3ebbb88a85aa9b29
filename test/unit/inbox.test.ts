import { peerIdFromString } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { Inbox, RELEASE_PAGE } from '../../node/inbox/inbox.js'
import { idFromString } from '../../node/message-id.js'
import { Store } from '../../node/store/index.js'
import { Ack } from '../../protocols/im/index.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { InboxStore } from '../../node/inbox/inbox.js'
import type { InboundStep, StoredMessage } from '../../node/store/index.js'
import type { InboundMessage } from '../../protocols/im/index.js'
import type { Connection } from '@libp2p/interface'

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const from = peerIdFromString(PEER)
const GAP_TIMEOUT = 60_000

function id (n: number): string {
  return `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`
}

function message (seq: number, n = seq): InboundMessage {
  return { id: idFromString(id(n)), from, seq, sentAt: seq, body: `m${seq}`, contentType: 'text/plain', path: 'direct', connection: {} as unknown as Connection }
}

const seqs = (messages: StoredMessage[]): number[] => messages.map(m => m.seq)

describe('Inbox', () => {
  const cleanup: Array<() => void> = []
  afterEach(() => {
    for (const fn of cleanup.splice(0)) fn()
  })

  /** An Inbox on a real in-memory store and a fake clock, recording each transaction's size and what it presents. */
  function setup (init: { commitAtOnce?: boolean } = {}): { inbox: Inbox, store: Store, clock: FakeClock, batches: number[], shown: StoredMessage[][], next: () => Promise<StoredMessage[]> } {
    const store = new Store()
    const clock = new FakeClock()
    const batches: number[] = []
    const counted: InboxStore = {
      inboundBatch: (steps: InboundStep[]) => {
        batches.push(steps.length)
        return store.inboundBatch(steps)
      },
      releaseGaps: (now, timeout, limit) => store.releaseGaps(now, timeout, limit),
      oldestGap: () => store.oldestGap()
    }
    const inbox = new Inbox({ store: counted, clock }, { gapTimeout: GAP_TIMEOUT, ...init })
    const shown: StoredMessage[][] = []
    inbox.addEventListener('presented', (evt) => { shown.push(evt.detail) })
    inbox.start()
    cleanup.push(() => {
      inbox.stop()
      store.close()
    })
    /** The next messages presented. */
    const next = async (): Promise<StoredMessage[]> => new Promise(resolve => {
      inbox.addEventListener('presented', (evt) => { resolve(evt.detail) }, { once: true })
    })
    return { inbox, store, clock, batches, shown, next }
  }

  it('commits a message that comes alone as it comes, and the rest of its turn in one transaction, resolving each once it is durable', async () => {
    const { inbox, store, batches, shown } = setup()
    const events: string[] = []
    inbox.addEventListener('presented', (evt) => { events.push(`presented ${seqs(evt.detail).join(',')}`) })
    // the first: stored and shown before receive returns, answered with no promise
    expect(inbox.receive(message(1))).toBe('stored')
    expect(shown.map(seqs)).toEqual([[1]])
    const received = [message(2), message(3), message(1)].map(async (m, i) => {
      const result = await inbox.receive(m)
      events.push(`resolved ${i}: ${store.history(PEER).length} stored`)
      return result
    })
    // the rest of the turn: nothing more is written before the event loop turns
    expect(seqs(store.history(PEER))).toEqual([1])
    expect(await Promise.all(received)).toEqual(['stored', 'stored', 'duplicate'])
    expect(batches).toEqual([1, 3])
    // shown once, in one event, before any ack could leave
    expect(shown.map(seqs)).toEqual([[1], [2, 3]])
    expect(events).toEqual(['presented 1', 'presented 2,3', 'resolved 0: 3 stored', 'resolved 1: 3 stored', 'resolved 2: 3 stored'])
  })

  it('keeps batching while messages come together, and commits one as it comes again once one came alone', async () => {
    const { inbox, batches } = setup()
    // two in a turn: the first at once, the second in the turn's batch
    expect(inbox.receive(message(1))).toBe('stored')
    await inbox.receive(message(2))
    expect(batches).toEqual([1, 1])
    // that turn brought two: two that come together in a new turn both wait for its batch
    const together = [inbox.receive(message(3)), inbox.receive(message(4))]
    expect(together.every(r => r instanceof Promise)).toBe(true)
    await Promise.all(together)
    expect(batches).toEqual([1, 1, 2])
    // one alone still waits for the turn (the last batch was two), then the next one alone goes at once
    await inbox.receive(message(5))
    expect(batches).toEqual([1, 1, 2, 1])
    expect(inbox.receive(message(6))).toBe('stored')
    expect(batches).toEqual([1, 1, 2, 1, 1])
  })

  it('with commitAtOnce, stores and presents each message before receive returns, one transaction each, answering with no promise', async () => {
    const { inbox, store, batches, shown, clock } = setup({ commitAtOnce: true })
    const events: string[] = []
    inbox.addEventListener('presented', (evt) => { events.push(`presented ${seqs(evt.detail).join(',')}`) })
    const results = [message(1), message(3), message(2), message(1)].map(m => {
      const result = inbox.receive(m)
      events.push(`returned ${String(result)}: ${store.history(PEER).length} stored`)
      return result
    })
    expect(results).toEqual(['stored', 'stored', 'stored', 'duplicate'])
    expect(batches).toEqual([1, 1, 1, 1])
    expect(shown.map(seqs)).toEqual([[1], [2, 3]])
    expect(events).toEqual(['presented 1', 'returned stored: 1 stored', 'returned stored: 1 stored', 'presented 2,3', 'returned stored: 3 stored', 'returned duplicate: 3 stored'])
    // the gap 3 opened was watched, and disarmed once 2 filled it
    expect(clock.pending).toBe(0)
    inbox.stop()
    await expect(inbox.receive(message(4))).rejects.toThrow('the node is stopped')
  })

  it('with commitAtOnce, a refused seq fills its place at once, and the message after it is presented with no wait', () => {
    const { inbox, batches, shown, clock } = setup({ commitAtOnce: true })
    expect(inbox.receive(message(1))).toBe('stored')
    inbox.refused({ from, id: idFromString(id(2)), seq: 2n, status: Ack.Status.TOO_LARGE })
    expect(inbox.receive(message(3))).toBe('stored')
    expect(batches).toEqual([1, 1, 1])
    expect(shown.map(seqs)).toEqual([[1], [3]])
    expect(clock.pending).toBe(0)
  })

  it('with commitAtOnce, throws what the commit throws, from receive itself', () => {
    const clock = new FakeClock()
    const inbox = new Inbox({
      store: {
        inboundBatch: () => { throw new Error('disk I/O error') },
        releaseGaps: () => ({ presented: [], more: false }),
        oldestGap: () => undefined
      },
      clock
    }, { commitAtOnce: true })
    inbox.start()
    cleanup.push(() => { inbox.stop() })
    expect(() => inbox.receive(message(1))).toThrow('disk I/O error')
  })

  it('presents in seq order, holding a later seq while an earlier one is missing', async () => {
    const { inbox, store, shown } = setup()
    expect(await inbox.receive(message(1))).toBe('stored')
    expect(await inbox.receive(message(3))).toBe('stored')
    expect(shown.map(seqs)).toEqual([[1]])
    expect(seqs(store.history(PEER))).toEqual([1])
    expect(await inbox.receive(message(2))).toBe('stored')
    // two in one turn, the later first
    await Promise.all([inbox.receive(message(5)), inbox.receive(message(4))])
    expect(shown.map(seqs)).toEqual([[1], [2, 3], [4, 5]])
    expect(seqs(store.history(PEER))).toEqual([1, 2, 3, 4, 5])
  })

  it('does not present a duplicate again', async () => {
    const { inbox, shown } = setup()
    expect(await inbox.receive(message(1))).toBe('stored')
    expect(await inbox.receive(message(1))).toBe('duplicate')
    expect(shown.map(seqs)).toEqual([[1]])
  })

  it('gives a gap up gapTimeout after it opened, on the clock, and shows the missing seq at once when it turns up late', async () => {
    const { inbox, clock, shown } = setup()
    const opened = clock.now()
    await inbox.receive(message(1))
    await inbox.receive(message(3))
    clock.advance(1_000)
    await inbox.receive(message(4))
    expect(clock.nextAt).toBe(opened + GAP_TIMEOUT)
    clock.advance(GAP_TIMEOUT - 1_000 - 1)
    expect(shown.map(seqs)).toEqual([[1]])
    clock.advance(1)
    expect(shown.map(seqs)).toEqual([[1], [3, 4]])
    // `receivedAt` is the clock's
    expect(shown[1].map(m => m.receivedAt)).toEqual([opened, opened + 1_000])
    expect(clock.pending).toBe(0)
    await inbox.receive(message(2))
    await inbox.receive(message(5))
    expect(shown.map(seqs)).toEqual([[1], [3, 4], [2], [5]])
  })

  it('disarms the gap timer when the gap fills', async () => {
    const { inbox, clock } = setup()
    await inbox.receive(message(1))
    await inbox.receive(message(3))
    expect(clock.pending).toBe(1)
    await inbox.receive(message(2))
    expect(clock.pending).toBe(0)
  })

  it('asks for the oldest gap only while one may be open: not for messages in order, but once one is held, and until it is given up', async () => {
    const store = new Store()
    const clock = new FakeClock()
    let asked = 0
    const counted: InboxStore = {
      inboundBatch: (steps: InboundStep[]) => store.inboundBatch(steps),
      releaseGaps: (now, timeout, limit) => store.releaseGaps(now, timeout, limit),
      oldestGap: () => { asked++; return store.oldestGap() }
    }
    const inbox = new Inbox({ store: counted, clock }, { gapTimeout: GAP_TIMEOUT })
    cleanup.push(() => { inbox.stop(); store.close() })
    inbox.start()
    const atStart = asked
    for (let seq = 1; seq <= 5; seq++) await inbox.receive(message(seq))
    expect(asked).toBe(atStart)
    // a seq missing: the next one is held, and the gap timer armed
    await inbox.receive(message(7))
    expect(asked).toBe(atStart + 1)
    expect(clock.pending).toBe(1)
    // the gap open: each batch looks again (this one closes it)
    await inbox.receive(message(6))
    expect(asked).toBe(atStart + 2)
    expect(clock.pending).toBe(0)
    await inbox.receive(message(8))
    expect(asked).toBe(atStart + 2)
    // a refused seq ahead of the next one may leave a gap too
    inbox.refused({ from, id: idFromString(id(10)), seq: 10n, status: Ack.Status.INVALID })
    await inbox.receive(message(9))
    expect(asked).toBe(atStart + 3)
  })

  it('presents an expired flood of held messages RELEASE_PAGE at a time, in seq order', async () => {
    const { inbox, store, clock, shown } = setup()
    const count = 2 * RELEASE_PAGE + 88
    await inbox.receive(message(1))
    await Promise.all(Array.from({ length: count }, async (_, i) => inbox.receive(message(i + 3))))
    expect(shown.map(seqs)).toEqual([[1]])
    const all = Promise.withResolvers<void>()
    inbox.addEventListener('presented', () => { if (shown.flat().length === count + 1) all.resolve() })
    clock.advance(GAP_TIMEOUT)
    await all.promise
    expect(shown.slice(1).map(page => page.length)).toEqual([RELEASE_PAGE, RELEASE_PAGE, 88])
    expect(shown.slice(1).flatMap(seqs)).toEqual(Array.from({ length: count }, (_, i) => i + 3))
    expect(store.oldestGap()).toBeUndefined()
    expect(clock.pending).toBe(0)
  })

  it('lets a refused seq fill a gap, and ignores seqs outside 1 to 2^53 - 1', async () => {
    const { inbox, batches, next } = setup()
    await inbox.receive(message(1))
    await inbox.receive(message(3))
    const presented = next()
    inbox.refused({ from, id: idFromString(id(2)), seq: 2n, status: Ack.Status.TOO_LARGE })
    expect(seqs(await presented)).toEqual([3])
    inbox.refused({ from, id: idFromString(id(9)), seq: 0n, status: Ack.Status.INVALID })
    inbox.refused({ from, id: idFromString(id(9)), seq: 2n ** 53n, status: Ack.Status.INVALID })
    await inbox.receive(message(4))
    expect(batches).toEqual([1, 1, 1, 1])
  })

  it('answers held-full when the sender has maxHeld held, but takes the seq that fills the gap', async () => {
    const { inbox, shown } = setup()
    await inbox.receive(message(1))
    expect(await inbox.receive(message(3), { maxHeld: 2 })).toBe('stored')
    expect(await inbox.receive(message(4), { maxHeld: 2 })).toBe('stored')
    expect(await inbox.receive(message(5), { maxHeld: 2 })).toBe('held-full')
    expect(await inbox.receive(message(2), { maxHeld: 2 })).toBe('stored')
    expect(await inbox.receive(message(5), { maxHeld: 2 })).toBe('stored')
    expect(shown.map(seqs)).toEqual([[1], [2, 3, 4], [5]])
  })

  it('rejects the receives not yet stored when it stops, and any after, and clears its gap timer', async () => {
    const { inbox, store, clock } = setup()
    expect(inbox.receive(message(1))).toBe('stored')
    // held, after the one committed in this turn: in the turn's batch
    expect(await inbox.receive(message(3))).toBe('stored')
    expect(clock.pending).toBe(1)
    // that turn brought two: the next waits for a batch
    const pending = inbox.receive(message(2))
    inbox.stop()
    await expect(pending).rejects.toThrow('the node is stopping')
    await expect(inbox.receive(message(4))).rejects.toThrow('the node is stopped')
    expect(clock.pending).toBe(0)
    expect(seqs(store.history(PEER))).toEqual([1])
  })

  it('rejects only the step that failed, and the whole batch when its commit fails', async () => {
    const clock = new FakeClock()
    const failed = new Error('constraint failed')
    let commit: 'per-step' | 'fails' = 'per-step'
    const store: InboxStore = {
      inboundBatch: (steps) => {
        if (commit === 'fails') throw new Error('disk I/O error')
        return steps.map(step => step.kind === 'receive' && step.message.seq === 1 ? failed : { result: 'stored' as const, presented: [] })
      },
      releaseGaps: () => ({ presented: [], more: false }),
      oldestGap: () => undefined
    }
    const inbox = new Inbox({ store, clock })
    inbox.start()
    cleanup.push(() => { inbox.stop() })
    // the first of each turn is committed at once (and throws from receive), the second in the turn's batch
    const receive = async (m: InboundMessage): Promise<string> => inbox.receive(m)
    const [first, second] = await Promise.allSettled([receive(message(1)), receive(message(2))])
    expect(first).toEqual({ status: 'rejected', reason: failed })
    expect(second).toEqual({ status: 'fulfilled', value: 'stored' })
    commit = 'fails'
    const results = await Promise.allSettled([receive(message(3)), receive(message(4))])
    expect(results.map(r => r.status === 'rejected' && r.reason.message)).toEqual(['disk I/O error', 'disk I/O error'])
  })

  it('gives up an expired gap a page at a time, so a flood of held messages is never in memory at once', async () => {
    const store = new Store()
    const long = Date.now() - 120_000
    // seq 1 never came; 1,000 later ones are held
    for (let seq = 2; seq <= 1_001; seq++) {
      store.receive({ peer: PEER, id: `00000000-0000-7000-8000-${String(seq).padStart(12, '0')}`, seq, body: `m${seq}`, contentType: 'text/plain', sentAt: seq, receivedAt: long, path: 'direct' })
    }
    const pages: StoredMessage[][] = []
    const done = Promise.withResolvers<void>()
    const inbox = new Inbox({ store }, { gapTimeout: 60_000 })
    inbox.addEventListener('presented', (evt) => {
      pages.push(evt.detail)
      if (pages.flat().length === 1_000) done.resolve()
    })
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
