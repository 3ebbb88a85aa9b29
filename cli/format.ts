import type { Conversation, HistoryEntry, NodeStatus, OutboxItem, Reachability } from '../node/types.js'

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
    // in the recipient's mailbox: out of the sender's hands, not yet read off it
    case 'stored': return '✉'
    case 'failed': return '✗'
    case 'received': return ''
    default: return '…'
  }
}

/** What a continuation line of a multi-line text starts with: never column 0, where every line parley prints begins. */
export const CONTINUATION_INDENT = '    '

/**
 * Code points a terminal must not get from a peer: C0 controls but tab and
 * line feed (ESC starts escape sequences, CR and BS move the cursor back over
 * what was printed, BEL rings), DEL, C1 controls (U+009B is CSI, U+009D OSC on
 * some terminals), the bidirectional marks, embeddings, overrides and isolates
 * that reorder what follows them (U+061C, U+200E–U+200F, U+202A–U+202E,
 * U+2066–U+2069), the Unicode line and paragraph separators, and lone
 * surrogates.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/** A visible stand-in for an unsafe code point: `\x1b` for the 8-bit ones, `\u202e` for the others. */
function visible (char: string): string {
  const code = char.charCodeAt(0)
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
}

export interface TerminalSafeOptions {
  /**
   * Put continuation lines after this (the default, CONTINUATION_INDENT), or,
   * when `false`, show every line feed as `\n` and print one line.
   */
  indent?: string | false
}

/**
 * `text` made safe to print on a terminal: what a peer sends (a body, a
 * content type, a refusal reason, a contact's name) can neither send escape
 * sequences nor move the cursor, nor pose as a line of its own. Each unsafe
 * code point (see UNSAFE) is shown as a visible escape (`\x1b`, `\r`'s
 * `\x0d`, `\u202e`); a CR LF pair counts as one line feed; every line after
 * the first is indented, so none can look like a new message.
 */
export function terminalSafe (text: string, options: TerminalSafeOptions = {}): string {
  const indent = options.indent ?? CONTINUATION_INDENT
  const safe = String(text).replace(/\r\n/g, '\n').replace(UNSAFE, visible)
  return indent === false ? safe.replace(/\n/g, '\\n') : safe.replace(/\n/g, `\n${indent}`)
}

/** One line of history for a terminal (more lines, indented, when the body has line feeds). */
export function historyLine (m: HistoryEntry, names: Map<string, string> = new Map()): string {
  const who = m.direction === 'out' ? 'me' : terminalSafe(names.get(m.from) ?? shortPeer(m.from), { indent: false })
  const when = clock(m.direction === 'out' ? m.sentAt : m.receivedAt)
  const request = m.request === true ? ' (request)' : ''
  const state = m.direction === 'out'
    ? ` ${tick(m.status)}${m.path != null ? ` (${m.path})` : ''}${m.reason != null ? ` ${terminalSafe(m.reason, { indent: false })}` : ''}`
    : ` (${m.path ?? '?'})`
  return `[${when}] ${who}${request}: ${terminalSafe(m.body)}${contentTypeNote(m.contentType)}${state}`
}

/** ` [image/png]` for a body that is not plain text, or nothing. */
export function contentTypeNote (contentType: string | undefined): string {
  if (contentType == null || contentType === '' || /^text\/plain(\s*;|$)/i.test(contentType)) return ''
  return ` [${terminalSafe(contentType, { indent: false })}]`
}

