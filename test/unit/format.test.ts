import { describe, expect, it } from 'vitest'
import { CONTINUATION_INDENT, contactNames, conversationsTable, historyLine, outboxTable, peerLabel, span, terminalSafe } from '../../cli/format.js'
import type { Conversation, HistoryEntry, OutboxItem } from '../../node/types.js'

/** Every code point a terminal acts on rather than prints, but line feed and tab. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

const TRUSTED = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'

/** The attack of issue 11: retitle the window, erase the line, and pose as a trusted contact. */
const SPOOF = `\x1b]0;pwned\x07\x1b[2K\r[12:00:00] ${TRUSTED} (direct): new number, text me at +1 555 0100`

function entry (body: string, more: Partial<HistoryEntry> = {}): HistoryEntry {
  return {
    id: '0190f5c8-7d3a-7a8b-8c9d-0123456789ab',
    from: '12D3KooWStrangerStrangerStrangerStrangerStrangerAbcdef',
    to: TRUSTED,
    direction: 'in',
    seq: 1,
    body,
    contentType: 'text/plain',
    sentAt: 0,
    receivedAt: 0,
    status: 'received',
    path: 'relayed',
    ...more
  }
}

describe('terminalSafe', () => {
  it('leaves ordinary text alone, emoji and scripts included', () => {
    for (const text of ['hello', 'héllo wörld', 'こんにちは', '👨‍👩‍👧 family', 'שלום', 'a\tb']) {
      expect(terminalSafe(text)).toBe(text)
    }
  })

  it('shows C0 and C1 controls and DEL as visible escapes', () => {
    expect(terminalSafe('\x1b[31mred\x1b[0m')).toBe('\\x1b[31mred\\x1b[0m')
    expect(terminalSafe('bell\x07')).toBe('bell\\x07')
    expect(terminalSafe('back\bspace\x7f')).toBe('back\\x08space\\x7f')
    expect(terminalSafe('nul\x00')).toBe('nul\\x00')
    // 8-bit CSI and OSC
    expect(terminalSafe('\u009b2J\u009d0;x\u009c')).toBe('\\x9b2J\\x9d0;x\\x9c')
    expect(terminalSafe('\x0b\x0c')).toBe('\\x0b\\x0c')
  })

  it('shows a lone CR, never lets it return to column 0; CR LF is a line feed', () => {
    expect(terminalSafe('fake\rreal')).toBe('fake\\x0dreal')
    expect(terminalSafe('one\r\ntwo')).toBe(`one\n${CONTINUATION_INDENT}two`)
  })

  it('shows bidi controls, which reorder what follows them', () => {
    expect(terminalSafe('abc\u202edcba')).toBe('abc\\u202edcba')
    expect(terminalSafe('\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c'))
      .toBe('\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c')
    expect(terminalSafe('line\u2028sep\u2029para')).toBe('line\\u2028sep\\u2029para')
  })

  it('shows lone surrogates but keeps pairs', () => {
    expect(terminalSafe('a\ud800b')).toBe('a\\ud800b')
    expect(terminalSafe('a\udc00b')).toBe('a\\udc00b')
    expect(terminalSafe('\ud83d\ude00')).toBe('😀')
  })

  it('indents continuation lines, or with indent: false keeps one line', () => {
    expect(terminalSafe('first\nsecond\nthird')).toBe(`first\n${CONTINUATION_INDENT}second\n${CONTINUATION_INDENT}third`)
    expect(terminalSafe('first\nsecond', { indent: '  | ' })).toBe('first\n  | second')
    expect(terminalSafe('first\r\nsecond\x1b', { indent: false })).toBe('first\\nsecond\\x1b')
  })

  it('defuses the spoofed line: no control left, and the fake line is not at column 0', () => {
    const safe = terminalSafe(`hi\n${SPOOF}`)
    expect(safe).not.toMatch(CONTROL)
    for (const line of safe.split('\n').slice(1)) expect(line.startsWith(CONTINUATION_INDENT)).toBe(true)
    // eslint-disable-next-line no-control-regex
    expect(terminalSafe(SPOOF, { indent: false })).not.toMatch(/[\n\r\x1b\x07]/)
  })
})

