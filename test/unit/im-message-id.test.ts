import { parse as parseUuid, stringify as stringifyUuid, v7 as uuidv7, validate, version } from 'uuid'
import { describe, expect, it } from 'vitest'
import { idFromString, idToString, isMessageId, newMessageId } from '../../node/message-id.js'

describe('message ids as text (node/message-id.ts)', () => {
  it('reads and writes the UUID layout, byte for byte as the uuid package does', () => {
    for (let i = 0; i < 20; i++) {
      const text = uuidv7()
      const bytes = idFromString(text)
      expect(bytes).toEqual(new Uint8Array(parseUuid(text)))
      expect(bytes.buffer.byteLength).toBe(16)
      expect(idToString(bytes)).toBe(stringifyUuid(bytes))
    }
  })

  it('names any 16 bytes, not only UUIDs, in lower case; reads either case', () => {
    const bytes = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i)
    expect(idToString(bytes)).toBe('f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff')
    expect(idFromString('F0F1F2F3-F4F5-F6F7-F8F9-FAFBFCFDFEFF')).toEqual(bytes)
    // a view into a larger buffer
    const larger = new Uint8Array(20)
    larger.set(bytes, 4)
    expect(idToString(larger.subarray(4))).toBe('f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff')
  })

  it('refuses what is not 16 bytes or not the layout', () => {
    expect(() => idToString(new Uint8Array(15))).toThrow(RangeError)
    expect(() => idFromString('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff')).toThrow(RangeError)
    expect(() => idFromString('g0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff')).toThrow(RangeError)
    expect(isMessageId('f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff')).toBe(true)
    expect(isMessageId(42)).toBe(false)
  })

  it('makes new ids as UUIDv7s, all different, in the order they were made, past the pool of random bytes they are drawn from', () => {
    const start = Date.now()
    // 256 ids a pool: several refills, and many ids in one millisecond
    const ids = Array.from({ length: 2_000 }, () => newMessageId())
    for (const id of ids) {
      expect(validate(id)).toBe(true)
      expect(version(id)).toBe(7)
      expect(isMessageId(id)).toBe(true)
    }
    expect(new Set(ids).size).toBe(ids.length)
    expect([...ids].sort()).toEqual(ids)
    // the first 48 bits are the time they were made
    const ms = parseInt(ids[0].replaceAll('-', '').slice(0, 12), 16)
    expect(ms).toBeGreaterThanOrEqual(start)
    expect(ms).toBeLessThanOrEqual(Date.now())
  })
})
