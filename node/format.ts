import type { HistoryEntry } from './node.js'

/** Short peer IDs for people: the last 6 characters, like git's short hashes. */
export function shortPeer (peerId: string): string {
  return `…${peerId.slice(-6)}`
}

export function clock (ms: number | undefined): string {
  if (ms == null) return '--:--:--'
  return new Date(ms).toTimeString().slice(0, 8)
}

/** A tick per delivery state, as chat programs show them. */
export function tick (status: HistoryEntry['status']): string {
  switch (status) {
    case 'delivered': return '✓'
    case 'failed': return '✗'
    case 'received': return ''
    default: return '…'
  }
}

/** One line of history for a terminal. */
export function historyLine (m: HistoryEntry, names: Map<string, string> = new Map()): string {
  const who = m.direction === 'out' ? 'me' : (names.get(m.from) ?? shortPeer(m.from))
  const when = clock(m.direction === 'out' ? m.sentAt : m.receivedAt)
  const state = m.direction === 'out' ? ` ${tick(m.status)}${m.path != null ? ` (${m.path})` : ''}${m.reason != null ? ` ${m.reason}` : ''}` : ` (${m.path ?? '?'})`
  return `[${when}] ${who}: ${m.body}${state}`
}
