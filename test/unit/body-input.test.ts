import { describe, expect, it } from 'vitest'
import { BodyNotTextError, BodyTooLargeError, checkBodySize, readBody } from '../../cli/body-input.js'

async function * chunks (...parts: Array<string | Uint8Array>): AsyncGenerator<string | Uint8Array> {
  yield * parts
}

describe('a message body read from stdin', () => {
  it('keeps the bytes, dropping one trailing line end only', async () => {
    expect(await readBody(chunks('a\n\n'))).toBe('a\n')
    expect(await readBody(chunks('a\r\n'))).toBe('a')
    expect(await readBody(chunks('a'))).toBe('a')
    expect(await readBody(chunks('  x  '))).toBe('  x  ')
  })

  it('joins a character split across chunks', async () => {
    const smile = Buffer.from('😀', 'utf8')
    expect(await readBody(chunks(smile.subarray(0, 1), smile.subarray(1, 3), smile.subarray(3)))).toBe('😀')
  })

  it('takes exactly the limit, with or without a line end, and refuses one byte more', async () => {
    expect(await readBody(chunks('x'.repeat(8)), 8)).toBe('x'.repeat(8))
    expect(await readBody(chunks('x'.repeat(8) + '\r\n'), 8)).toBe('x'.repeat(8))
    await expect(readBody(chunks('x'.repeat(9)), 8)).rejects.toThrow(BodyTooLargeError)
    await expect(readBody(chunks('x'.repeat(9) + '\n'), 8)).rejects.toThrow('the message is 9 bytes of UTF-8, over the 8-byte limit')
  })

  it('says how big a long input was', async () => {
    await expect(readBody(chunks('x'.repeat(5), 'x'.repeat(100)), 8)).rejects.toThrow('the message is 105 bytes')
  })

  it('refuses what is not UTF-8', async () => {
    await expect(readBody(chunks(Uint8Array.of(0x68, 0xff)))).rejects.toThrow(BodyNotTextError)
  })

  it('checks an argument against the protocol limit', () => {
    expect(() => { checkBodySize('好'.repeat(10_922)) }).not.toThrow()
    expect(() => { checkBodySize('好'.repeat(10_923)) }).toThrow(/32769 bytes of UTF-8, over the 32768-byte limit/)
  })
})
