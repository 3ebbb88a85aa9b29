import { describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS, Policy } from '../../node/policy.js'

function clock (start = 1_000_000): { now: () => number, advance(ms: number): void } {
  let t = start
  return { now: () => t, advance (ms) { t += ms } }
}

describe('Policy', () => {
  it('answers a blocked peer BLOCKED before anything else', () => {
    const policy = new Policy({}, clock().now)
    policy.block('mallory')
    expect(policy.admit('mallory')).toEqual({ status: 'block' })
    expect(policy.check('mallory', 10)).toEqual({ status: 'block' })
    policy.block('mallory', false)
    expect(policy.admit('mallory')).toBeUndefined()
  })

  it('keeps a stranger\'s messages as requests up to its quota, then tells it to wait until the user decides', () => {
    const c = clock()
    const policy = new Policy({ requestMessages: 3, strangerBurst: 100 }, c.now)
    for (let i = 0; i < 3; i++) expect(policy.check('stranger', 100)).toEqual({ status: 'accept', request: true })
    const verdict = policy.check('stranger', 100)
    expect(verdict).toMatchObject({ status: 'rate-limit', reason: 'request-quota', retryAfterMs: DEFAULT_LIMITS.requestRetryAfterMs })
    // told to wait: the next message is refused at admission, without looking at it
    expect(policy.admit('stranger')).toMatchObject({ status: 'rate-limit' })
    // another stranger has its own quota
    expect(policy.check('other', 100)).toEqual({ status: 'accept', request: true })
  })

  it('counts a stranger\'s bytes, and every stranger together', () => {
    const policy = new Policy({ requestBytes: 1000, allRequestMessages: 4, strangerBurst: 100, allStrangersBurst: 100 }, clock().now)
    expect(policy.check('a', 900).status).toBe('accept')
    expect(policy.check('a', 200)).toMatchObject({ status: 'rate-limit', reason: 'request-quota' })
    expect(policy.check('b', 1).status).toBe('accept')
    expect(policy.check('c', 1).status).toBe('accept')
    expect(policy.check('d', 1).status).toBe('accept')
    // 1,000 fresh identities cost as much as the total allows, no more
    expect(policy.check('e', 1)).toMatchObject({ status: 'rate-limit', reason: 'all-requests-quota' })
    expect(policy.requestUsage()).toEqual({ messages: 4, bytes: 903, peers: 4 })
  })

  it('releases what a request reserved when it was not stored (a duplicate), and forgets a peer\'s requests once decided', () => {
    const policy = new Policy({ requestMessages: 1, strangerBurst: 100 }, clock().now)
    expect(policy.check('a', 10).status).toBe('accept')
    policy.settle('a', 10, true, false)
    expect(policy.requestUsage()).toEqual({ messages: 0, bytes: 0, peers: 0 })
    expect(policy.check('a', 10).status).toBe('accept')
    policy.settle('a', 10, true, true)
    expect(policy.requestUsage()).toEqual({ messages: 1, bytes: 10, peers: 1 })
    policy.clearRequests('a')
    expect(policy.requestUsage()).toEqual({ messages: 0, bytes: 0, peers: 0 })
  })

  it('lifts the quota for a trusted peer, which is limited by bytes a second instead', () => {
    const c = clock()
    const policy = new Policy({ requestMessages: 1, trustedBytesRate: 1000, trustedBytesBurst: 2000 }, c.now)
    policy.trust('friend')
    for (let i = 0; i < 20; i++) expect(policy.check('friend', 100)).toEqual({ status: 'accept', request: false })
    const limited = policy.check('friend', 100)
    expect(limited).toMatchObject({ status: 'rate-limit', reason: 'rate' })
    expect((limited as { retryAfterMs: number }).retryAfterMs).toBe(100)
    c.advance(100)
    expect(policy.check('friend', 100).status).toBe('accept')
  })

  it('limits a stranger\'s rate and all strangers\' rate together', () => {
    const c = clock()
    const policy = new Policy({ strangerRate: 1, strangerBurst: 2, allStrangersRate: 1, allStrangersBurst: 3 }, c.now)
    expect(policy.check('a', 1).status).toBe('accept')
    expect(policy.check('a', 1).status).toBe('accept')
    expect(policy.check('a', 1)).toMatchObject({ status: 'rate-limit', reason: 'rate', retryAfterMs: 1000 })
    expect(policy.check('b', 1).status).toBe('accept')
    // the strangers' common bucket is empty now
    expect(policy.check('c', 1)).toMatchObject({ status: 'rate-limit', reason: 'rate' })
    c.advance(1000)
    expect(policy.check('d', 1).status).toBe('accept')
  })

  it('reports a peer that keeps sending while told to wait', () => {
    const c = clock()
    const policy = new Policy({ abuseThreshold: 5, strangerBurst: 1 }, c.now)
    const abusive: string[] = []
    policy.onAbuse = (peer) => abusive.push(peer)
    policy.check('a', 1)
    policy.check('a', 1)
    for (let i = 0; i < 4; i++) policy.admit('a')
    expect(abusive).toEqual([])
    expect(policy.isDenied('a')).toBe(false)
    policy.admit('a')
    expect(abusive).toEqual(['a'])
    expect(policy.isDenied('a')).toBe(true)
    // the wait is over: it may send again, and connect once its penalty is over too
    c.advance(10_000)
    expect(policy.admit('a')).toBeUndefined()
    c.advance(DEFAULT_LIMITS.abusePenaltyMs)
    expect(policy.isDenied('a')).toBe(false)
  })

  it('tells everyone to wait while the store is full', () => {
    const policy = new Policy({}, clock().now)
    policy.trust('friend')
    policy.setStoreFull(true)
    expect(policy.admit('friend')).toMatchObject({ status: 'rate-limit', reason: 'storage-full' })
    expect(policy.admit('stranger')).toMatchObject({ status: 'rate-limit', reason: 'storage-full' })
  })

  it('keeps its per-peer state bounded however many identities write', () => {
    const policy = new Policy({ strangerBurst: 1, allStrangersBurst: 1e9, allStrangersRate: 1e9, requestMessages: 1e9, allRequestMessages: 1e9, allRequestBytes: 1e12 }, clock().now)
    for (let i = 0; i < 25_000; i++) policy.check(`peer-${i}`, 1)
    expect((policy as any).books.size).toBeLessThanOrEqual(10_000)
  })
})
