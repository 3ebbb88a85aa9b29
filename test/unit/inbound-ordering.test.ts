import { describe, expect, it } from 'vitest'
import {
  REFUSED_SEQ_WINDOW, advance, arrival, gapCutoff, isOrderedSeq, refusal, releaseExpired, releasePage, untilGapExpires
} from '../../node/inbox/ordering.js'
import type { AdvanceStart, Arrival, InboundOrder, OrderLookup } from '../../node/inbox/ordering.js'

interface Held { seq: number, id: string }

/** A conversation's held messages and refused seqs in memory, recording which lookups the rules made. */
function conversation (held: Array<number | Held> = [], refused: number[] = []): OrderLookup<Held> & { held: Held[], refused: Set<number>, calls: string[] } {
  const state = {
    held: held.map(h => typeof h === 'number' ? { seq: h, id: `m${h}` } : h),
    refused: new Set(refused),
    calls: [] as string[]
  }
  return {
    heldCount: (atMost) => {
      state.calls.push(`heldCount(${atMost})`)
      return Math.min(state.held.length, atMost)
    },
    takeHeld: (seq) => {
      state.calls.push(`takeHeld(${seq})`)
      const taken = state.held.filter(h => h.seq === seq)
      state.held = state.held.filter(h => h.seq !== seq)
      return taken
    },
    anyHeld: () => state.held.length > 0,
    takeRefused: (seq) => state.refused.delete(seq),
    get held () { return state.held },
    get refused () { return state.refused },
    get calls () { return state.calls }
  }
}

