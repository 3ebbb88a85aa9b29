import { systemClock } from '../common/clock.js'
import type { Policy } from './policy.js'
import type { Clock, ClockTimer } from '../common/clock.js'
import type { Logger } from '@libp2p/interface'

/** How often the store's size is checked against its limit, ms, and after how many bytes stored since the last check. */
const CHECK_INTERVAL = 1_000
const CHECK_BYTES = 64 * 1024

export interface StorageMonitorComponents {
  /** Bytes the message store takes now. */
  store: { usedBytes: () => number }
  /** Told when the store fills up or has room again. */
  policy: Pick<Policy, 'full' | 'setStoreFull'>
  log: Logger
  clock?: Clock
}

/**
 * Keeps the policy's "store full" flag true to the store's size: checked
 * every second and after every 64 KiB stored, so that a flood is refused
 * within one check of the limit while a quiet node reads the size rarely.
 */
export class StorageMonitor {
  private readonly clock: Clock
  private timer?: ClockTimer
  /** Body bytes stored since the size was last read. */
  private storedSinceCheck = 0

  constructor (private readonly components: StorageMonitorComponents, private readonly limitBytes: number) {
    this.clock = components.clock ?? systemClock
  }

  start (): void {
    this.check()
    this.schedule()
  }

  stop (): void {
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
  }

  /** `bytes` of message bodies were just stored. */
  stored (bytes: number): void {
    this.storedSinceCheck += bytes
    if (this.storedSinceCheck >= CHECK_BYTES) this.check()
  }

  /** Reads the store's size and tells the policy whether it is full; the size. */
  check (): number {
    this.storedSinceCheck = 0
    const used = this.components.store.usedBytes()
    const full = used >= this.limitBytes
    if (full !== this.components.policy.full) {
      this.components.log[full ? 'error' : 'trace'](full ? 'message store full (limit %d bytes): inbound messages are answered RATE_LIMITED' : 'message store below its limit (%d bytes) again', this.limitBytes)
      this.components.policy.setStoreFull(full)
    }
    return used
  }

  private schedule (): void {
    this.timer = this.clock.setTimeout(() => {
      this.check()
      this.schedule()
    }, CHECK_INTERVAL)
  }
}
