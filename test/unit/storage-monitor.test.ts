import { describe, expect, it } from 'vitest'
import { Policy } from '../../node/policy.js'
import { StorageMonitor } from '../../node/storage-monitor.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { Logger } from '@libp2p/interface'

const log = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => log }) as unknown as Logger

describe('StorageMonitor', () => {
  it('tells the policy when the store reaches its limit and when it has room again, checking every second', () => {
    const clock = new FakeClock()
    const policy = new Policy({}, clock.now)
    let used = 900
    let reads = 0
    const monitor = new StorageMonitor({ store: { usedBytes: () => { reads++; return used } }, policy, log, clock }, 1_000)
    monitor.start()
    expect(policy.full).toBe(false)
    used = 1_000
    clock.advance(999)
    expect(policy.full).toBe(false)
    clock.advance(1)
    expect(policy.full).toBe(true)
    used = 10
    clock.advance(1_000)
    expect(policy.full).toBe(false)
    expect(reads).toBe(3)
    monitor.stop()
    clock.advance(10_000)
    expect(reads).toBe(3)
    expect(clock.pending).toBe(0)
  })

  it('checks at once after 64 KiB stored, not at every message', () => {
    const clock = new FakeClock()
    const policy = new Policy({}, clock.now)
    let reads = 0
    const monitor = new StorageMonitor({ store: { usedBytes: () => { reads++; return 5_000 } }, policy, log, clock }, 4_096)
    for (let i = 0; i < 63; i++) monitor.stored(1024)
    expect(reads).toBe(0)
    monitor.stored(1024)
    expect(reads).toBe(1)
    expect(policy.full).toBe(true)
    // and check() reports the size, for `status`
    expect(monitor.check()).toBe(5_000)
  })
})
