import { describe, expect, it } from 'vitest'
import { computeReachability, isPublicAddress } from '../../node/reachability.js'

const RELAY_ID = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const RELAY = `/ip4/8.8.8.8/tcp/4001/p2p/${RELAY_ID}`
const OTHER = '/ip4/8.8.4.4/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'
const LAN = ['/ip4/127.0.0.1/tcp/4001', '/ip4/192.168.1.5/tcp/4001', '/ip6/::1/tcp/4001']

describe('reachability', () => {
  it('is LAN only without a relay or a public address, and says to add a relay', () => {
    const r = computeReachability([], LAN)
    expect(r).toMatchObject({ reachable: false, via: 'lan only' })
    expect(r.reasons).toEqual([expect.stringMatching(/^no relay configured: add one with `parley relays add/), 'no public address announced or confirmed'])
  })

  it('is reachable through a relay with a reservation, naming the relays without one', () => {
    const r = computeReachability([
      { relay: OTHER, reserved: false, failures: 3, lastError: 'connection refused' },
      { relay: RELAY, reserved: true, failures: 0 }
    ], [...LAN, `${RELAY}/p2p-circuit`])
    expect(r).toEqual({ reachable: true, via: 'relay', relay: RELAY, reasons: [`relay ${OTHER}: not reserved (connection refused)`] })
  })

  it('is LAN only when every configured relay is unreserved, saying which and why', () => {
    const r = computeReachability([
      { relay: RELAY, reserved: false, failures: 2, lastError: 'the relay could not be reached or refused a reservation' },
      { relay: OTHER, reserved: false, failures: 0 }
    ], LAN)
    expect(r.reachable).toBe(false)
    expect(r.via).toBe('lan only')
    expect(r.reasons).toEqual([
      `relay ${RELAY}: not reserved (the relay could not be reached or refused a reservation)`,
      `relay ${OTHER}: reserving (no answer yet)`,
      'no public address announced or confirmed'
    ])
  })

  it('is reachable at a public or DNS address, not at a private, loopback or circuit one', () => {
    expect(computeReachability([], [...LAN, '/ip4/8.8.8.8/tcp/4001'])).toEqual({ reachable: true, via: 'public address', address: '/ip4/8.8.8.8/tcp/4001', reasons: [] })
    expect(isPublicAddress('/dns4/me.example.com/tcp/4001')).toBe(true)
    expect(isPublicAddress('/ip4/10.0.0.1/tcp/1')).toBe(false)
    expect(isPublicAddress('/ip6/fe80::1/tcp/1')).toBe(false)
    expect(isPublicAddress(`${RELAY}/p2p-circuit`)).toBe(false)
    expect(isPublicAddress('/dns4/localhost/tcp/1')).toBe(false)
    expect(isPublicAddress('garbage')).toBe(false)
  })
})