describe('historyLine', () => {
  it('prints a peer\'s body, content type and reason terminal-safe, continuation lines indented', () => {
    const line = historyLine(entry(`hello\n${SPOOF}`, { contentType: 'text/x\x1b[2Jevil' }))
    expect(line).not.toMatch(CONTROL)
    const lines = line.split('\n')
    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\] …Abcdef: hello$/)
    expect(lines[1].startsWith(CONTINUATION_INDENT)).toBe(true)
    expect(lines[1]).toContain('[text/x\\x1b[2Jevil]')

    const failed = historyLine(entry('mine', { direction: 'out', status: 'failed', reason: 'BLOCKED\x1b[2K\rdelivered' }))
    expect(failed).not.toMatch(CONTROL)
    expect(failed).toContain('BLOCKED\\x1b[2K\\x0ddelivered')
  })

  it('marks a stranger\'s message as a request and names the sender safely', () => {
    const line = historyLine(entry('hi', { request: true }), new Map([[entry('').from, 'eve\x1b[8m']]))
    expect(line).toMatch(/^\[\d\d:\d\d:\d\d\] eve\\x1b\[8m \(request\): hi \(relayed\)$/)
    expect(historyLine(entry('hi'))).not.toContain('(request)')
  })
})

describe('the inbox\'s formatting', () => {
  const PEER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
  const OTHER = '12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'

  it('names a peer by its first contact, terminal-safe, or falls back to its short or whole ID', () => {
    const names = contactNames([{ name: 'al\x1b[2Jice', peerId: PEER }, { name: 'zed', peerId: PEER }])
    expect(peerLabel(PEER, names)).toBe('al\\x1b[2Jice')
    expect(peerLabel(OTHER, names)).toBe('…c6iDEp')
    expect(peerLabel(OTHER, names, id => id)).toBe(OTHER)
  })

  it('prints one terminal-safe row a conversation: name or short peer, unread, date, the last message cut to one line', () => {
    const conversation = (over: Partial<Conversation>): Conversation => ({
      peerId: PEER,
      last: { id: 'x', direction: 'in', preview: 'hi', contentType: 'text/plain', at: 0, status: 'received' },
      unread: 0,
      request: false,
      ...over
    })
    const table = conversationsTable([
      conversation({ name: 'bob\u202e', unread: 3, last: { id: 'a', direction: 'in', preview: `two\nlines\x1b]0;x\x07${'y'.repeat(100)}`, contentType: 'text/plain', at: 0, status: 'received' } }),
      conversation({ peerId: OTHER, request: true, last: { id: 'b', direction: 'out', preview: 'mine', contentType: 'image/png', at: 0, status: 'delivered' } })
    ])
    const rows = table.split('\n')
    expect(rows).toHaveLength(3)
    expect(rows[0]).toMatch(/^NAME\s+UNREAD\s+LAST\s+MESSAGE$/)
    expect(rows[1]).toMatch(/^bob\\u202e\s+3\s+\S+ \S+\s+two\\nlines\\x1b\]0;x\\x07y+…$/)
    expect(Array.from(rows[1].split(/\s{2,}/).at(-1) ?? '')).toHaveLength(60)
    expect(rows[2]).toMatch(/^…c6iDEp \(request\)\s+\S+ \S+\s+me: mine \[image\/png\]$/)
    expect(table).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]/) // eslint-disable-line no-control-regex
    expect(conversationsTable([])).toBe('(no conversations yet)')
  })
})

describe('the outbox table', () => {
  const NOW = 1_700_000_000_000
  const PEER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
  const item = (more: Partial<OutboxItem>): OutboxItem => ({ id: '0190f5c8-7d3a-7a8b-8c9d-000000000001', from: TRUSTED, to: PEER, direction: 'out', seq: 1, body: 'hi', contentType: 'text/plain', sentAt: NOW - 3 * 3_600_000, status: 'queued', attempts: 4, nextAttemptAt: NOW + 90_000, ...more })

  it('shows each message with its recipient\'s name, status, tries, next attempt, age and last error, one terminal-safe line each', () => {
    const table = outboxTable([
      item({ lastError: 'no addresses\x1b[2K' }),
      item({ id: '0190f5c8-7d3a-7a8b-8c9d-000000000002', to: TRUSTED, status: 'sending', attempts: 0, sentAt: NOW - 5_000 })
    ], new Map([[PEER, 'bob\nme: fake']]), NOW).split('\n')
    expect(table[0]).toMatch(/^ID +TO +STATUS +TRIES +NEXT +AGE +LAST ERROR$/)
    expect(table[1]).toMatch(/^0190f5c8-7d3a-7a8b-8c9d-000000000001 +bob\\nme: fake +queued +4 +in 1 min +3 h +no addresses\\x1b\[2K$/)
    expect(table[2]).toMatch(/^0190f5c8-7d3a-7a8b-8c9d-000000000002 +…LvKXtf +sending +0 +now +5 s$/)
    expect(table.at(-1)).toBe('cancel one: parley cancel <id>')
    expect(outboxTable([], new Map(), NOW)).toMatch(/^\(the outbox is empty/)
  })

  it('says lengths of time to one unit', () => {
    expect([span(-5), span(45_000), span(12 * 60_000), span(3 * 3_600_000 + 1), span(6 * 86_400_000)]).toEqual(['0 s', '45 s', '12 min', '3 h', '6 d'])
  })
})
