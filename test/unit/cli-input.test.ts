import { multiaddr } from '@multiformats/multiaddr'
import { InvalidArgumentError } from 'commander'
import { describe, expect, it } from 'vitest'
import { isBlankMessage, jsonError, peerKind, timeArgument } from '../../cli/input.js'
import { ApiError } from '../../cli/client.js'
import { remoteAddrOf } from '../../node/network/paths.js'
import type { Connection } from '@libp2p/interface'

const RELAY = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const BOB = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'

describe('history --before', () => {
  it('takes an ISO date or time, or ms since the epoch', () => {
    expect(timeArgument('2026-12-01T17:00:00Z')).toBe(Date.UTC(2026, 11, 1, 17))
    expect(timeArgument('2026-12-01T17:00:00.250+01:00')).toBe(Date.UTC(2026, 11, 1, 16, 0, 0, 250))
    expect(timeArgument('2026-12-01')).toBe(Date.UTC(2026, 11, 1))
    expect(timeArgument('1764608400000')).toBe(1764608400000)
    // a bare number is ms, even one that looks like a year
    expect(timeArgument('2026')).toBe(2026)
    expect(timeArgument('0')).toBe(0)
  })

  it('refuses what is neither, saying what it takes', () => {
    for (const bad of ['', 'yesterday', '2026-13-01', '-5', '1.5', '99999999999999999999']) {
      expect(() => timeArgument(bad), bad).toThrow(InvalidArgumentError)
    }
    expect(() => timeArgument('soon')).toThrow(/ISO date .* or milliseconds/)
  })
})

describe('a message of only whitespace', () => {
  it('is blank whatever the whitespace, and any visible character makes a message', () => {
    for (const blank of ['', ' ', '\t', '\n\n', ' \r\n ', '\u00a0', '\u3000']) expect(isBlankMessage(blank), JSON.stringify(blank)).toBe(true)
    for (const text of ['.', ' hi ', '你好', '🙂', '\u200b']) expect(isBlankMessage(text), JSON.stringify(text)).toBe(false)
  })
})

describe('--json errors', () => {
  it('name an API error by the daemon\'s error name', () => {
    const err = new ApiError('"bob" is not a valid peer ID nor a contact name', 400, 'UnknownContactError', undefined)
    expect(jsonError(err)).toEqual({ error: { name: 'UnknownContactError', message: '"bob" is not a valid peer ID nor a contact name' } })
  })

  it('name any other error by its name, and a thrown non-error too', () => {
    expect(jsonError(Object.assign(new Error('empty'), { name: 'EmptyMessageError' }))).toEqual({ error: { name: 'EmptyMessageError', message: 'empty' } })
    expect(jsonError(new TypeError('fetch failed'))).toEqual({ error: { name: 'TypeError', message: 'fetch failed' } })
    expect(jsonError('boom')).toEqual({ error: { name: 'Error', message: 'boom' } })
  })
})

describe('peers', () => {
  it('shows a configured relay as a relay, a person by the path to them', () => {
    expect(peerKind({ relay: true, path: 'direct' })).toBe('relay')
    expect(peerKind({ relay: false, path: 'relayed' })).toBe('relayed')
    expect(peerKind({ path: 'direct' })).toBe('direct')
  })

  function connection (remoteAddr: string, peerConnection?: unknown): Connection {
    return { remoteAddr: multiaddr(remoteAddr), ...(peerConnection == null ? {} : { maConn: { peerConnection } }) } as unknown as Connection
  }
  const signalled = `/ip4/203.0.113.7/tcp/4001/p2p/${RELAY}/p2p-circuit/webrtc/p2p/${BOB}`

  it('shows where a WebRTC connection\'s data goes (the ICE pair), not the relay circuit that signalled it', () => {
    const pair = { local: { address: '192.168.1.2', port: 5000, type: 'host' }, remote: { address: '198.51.100.9', port: 61000, type: 'srflx' } }
    expect(remoteAddrOf(connection(signalled, { connectionState: 'connected', selectedCandidatePair: () => pair }))).toBe('/ip4/198.51.100.9/udp/61000/webrtc')
    const pair6 = { local: pair.local, remote: { address: '2001:db8::1', port: 443, type: 'host' } }
    expect(remoteAddrOf(connection(signalled, { connectionState: 'connected', selectedCandidatePair: () => pair6 }))).toBe('/ip6/2001:db8::1/udp/443/webrtc')
  })

  it('says the WebRTC connection was signalled through a relay when ICE does not tell its pair', () => {
    expect(remoteAddrOf(connection(signalled, { connectionState: 'connected', selectedCandidatePair: () => null }))).toBe('webrtc (via relay signalling)')
    expect(remoteAddrOf(connection(signalled, { connectionState: 'connected', selectedCandidatePair: () => { throw new Error('closed') } }))).toBe('webrtc (via relay signalling)')
    expect(remoteAddrOf(connection(signalled))).toBe('webrtc (via relay signalling)')
  })

  it('shows any other connection\'s remote address as it is', () => {
    expect(remoteAddrOf(connection(`/ip4/127.0.0.1/tcp/4002/p2p/${BOB}`))).toBe(`/ip4/127.0.0.1/tcp/4002/p2p/${BOB}`)
    expect(remoteAddrOf(connection(`/ip4/203.0.113.7/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${BOB}`))).toBe(`/ip4/203.0.113.7/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${BOB}`)
  })
})
