import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { NODE_DEFAULTS, resolveNodeConfig } from '../../node/config.js'
import { CONNECTION_LIMIT_DEFAULTS } from '../../node/network/connection-guard.js'
import { DEFAULT_LIMITS } from '../../node/policy.js'
import type { NodeConfig } from '../../node/config.js'

const RELAY = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp'

/** The message of the InvalidConfigError that resolving `config` throws. */
function problem (config: unknown): string {
  try {
    resolveNodeConfig(config as NodeConfig)
  } catch (err: any) {
    expect(err.name).toBe('InvalidConfigError')
    return err.message
  }
  throw new Error('expected an InvalidConfigError')
}

describe('the node config', () => {
  it('fills in every default', () => {
    const config = resolveNodeConfig()
    expect(config).toMatchObject({
      listen: NODE_DEFAULTS.listen,
      announce: [],
      relays: [],
      bootstrap: [],
      iceServers: [],
      dhtProtocol: '/parley/kad/1.0.0',
      sendTimeout: 60_000,
      heartbeatInterval: 10_000,
      relayHeartbeatInterval: 60_000,
      retry: { initialDelay: 1_000, maxDelay: 300_000 },
      gapTimeout: 60_000,
      limits: DEFAULT_LIMITS,
      connectionLimits: CONNECTION_LIMIT_DEFAULTS
    })
    expect(config.dataDir).toBeUndefined()
    expect(config.iceBindAddress).toBeUndefined()
  })

  it('takes relays as strings or Multiaddr objects, and bootstraps through them unless told otherwise', () => {
    const config = resolveNodeConfig({ relays: [RELAY, multiaddr(RELAY)] })
    expect(config.relays.map(ma => ma.toString())).toEqual([RELAY, RELAY])
    expect(config.bootstrap.map(ma => ma.toString())).toEqual([RELAY, RELAY])
    expect(resolveNodeConfig({ relays: [RELAY], bootstrap: [] }).bootstrap).toEqual([])
  })

  it('merges partial limits and retry settings over the defaults; undefined leaves a default alone', () => {
    const config = resolveNodeConfig({
      retry: { initialDelay: 10 },
      limits: { strangerRate: 0.5, maxStoreBytes: undefined },
      connectionLimits: { maxInboundPerIp: 2 },
      sendTimeout: undefined
    })
    expect(config.retry).toEqual({ initialDelay: 10, maxDelay: 300_000 })
    expect(config.limits).toEqual({ ...DEFAULT_LIMITS, strangerRate: 0.5 })
    expect(config.connectionLimits).toEqual({ ...CONNECTION_LIMIT_DEFAULTS, maxInboundPerIp: 2 })
    expect(config.sendTimeout).toBe(60_000)
  })

  it.each([
    [{ listen: ['/ip4/300.1.2.3/tcp/1'] }, /^listen\[0\]: "\/ip4\/300\.1\.2\.3\/tcp\/1" is not a valid multiaddr \(.+\) \(from createNode options\)$/],
    [{ announce: [42] }, /^announce\[0\]: must be a multiaddr string/],
    [{ relays: ['/ip4/127.0.0.1/tcp/4001'] }, /^relays\[0\]: "\/ip4\/127\.0\.0\.1\/tcp\/4001" must end in \/p2p\/<peer id>/],
    [{ bootstrap: ['nope'] }, /^bootstrap\[0\]: "nope" is not a valid multiaddr/],
    [{ iceServers: {} }, /^iceServers: /],
    [{ iceServers: [{ url: 'stun:x' }] }, /^ {2}iceServers\[0\]\.url: unknown key; did you mean urls\?/m],
    [{ iceServers: [{ urls: 3 }] }, /^iceServers\[0\]\.urls: must be a STUN\/TURN URL/],
    [{ iceBindAddress: 'eth0' }, /^iceBindAddress: must be an IP address of this machine, got "eth0"/],
    [{ dhtProtocol: 'kad' }, /^dhtProtocol: must be a protocol id starting with \//],
    [{ sendTimeout: 0 }, /^sendTimeout: must be a positive number of milliseconds, got 0/],
    [{ gapTimeout: Number.NaN }, /^gapTimeout: must be a positive number of milliseconds/],
    [{ heartbeatInterval: '10s' }, /^heartbeatInterval: must be a positive number of milliseconds, got "10s"/],
    [{ relayHeartbeatInterval: 0 }, /^relayHeartbeatInterval: must be a positive number of milliseconds/],
    [{ retry: { maxDelay: -1 } }, /^retry\.maxDelay: must be a positive number of milliseconds, got -1/],
    [{ limits: { maxStoreGigabytes: 1 } }, /^limits\.maxStoreGigabytes: unknown key; .*known keys here: requestMessages/],
    [{ limits: { requestMessages: -3 } }, /^limits\.requestMessages: must be a positive number, got -3/],
    [{ connectionLimits: { maxInboundPerIp: 1.5 } }, /^connectionLimits\.maxInboundPerIp: must be a positive integer, got 1.5/],
    [{ relay: [RELAY] }, /^relay: unknown key; did you mean relays\?/]
  ])('refuses %j, naming the key and the reason', (config, message) => {
    expect(problem(config)).toMatch(message)
  })

  it('names every bad key at once', () => {
    const message = problem({ sendTimeout: -1, listen: ['nope'] })
    expect(message).toMatch(/^invalid configuration:\n/)
    expect(message).toContain('listen[0]: "nope" is not a valid multiaddr')
    expect(message).toContain('sendTimeout: must be a positive number of milliseconds, got -1')
  })
})
