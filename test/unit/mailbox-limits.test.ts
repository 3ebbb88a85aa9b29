import { describe, expect, it } from 'vitest'
import { Response } from '../../protocols/mailbox/pb/mailbox.js'
import {
  checkEnvelopeSize, checkQuota, checkRegister, checkSession, depositorQuota, DepositRateLimiter, grantedTtl, leaseExpiry, MAILBOX_DEFAULTS
} from '../../relay/mailbox/limits.js'

const DAY = 24 * 3600_000
const limits = MAILBOX_DEFAULTS

describe('mailbox limits', () => {
  it('ships the limits of the spec: 10,000 mailboxes, 1,000 envelopes and 16 MiB each, 25 % per depositor, 64 KiB envelopes, TTL 14 days (30 at most), 30-day lease', () => {
    expect(limits).toMatchObject({
      maxMailboxes: 10_000,
      maxEnvelopesPerMailbox: 1_000,
      maxBytesPerMailbox: 16 * 1024 * 1024,
      depositorSharePercent: 25,
      maxEnvelopeBytes: 65_536,
      defaultTtl: 14 * DAY,
      maxTtl: 30 * DAY,
      mailboxLease: 30 * DAY
    })
  })

  it('refuses an empty envelope as INVALID and one over the limit (never over 64 KiB) as TOO_LARGE', () => {
    expect(checkEnvelopeSize(0, limits)?.status).toBe(Response.Status.INVALID)
    expect(checkEnvelopeSize(1, limits)).toBeUndefined()
    expect(checkEnvelopeSize(65_536, limits)).toBeUndefined()
    expect(checkEnvelopeSize(65_537, limits)?.status).toBe(Response.Status.TOO_LARGE)
    expect(checkEnvelopeSize(1001, { maxEnvelopeBytes: 1000 })?.status).toBe(Response.Status.TOO_LARGE)
    // a host configured above the protocol's limit still holds to it
    expect(checkEnvelopeSize(70_000, { maxEnvelopeBytes: 1_000_000 })?.status).toBe(Response.Status.TOO_LARGE)
  })

  it('gives each depositor a quarter of a mailbox\'s envelopes and bytes, at least one envelope of the largest size', () => {
    expect(depositorQuota(limits)).toEqual({ envelopes: 250, bytes: 4 * 1024 * 1024 })
    expect(depositorQuota({ ...limits, maxEnvelopesPerMailbox: 2, maxBytesPerMailbox: 1000 })).toEqual({ envelopes: 1, bytes: 65_536 })
  })

  it('refuses QUOTA_EXCEEDED when the mailbox is full, or the depositor\'s share of it', () => {
    const empty = { envelopes: 0, bytes: 0 }
    expect(checkQuota(100, empty, empty, limits)).toBeUndefined()
    expect(checkQuota(100, { envelopes: 1000, bytes: 0 }, empty, limits)).toMatchObject({ status: Response.Status.QUOTA_EXCEEDED, reason: 'the mailbox is full' })
    expect(checkQuota(100, { envelopes: 10, bytes: 16 * 1024 * 1024 - 99 }, empty, limits)?.status).toBe(Response.Status.QUOTA_EXCEEDED)
    expect(checkQuota(100, { envelopes: 250, bytes: 0 }, { envelopes: 250, bytes: 0 }, limits)?.reason).toMatch(/share/)
    expect(checkQuota(100, { envelopes: 249, bytes: 0 }, { envelopes: 249, bytes: 0 }, limits)).toBeUndefined()
    expect(checkQuota(100, { envelopes: 1, bytes: 4 * 1024 * 1024 }, { envelopes: 1, bytes: 4 * 1024 * 1024 - 99 }, limits)?.reason).toMatch(/share/)
  })

  it('refuses a new mailbox UNAVAILABLE when the host is full, never a renewal', () => {
    expect(checkRegister(false, 9_999, limits)).toBeUndefined()
    expect(checkRegister(false, 10_000, limits)?.status).toBe(Response.Status.UNAVAILABLE)
    expect(checkRegister(true, 10_000, limits)).toBeUndefined()
  })

  it('bounds open sessions, except one replacing the owner\'s own', () => {
    expect(checkSession(false, 999, limits)).toBeUndefined()
    expect(checkSession(false, 1000, limits)).toMatchObject({ status: Response.Status.UNAVAILABLE })
    expect(checkSession(true, 1000, limits)).toBeUndefined()
  })

  it('grants the default TTL for 0 and shortens a TTL over the maximum', () => {
    expect(grantedTtl(0n, limits)).toBe(14 * DAY)
    expect(grantedTtl(60_000n, limits)).toBe(60_000)
    expect(grantedTtl(365n * BigInt(DAY), limits)).toBe(30 * DAY)
    expect(grantedTtl(2n ** 64n - 1n, limits)).toBe(30 * DAY)
    expect(leaseExpiry(1000, limits)).toBe(1000 + 30 * DAY)
  })

  it('rate-limits deposits per peer and per IP with token buckets, saying when a token is back', () => {
    const rate = new DepositRateLimiter({ depositsPerSecondPerPeer: 2, depositBurstPerPeer: 3, depositsPerSecondPerIp: 1, depositBurstPerIp: 4 })
    const t = 1_000_000
    for (let i = 0; i < 3; i++) expect(rate.take('alice', '198.51.100.7', t)).toBeUndefined()
    expect(rate.take('alice', '198.51.100.7', t)).toMatchObject({ status: Response.Status.RATE_LIMITED, retryAfterMs: 500, reason: 'too many deposits from this peer' })
    // half a second later alice has a token again (the address has 1.5)
    expect(rate.take('alice', '198.51.100.7', t + 500)).toBeUndefined()
    // another peer from the same address: the address's bucket is the one empty now
    expect(rate.take('bob', '198.51.100.7', t + 500)).toMatchObject({ status: Response.Status.RATE_LIMITED, retryAfterMs: 500, reason: 'too many deposits from this address' })
    // from elsewhere, bob is fine
    expect(rate.take('bob', '203.0.113.1', t + 500)).toBeUndefined()
    // a refusal takes no token: half a second on, the address has one again
    expect(rate.take('carol', '198.51.100.7', t + 1000)).toBeUndefined()
    expect(rate.take('carol', '198.51.100.7', t + 1000)?.status).toBe(Response.Status.RATE_LIMITED)
  })

  it('forgets buckets that are full again, so memory follows activity', () => {
    const rate = new DepositRateLimiter({ depositsPerSecondPerPeer: 10, depositBurstPerPeer: 10, depositsPerSecondPerIp: 10, depositBurstPerIp: 10 })
    for (let i = 0; i < 100; i++) rate.take(`peer-${i}`, `10.0.0.${i}`, 1_000_000)
    expect(rate.tracked).toBe(200)
    rate.take('late', undefined, 1_000_000 + 60_000)
    expect(rate.tracked).toBe(1)
  })
})