describe('inbound ordering', () => {
  describe('arrival: present now, hold, or held-full', () => {
    const cases: Array<{ name: string, order: InboundOrder, seq: number, maxHeld?: number, held?: number, expected: Arrival }> = [
      { name: 'the next seq, no gap open: shown, nothing held to look up', order: { next: 5 }, seq: 5, expected: { action: 'present', advance: { from: 6, mayHold: false } } },
      { name: 'the next seq with a gap open: shown, and what it lets through follows', order: { next: 5, gapSince: 1 }, seq: 5, expected: { action: 'present', advance: { from: 6, mayHold: true } } },
      { name: 'a seq below next (its gap was given up): shown at once, never dropped', order: { next: 5 }, seq: 3, expected: { action: 'present' } },
      { name: 'a seq below next while a later gap is open: shown at once', order: { next: 5, gapSince: 1 }, seq: 1, expected: { action: 'present' } },
      { name: 'a later seq: held, and the gap opens', order: { next: 5 }, seq: 7, expected: { action: 'hold', advance: { from: 5, mayHold: true } } },
      { name: 'a later seq with the gap open: held, and nothing moves (nothing waits at next)', order: { next: 5, gapSince: 1 }, seq: 8, expected: { action: 'hold' } },
      { name: 'a later seq under maxHeld: held', order: { next: 5, gapSince: 1 }, seq: 8, maxHeld: 2, held: 1, expected: { action: 'hold' } },
      { name: 'a later seq at maxHeld: held-full', order: { next: 5, gapSince: 1 }, seq: 8, maxHeld: 2, held: 2, expected: { action: 'held-full' } },
      { name: 'maxHeld 0: nothing may be held', order: { next: 5 }, seq: 6, maxHeld: 0, expected: { action: 'held-full' } },
      { name: 'the seq that fills the gap is never held-full', order: { next: 5, gapSince: 1 }, seq: 5, maxHeld: 2, held: 2, expected: { action: 'present', advance: { from: 6, mayHold: true } } }
    ]
    for (const { name, order, seq, maxHeld, held, expected } of cases) {
      it(name, () => {
        const lookup = conversation(Array.from({ length: held ?? 0 }, (_, i) => seq + 1 + i))
        expect(arrival(order, seq, maxHeld ?? Infinity, lookup)).toEqual(expected)
      })
    }

    it('counts held messages only when one would be held under a finite maxHeld, and bounded by it', () => {
      const lookup = conversation([8, 9, 10])
      arrival({ next: 5 }, 5, 2, lookup)
      arrival({ next: 5 }, 7, Infinity, lookup)
      expect(lookup.calls).toEqual([])
      arrival({ next: 5 }, 7, 2, lookup)
      expect(lookup.calls).toEqual(['heldCount(2)'])
    })
  })

  describe('refusal: a refused seq fills its place, within the window', () => {
    const cases: Array<{ name: string, order: InboundOrder, seq: number, expected: AdvanceStart | undefined }> = [
      { name: 'the next seq', order: { next: 5 }, seq: 5, expected: { from: 5, mayHold: false } },
      { name: 'a seq ahead, with a gap open', order: { next: 5, gapSince: 1 }, seq: 9, expected: { from: 5, mayHold: true } },
      { name: 'the last seq of the window', order: { next: 5 }, seq: 5 + REFUSED_SEQ_WINDOW - 1, expected: { from: 5, mayHold: false } },
      { name: 'just past the window: not recorded', order: { next: 5 }, seq: 5 + REFUSED_SEQ_WINDOW, expected: undefined },
      { name: 'far ahead: not recorded', order: { next: 5 }, seq: 2 ** 40, expected: undefined },
      { name: 'below next (already passed): not recorded', order: { next: 5 }, seq: 4, expected: undefined }
    ]
    for (const { name, order, seq, expected } of cases) {
      it(name, () => {
        expect(refusal(order, seq)).toEqual(expected)
      })
    }

    it('orders seqs 1 to 2^53 - 1 only', () => {
      expect([0, 1, 2 ** 53 - 1, 2 ** 53, -1, 1.5, Number.NaN].map(isOrderedSeq)).toEqual([false, true, true, false, false, false, false])
    })
  })

  describe('advance: held and refused seqs let the conversation through, in order', () => {
    const cases: Array<{
      name: string
      order: InboundOrder
      start: AdvanceStart
      held?: Array<number | Held>
      refused?: number[]
      presented: string[]
      after: InboundOrder
      heldLeft?: number[]
      refusedLeft?: number[]
    }> = [
      { name: 'nothing waiting: the next seq is the one after', order: { next: 5 }, start: { from: 6, mayHold: false }, presented: [], after: { next: 6 } },
      { name: 'held seqs follow in order, up to the next gap, which stays open since it opened', order: { next: 5, gapSince: 100 }, start: { from: 6, mayHold: true }, held: [6, 7, 9], presented: ['m6', 'm7'], after: { next: 8, gapSince: 100 }, heldLeft: [9] },
      { name: 'all held ones follow: the gap closes', order: { next: 5, gapSince: 100 }, start: { from: 6, mayHold: true }, held: [6, 7], presented: ['m6', 'm7'], after: { next: 8 } },
      { name: 'refused seqs fill gaps between held ones', order: { next: 5, gapSince: 100 }, start: { from: 5, mayHold: true }, held: [6, 8], refused: [5, 7], presented: ['m6', 'm8'], after: { next: 9 }, refusedLeft: [] },
      { name: 'refused seqs fill their places with no gap open', order: { next: 5 }, start: { from: 6, mayHold: false }, refused: [6, 7, 9], presented: [], after: { next: 8 }, refusedLeft: [9] },
      { name: 'a seq sent twice under two ids: both shown, in turn', order: { next: 5, gapSince: 100 }, start: { from: 6, mayHold: true }, held: [{ seq: 6, id: 'a' }, { seq: 6, id: 'b' }, 7], presented: ['a', 'b', 'm7'], after: { next: 8 } },
      { name: 'a message just held opens the gap now', order: { next: 5 }, start: { from: 5, mayHold: true }, held: [7], presented: [], after: { next: 5, gapSince: 200 }, heldLeft: [7] },
      { name: 'a gap already open keeps its start', order: { next: 5, gapSince: 100 }, start: { from: 5, mayHold: true }, held: [7, 8], presented: [], after: { next: 5, gapSince: 100 }, heldLeft: [7, 8] }
    ]
    for (const { name, order, start, held, refused, presented, after, heldLeft, refusedLeft } of cases) {
      it(name, () => {
        const lookup = conversation(held, refused)
        const result = advance(order, start, 200, lookup)
        expect(result.presented.map(h => h.id)).toEqual(presented)
        expect(result.order).toEqual(after)
        expect(lookup.held.map(h => h.seq)).toEqual(heldLeft ?? [])
        if (refusedLeft != null) expect([...lookup.refused]).toEqual(refusedLeft)
      })
    }

    it('looks nothing held up when nothing may be held', () => {
      const lookup = conversation([], [6])
      advance({ next: 5 }, { from: 6, mayHold: false }, 200, lookup)
      expect(lookup.calls).toEqual([])
    })
  })

  describe('gap release', () => {
    it('expires a gap gapTimeout after it opened', () => {
      expect(gapCutoff(61_000, 60_000)).toBe(1_000)
      expect(untilGapExpires(1_000, 60_000, 1_000)).toBe(60_000)
      expect(untilGapExpires(1_000, 60_000, 60_999)).toBe(1)
      expect(untilGapExpires(1_000, 60_000, 61_000)).toBe(0)
      expect(untilGapExpires(1_000, 60_000, 99_000)).toBe(0)
    })

    const held = (...seqs: number[]): Held[] => seqs.map(seq => ({ seq, id: `m${seq}` }))

    it('presents everything held when it fits, closes the gap and forgets every refused mark', () => {
      expect(releasePage('p', { next: 2, gapSince: 1 }, held(3, 4, 7), 4)).toEqual({
        peer: 'p', presented: held(3, 4, 7), order: { next: 8 }, closed: true, forgetRefusedThrough: Infinity
      })
    })

    it('presents a page when more is held, keeps the gap open past it, and forgets the refused marks it passed', () => {
      // read with room + 1: the fifth says there is more
      expect(releasePage('p', { next: 2, gapSince: 1 }, held(3, 4, 5, 6, 7), 4)).toEqual({
        peer: 'p', presented: held(3, 4, 5, 6), order: { next: 7, gapSince: 1 }, closed: false, forgetRefusedThrough: 6
      })
    })

    it('closes a gap with nothing left held without moving the conversation', () => {
      expect(releasePage('p', { next: 9, gapSince: 1 }, [], 4)).toEqual({ peer: 'p', presented: [], order: { next: 9 }, closed: true, forgetRefusedThrough: Infinity })
    })

    it('pages a flood of held messages: at most `limit` a call, in seq order, going on where it stopped', () => {
      const waiting = new Map([['p', held(...Array.from({ length: 10 }, (_, i) => i + 3))]])
      const orders = new Map<string, InboundOrder>([['p', { next: 2, gapSince: 1 }]])
      const reads: number[] = []
      const pages: number[][] = []
      for (let call = 0; call < 10; call++) {
        const expired = [...orders].filter(([, o]) => o.gapSince != null).map(([peer, order]) => ({ peer, order }))
        const { releases, more } = releaseExpired(expired, 4, (peer, atMost) => {
          reads.push(atMost)
          return (waiting.get(peer) ?? []).slice(0, atMost)
        })
        for (const release of releases) {
          waiting.set(release.peer, (waiting.get(release.peer) ?? []).slice(release.presented.length))
          orders.set(release.peer, release.order)
        }
        pages.push(releases.flatMap(r => r.presented.map(m => m.seq)))
        if (!more) break
      }
      expect(pages).toEqual([[3, 4, 5, 6], [7, 8, 9, 10], [11, 12]])
      expect(reads).toEqual([5, 5, 5])
      expect(orders.get('p')).toEqual({ next: 13 })
    })

    it('shares the page between conversations, oldest gap first, and reads none it has no room for', () => {
      const waiting = new Map([['a', held(2, 3, 4)], ['b', held(5, 6, 7, 8)], ['c', held(2)]])
      const read: string[] = []
      const heldOf = (peer: string, atMost: number): Held[] => {
        read.push(peer)
        return (waiting.get(peer) ?? []).slice(0, atMost)
      }
      const expired = ['a', 'b', 'c'].map(peer => ({ peer, order: { next: 1, gapSince: 1 } }))
      const first = releaseExpired(expired, 5, heldOf)
      expect(first.more).toBe(true)
      expect(first.releases.map(r => [r.peer, r.presented.map(m => m.seq), r.closed])).toEqual([['a', [2, 3, 4], true], ['b', [5, 6], false]])
      expect(read).toEqual(['a', 'b'])

      read.length = 0
      const full = releaseExpired(expired.slice(0, 2), 3, heldOf)
      expect(full).toMatchObject({ more: true, releases: [{ peer: 'a', closed: true }] })
      expect(read).toEqual(['a'])
    })
  })

  describe('a conversation driven by the rules alone', () => {
    /** The rules as the store runs them, on memory: what a user would see, in order. */
    function run (events: Array<number | `refused ${number}` | 'timeout'>, maxHeld = Infinity): { shown: number[], results: string[] } {
      let order: InboundOrder = { next: 1 }
      const lookup = conversation()
      const shown: number[] = []
      const results: string[] = []
      let now = 0
      for (const event of events) {
        now++
        if (event === 'timeout') {
          const { releases } = releaseExpired(order.gapSince == null ? [] : [{ peer: 'p', order }], Infinity, () => [...lookup.held].sort((a, b) => a.seq - b.seq))
          for (const release of releases) {
            shown.push(...release.presented.map(m => m.seq))
            lookup.held.splice(0)
            for (const seq of lookup.refused) if (seq <= release.forgetRefusedThrough) lookup.refused.delete(seq)
            order = release.order
          }
          continue
        }
        if (typeof event === 'string') {
          const seq = Number(event.split(' ')[1])
          const start = refusal(order, seq)
          if (start == null) continue
          lookup.refused.add(seq)
          const step = advance(order, start, now, lookup)
          shown.push(...step.presented.map(m => m.seq))
          order = step.order
          continue
        }
        const decision = arrival(order, event, maxHeld, lookup)
        results.push(decision.action)
        if (decision.action === 'held-full') continue
        if (decision.action === 'present') shown.push(event)
        else lookup.held.push({ seq: event, id: `m${event}` })
        if (decision.advance == null) continue
        const step = advance(order, decision.advance, now, lookup)
        shown.push(...step.presented.map(m => m.seq))
        order = step.order
      }
      return { shown, results }
    }

    it('shows every message once, in seq order, whatever order they arrive in', () => {
      let seed = 42
      const random = (): number => { seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31; return seed / 2 ** 31 }
      for (let round = 0; round < 50; round++) {
        const seqs = Array.from({ length: 20 }, (_, i) => i + 1)
        for (let i = seqs.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1))
          ;[seqs[i], seqs[j]] = [seqs[j], seqs[i]]
        }
        expect(run(seqs).shown).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
      }
    })

    it('lets refused seqs fill gaps, before or after the messages behind them arrive', () => {
      expect(run([1, 'refused 2', 3, 5, 'refused 4', 6]).shown).toEqual([1, 3, 5, 6])
    })

    it('gives a gap up on timeout and still shows the missing seq when it turns up late', () => {
      expect(run([1, 3, 4, 'timeout', 2, 5]).shown).toEqual([1, 3, 4, 2, 5])
    })

    it('refuses what would be held past maxHeld, and takes it once the gap filled', () => {
      expect(run([1, 3, 4, 5, 2, 5], 2)).toEqual({ shown: [1, 2, 3, 4, 5], results: ['present', 'hold', 'hold', 'held-full', 'present', 'present'] })
    })
  })
})
