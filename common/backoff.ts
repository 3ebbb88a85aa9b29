/** Exponential back-off, the one formula parley's retry loops share. */

export interface BackoffInit {
  /** The delay after the first failure (its ceiling, with jitter), ms. */
  first: number
  /** The longest delay, ms. */
  max: number
  /**
   * `full`: anywhere in [0, delay) (AWS's "full jitter": retries of many
   * senders spread out); `equal`: in [delay/2, delay); `none`: the delay itself.
   */
  jitter: 'full' | 'equal' | 'none'
}

/**
 * How long to wait after the `failures`-th failure in a row (1 for the
 * first): `first`, doubled with each further failure, capped at `max`, then
 * jittered. `random` is injectable for tests.
 */
export function backoff (failures: number, init: BackoffInit, random: () => number = Math.random): number {
  const delay = Math.min(init.max, init.first * 2 ** Math.max(0, failures - 1))
  switch (init.jitter) {
    case 'full': return random() * delay
    case 'equal': return delay / 2 + random() * delay / 2
    case 'none': return delay
  }
}
