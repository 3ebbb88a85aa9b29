// Small statistics helpers: the bench reports medians and tails, never means
// of single runs, because the machines it runs on are shared and noisy.

/** The q-quantile (0..1) of `values` (nearest rank on a sorted copy). */
export function quantile (values, q) {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]
}

export function median (values) {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** p50, p99, min, max and count of a latency sample set (ms). */
export function summarize (values) {
  return {
    n: values.length,
    p50: median(values),
    p99: quantile(values, 0.99),
    min: values.length === 0 ? NaN : Math.min(...values),
    max: values.length === 0 ? NaN : Math.max(...values)
  }
}

/** Rounds to `digits` significant digits for display. */
export function sig (x, digits = 3) {
  if (x == null || !Number.isFinite(x)) return String(x)
  if (x === 0) return '0'
  return Number(x.toPrecision(digits)).toString()
}

/** Rotates `list` by `round`, so that no method always runs first in a round. */
export function rotate (list, round) {
  const k = round % list.length
  return [...list.slice(k), ...list.slice(0, k)]
}
