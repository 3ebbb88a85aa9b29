/**
 * Time as parley's parts see it: injected, so that a unit test can drive
 * retries, back-offs and gap timeouts with a fake clock instead of sleeping.
 */
export interface Clock {
  /** ms since the Unix epoch, as Date.now(). */
  now: () => number
  /** As setTimeout, but the timer never keeps the process alive (a stopped part clears its timers anyway). */
  setTimeout: (fn: () => void, ms: number) => ClockTimer
  clearTimeout: (timer: ClockTimer | undefined) => void
}

/** An opaque timer handle. */
export type ClockTimer = unknown

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, ms)
    timer.unref()
    return timer
  },
  clearTimeout: (timer) => { clearTimeout(timer as ReturnType<typeof setTimeout> | undefined) }
}

/**
 * An AbortSignal that aborts `ms` from now on `clock`, as AbortSignal.timeout
 * does on the real one (with the same TimeoutError); `clear` drops the timer
 * once the guarded operation is over.
 */
export function timeoutSignal (clock: Clock, ms: number): { signal: AbortSignal, clear: () => void } {
  const controller = new AbortController()
  const timer = clock.setTimeout(() => { controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')) }, ms)
  return { signal: controller.signal, clear: () => { clock.clearTimeout(timer) } }
}
