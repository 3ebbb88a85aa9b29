import type { Stream } from '@libp2p/interface'

/**
 * Runs `fn` in the event loop's next turn, after the I/O callbacks of this
 * one: Node's `setImmediate`. None in a browser, where window updates are
 * left as the muxer sends them.
 */
const nextTurn: ((fn: () => void) => void) | undefined = typeof globalThis.setImmediate === 'function'
  ? (fn) => { globalThis.setImmediate(fn) }
  : undefined

export interface WindowUpdateHoldInit {
  /** Whether the stream is to stay paused when the hold ends (its reader paused it for a reason of its own meanwhile). */
  keepPaused(): boolean
  /** The update could not be written as reading resumed (the connection closed meanwhile). */
  onError(err: Error): void
}

/**
 * Holds back the window update yamux answers every chunk it hands over with,
 * until the event loop's next turn.
 *
 * That update is a write of its own (on loopback a system call of ~30 µs, a
 * Noise message and its two writes), made as the `message` listener returns
 * and before anything that listener woke gets to run. On the side that reads
 * acks, every send they resolve waits for it; on the side that reads
 * messages, it follows the ack out and lands in the sender's read of that
 * ack, which decrypts and handles it before the ack's callbacks run. A paused
 * yamux stream sends no update, so `hold()`, called from the listener, pauses
 * reading until the next turn: the update then goes after those callbacks,
 * and one update covers every chunk that came meanwhile, which the stream
 * keeps and hands over as it resumes.
 */
export class WindowUpdateHold {
  private holding = false

  constructor (private readonly stream: Stream, private readonly init: WindowUpdateHoldInit) {}

  /** Whether reading is paused by this hold now. */
  get active (): boolean {
    return this.holding
  }

  hold (): void {
    if (nextTurn == null || this.holding || this.stream.readStatus !== 'readable') return
    this.holding = true
    this.stream.pause()
    nextTurn(() => {
      try {
        // still holding: chunks it hands over now are answered as the muxer does
        if (!this.init.keepPaused() && this.stream.readStatus === 'paused') this.stream.resume()
      } catch (err: any) {
        this.init.onError(err)
      } finally {
        this.holding = false
      }
    })
  }
}
