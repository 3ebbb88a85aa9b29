/** common/config.ts: the layering machinery the relay's and the daemon's configs are built on. */
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { mergeLayers, parseConfig } from '../../common/config.js'

describe('common config layers', () => {
  it('merges objects key by key and replaces lists whole', () => {
    const merged = mergeLayers([
      { source: 'a', values: { listen: ['x', 'y'], limits: { a: 1, b: 2 } } },
      undefined,
      { source: 'b', values: { listen: ['z'], limits: { b: 3, c: undefined } }, origins: { 'limits.b': 'FLAG_B' } }
    ])
    expect(merged.values).toEqual({ listen: ['z'], limits: { a: 1, b: 3 } })
    expect(merged.origins.get('limits.a')).toBe('a')
    expect(merged.origins.get('limits.b')).toBe('FLAG_B')
    expect(merged.origins.get('listen')).toBe('b')
  })

  it('validates nested keys of any schema with path, reason and source', () => {
    const schema = z.strictObject({ retry: z.strictObject({ maxDelay: z.int().positive({ error: 'must be a positive integer' }) }).optional() })
    expect(() => parseConfig(schema, [{ source: 'config file x.json', values: { retry: { maxDelay: -1 } } }]))
      .toThrow('retry.maxDelay: must be a positive integer, got -1 (from config file x.json)')
    expect(parseConfig(schema, [{ source: 'flags', values: { retry: { maxDelay: 5 } } }])).toEqual({ retry: { maxDelay: 5 } })
  })
})
