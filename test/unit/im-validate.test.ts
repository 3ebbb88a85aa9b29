import { describe, expect, it } from 'vitest'
import { Ack, isMediaType } from '../../protocols/im/index.js'
import { refusalFor } from '../../protocols/im/validate.js'
import type { ChatMessage } from '../../protocols/im/index.js'

const ID = new Uint8Array(16).fill(1)

function message (overrides: Partial<ChatMessage> = {}): ChatMessage {
  return { id: ID, seq: 1n, sentAt: 1n, body: 'hi', ...overrides }
}

describe('isMediaType (spec section 3)', () => {
  it.each([
    'text/plain',
    'text/markdown',
    'text/markdown; charset=utf-8',
    'text/markdown;charset=utf-8',
    'text/markdown  ;  charset=utf-8',
    'application/vnd.foo+json',
    'application/vnd.api+json; ext="https://x.example/a"; profile=1',
    'TEXT/PLAIN; Charset=UTF-8',
    "x-!#$%&'*+-.^_`|~/y",
    'text/plain; q=""',
    'text/plain; q="a \\" b; c=d \\\\"',
    'text/' + 'a'.repeat(123) // 128 bytes
  ])('accepts %j', (text) => {
    expect(isMediaType(text)).toBe(true)
  })

  it.each([
    '',
    'text',
    'text/',
    '/plain',
    'te xt/plain',
    'text /plain',
    'text/ plain',
    'text/plain ',
    ' text/plain',
    'text/plain/x',
    'text/plain;',
    'text/plain; ',
    'text/plain; charset',
    'text/plain; charset=',
    'text/plain; =utf-8',
    'text/plain; charset=utf 8',
    'text/plain; charset="utf-8',
    'text/plain; charset="a"b',
    'text/plain; charset="\\"',
    'text/plain, text/html',
    'text/plain\x1b[2K',
    'text/plain\r\nX-Injected: 1',
    'text/plain\n',
    'text/plain\u0000',
    'text/plain\t;charset=utf-8',
    'text/plain; q="\x7f"',
    'text/plain; q="\t"',
    'text/plaïn',
    'text/plain; charset="ütf-8"',
    'text/🎉',
    'text/(comment)',
    'text/' + 'a'.repeat(124) // 129 bytes
  ])('refuses %j', (text) => {
    expect(isMediaType(text)).toBe(false)
  })

  it('is linear on long hostile input', () => {
    const hostile = 'a/b' + '; c="'.repeat(20_000) + '\\'
    const started = performance.now()
    expect(isMediaType(hostile)).toBe(false)
    expect(isMediaType(hostile.slice(0, 128))).toBe(false)
    expect(performance.now() - started).toBeLessThan(100)
  })
})

describe('refusalFor (spec section 6)', () => {
  it.each([
    ['no content_type', undefined, undefined],
    ['text/plain', 'text/plain', undefined],
    ['a media type with parameters', 'text/markdown; charset=utf-8', undefined],
    ['an empty content_type', '', Ack.Status.INVALID],
    ['a content_type without a subtype', 'text', Ack.Status.INVALID],
    ['a content_type with a control character', 'text/plain\x1b[2K', Ack.Status.INVALID],
    ['a content_type with a non-ASCII character', 'téxt/plain', Ack.Status.INVALID],
    ['a media type of 129 bytes', 'text/' + 'a'.repeat(124), Ack.Status.TOO_LARGE],
    ['garbage of 129 bytes', '\x00'.repeat(129), Ack.Status.TOO_LARGE]
  ])('answers %s with %s', (_, contentType, status) => {
    expect(refusalFor(message({ contentType }))).toBe(status)
  })

  it.each([
    ['16 x 0xff', new Uint8Array(16).fill(0xff)],
    ['all zeros', new Uint8Array(16)],
    ['16 x 0x01', new Uint8Array(16).fill(0x01)]
  ])('accepts any 16-byte id and reply_to: %s', (_, id) => {
    expect(refusalFor(message({ id, replyTo: id }))).toBeUndefined()
  })

  it.each([
    ['seq 0', 0n, Ack.Status.INVALID],
    ['seq 1', 1n, undefined],
    ['seq 2^53 - 1', 2n ** 53n - 1n, undefined],
    ['seq 2^53', 2n ** 53n, Ack.Status.INVALID],
    ['seq 2^64 - 1', 2n ** 64n - 1n, Ack.Status.INVALID]
  ])('answers %s with %s', (_, seq, status) => {
    expect(refusalFor(message({ seq }))).toBe(status)
  })
})

describe('refusalFor: body text', () => {
  it('answers INVALID to a body that is not well-formed UTF-8 (a decoded lone surrogate), and takes any well-formed text', () => {
    expect(refusalFor(message({ body: 'half an emoji \ud83d' }))).toBe(Ack.Status.INVALID)
    expect(refusalFor(message({ body: '\udc00 backwards' }))).toBe(Ack.Status.INVALID)
    expect(refusalFor(message({ body: 'whole: 😀 中文 \u0000' }))).toBeUndefined()
  })
})