/** "1 message", "3 messages". */
export function count (n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

/** A byte count for people: 1.5 MiB. */
export function bytes (n: number): string {
  if (!Number.isFinite(n)) return '?'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = n
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`
}

/** A date and time for people, local time: 2026-11-25 14:03. */
export function date (ms: number | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return '----------'
  const d = new Date(ms)
  const pad = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
}

/** Each peer's name among the user's contacts: the first contact naming it (as the daemon lists them, by name). */
export function contactNames (contacts: ReadonlyArray<{ name: string, peerId: string }>): Map<string, string> {
  const names = new Map<string, string>()
  for (const contact of contacts) {
    if (!names.has(contact.peerId)) names.set(contact.peerId, contact.name)
  }
  return names
}

/** How a peer is shown: the user's name for it, or `fallback` (the peer ID cut short, or whole); terminal-safe either way. */
export function peerLabel (peerId: string, names: ReadonlyMap<string, string>, fallback: (peerId: string) => string = shortPeer): string {
  return terminalSafe(names.get(peerId) ?? fallback(peerId), { indent: false })
}

/** The inbox as a table: who, unread count, when and the last message, each on one terminal-safe line. */
export function conversationsTable (list: Conversation[]): string {
  if (list.length === 0) return '(no conversations yet)'
  const rows = list.map(c => {
    const who = `${terminalSafe(c.name ?? shortPeer(c.peerId), { indent: false })}${c.request ? ' (request)' : ''}`
    const text = `${c.last.direction === 'out' ? 'me: ' : ''}${terminalSafe(c.last.preview, { indent: false })}${contentTypeNote(c.last.contentType)}`
    return [who, c.unread > 0 ? String(c.unread) : '', date(c.last.at), Array.from(text).length > 60 ? `${Array.from(text).slice(0, 59).join('')}…` : text]
  })
  const header = ['NAME', 'UNREAD', 'LAST', 'MESSAGE']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : i === 1 ? c.padStart(widths[i]) : c.padEnd(widths[i])).join('  ')
  return [line(header), ...rows.map(line)].join('\n')
}

/** A length of time for people, to one unit: 45 s, 12 min, 3 h, 6 d. */
export function span (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min`
  if (s < 86_400) return `${Math.floor(s / 3600)} h`
  return `${Math.floor(s / 86_400)} d`
}

/**
 * The outbox as a table: each waiting message with its recipient (the
 * contact's name where there is one), status, attempts, when it is tried
 * next, its age and the last attempt's error, then how to cancel one.
 */
export function outboxTable (items: OutboxItem[], names: Map<string, string>, now: number): string {
  if (items.length === 0) return '(the outbox is empty: every message sent was delivered or failed)'
  const one = (text: string, max: number): string => {
    const line = terminalSafe(text, { indent: false })
    return line.length > max ? `${line.slice(0, max - 1)}…` : line
  }
  const rows = items.map(m => [
    m.id,
    one(names.get(m.to) ?? shortPeer(m.to), 24),
    m.status,
    String(m.attempts),
    m.status === 'sending' ? 'now' : m.nextAttemptAt <= now ? 'due' : `in ${span(m.nextAttemptAt - now)}`,
    span(now - m.sentAt),
    m.lastError == null ? '' : one(m.lastError, 60)
  ])
  const header = ['ID', 'TO', 'STATUS', 'TRIES', 'NEXT', 'AGE', 'LAST ERROR']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(header), ...rows.map(line), '', 'cancel one: parley cancel <id>'].join('\n')
}

/** The `status` lines on whether other machines can reach this node, and what to do when they cannot. */
export function reachabilityLines (r: Reachability): string[] {
  const safe = (text: string): string => terminalSafe(text, { indent: false })
  const head = r.via === 'relay'
    ? `reachable through relay ${safe(r.relay ?? '')}`
    : r.via === 'public address'
      ? `reachable at public address ${safe(r.address ?? '')}`
      : 'NOT reachable from outside your LAN:'
  const fix = r.reachable || r.reasons.some(reason => reason.startsWith('no relay configured'))
    ? []
    : ['  check the relay is up and its address right (`parley relays`), or add another with `parley relays add <relay link>`']
  return [head, ...r.reasons.map(reason => `  ${safe(reason)}`), ...fix]
}

/** `parley status`'s mailbox lines: each host, whether a session is open, and how full the mailbox is. */
export function mailboxLines (mailboxes: NodeStatus['mailboxes']): string[] {
  const safe = (text: string): string => terminalSafe(text, { indent: false })
  if (mailboxes.length === 0) return ['mailboxes: (none: messages sent while you are offline wait in their senders\' outboxes; a relay with `parley relays add` gives you one)']
  return ['mailboxes:', ...mailboxes.map(m => {
    const fill = m.fill == null ? '' : `  ${m.fill.envelopes}/${m.fill.maxEnvelopes} envelopes, ${bytes(m.fill.bytes)} of ${bytes(m.fill.maxBytes)}`
    const state = m.connected ? 'open' : `NOT open${m.lastError != null ? ` (${safe(m.lastError)})` : ''}`
    return `  ${state}  ${safe(m.host)}${fill}${m.received > 0 ? `  ${m.received} fetched` : ''}`
  })]
}
