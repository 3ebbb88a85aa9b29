import { describe, expect, it } from 'vitest'
import { FakeClock } from '../fixtures/fake-clock.js'

describe('FakeClock', () => {
  it('runs timers in order as time advances, including timers set by timers', () => {
    const clock = new FakeClock(0)
    const ran: string[] = []
    clock.setTimeout(() => { ran.push(`b@${clock.now()}`) }, 20)
    clock.setTimeout(() => {
      ran.push(`a@${clock.now()}`)
      clock.setTimeout(() => { ran.push(`c@${clock.now()}`) }, 5)
    }, 10)
    const cancelled = clock.setTimeout(() => { ran.push('never') }, 1)
    clock.clearTimeout(cancelled)
    clock.advance(9)
    expect(ran).toEqual([])
    clock.advance(100)
    expect(ran).toEqual(['a@10', 'c@15', 'b@20'])
    expect(clock.now()).toBe(109)
    expect(clock.pending).toBe(0)
  })
})
