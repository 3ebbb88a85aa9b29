import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { createRelay, loadRelayConfig, resolveRelayConfig, RELAY_DEFAULTS } from '../../index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { ROOT } from '../fixtures/processes.js'

/** The error `fn` throws (sync or async); fails if it does not throw. */
async function thrown (fn: () => unknown): Promise<Error & { issues?: string[] }> {
  try {
    await fn()
  } catch (err: any) {
    return err
  }
  throw new Error('expected an error')
}

describe('relay config', () => {
  const tempDir = useTempDirs()

  it('fills in the defaults, with the relay-v2 circuit limits of 2 min and 128 KiB', () => {
    const config = resolveRelayConfig({})
    expect(config.listen).toEqual(RELAY_DEFAULTS.listen)
    expect(config.limits.circuitDuration).toBe(120_000)
    expect(config.limits.circuitBytes).toBe(131_072)
    expect(config.metrics).toBeUndefined()
    // the programmatic call shape the test fixtures use, Multiaddr objects included
    const fixture = resolveRelayConfig({ listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [multiaddr('/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp')], limits: { inboundConnectionsPerSecond: 10_000, maxPendingConnections: 1024 } })
    expect(fixture.bootstrap[0].toString()).toContain('/p2p/12D3KooW')
    expect(fixture.limits).toMatchObject({ inboundConnectionsPerSecond: 10_000, maxPendingConnections: 1024, maxReservations: 128 })
  })

  it('ships go-libp2p\'s relay resource limits, with per-source limits each settable by file, environment and flag', async () => {
    // go-libp2p relay.DefaultResources(): 128 reservations, 8 per IP, 32 per ASN (here a /24 or /48), a 1 h TTL, 16 circuits per peer
    expect(resolveRelayConfig({}).limits).toMatchObject({
      maxReservations: 128,
      maxReservationsPerIp: 8,
      maxReservationsPerSubnet: 32,
      reservationTtl: 3_600_000,
      maxCircuitsPerPeer: 16,
      maxCircuitsPerIp: 32,
      maxCircuitsPerSubnet: 128,
      maxConnectionsPerIp: 16,
      maxConnectionsPerSubnet: 64,
      inboundConnectionsPerSecond: 20
    })
    const dir = await tempDir()
    const file = join(dir, 'relay.json')
    await writeFile(file, JSON.stringify({ limits: { maxConnectionsPerSubnet: 100, maxCircuitsPerIp: 5 } }))
    const { config, origins } = await loadRelayConfig(
      { config: file, limits: { maxReservationsPerSubnet: '4' } },
      { PARLEY_MAX_CONNECTIONS_PER_IP: '3', PARLEY_MAX_CIRCUITS_PER_SUBNET: '9' }
    )
    expect(config.limits).toMatchObject({ maxReservationsPerSubnet: 4, maxConnectionsPerIp: 3, maxCircuitsPerSubnet: 9, maxConnectionsPerSubnet: 100, maxCircuitsPerIp: 5 })
    expect(origins.get('limits.maxReservationsPerSubnet')).toBe('--max-reservations-per-subnet')
    expect(origins.get('limits.maxConnectionsPerIp')).toBe('environment variable PARLEY_MAX_CONNECTIONS_PER_IP')
    expect((await thrown(async () => loadRelayConfig({}, { PARLEY_MAX_CONNECTIONS_PER_SUBNET: '0' }))).message)
      .toBe('limits.maxConnectionsPerSubnet: must be a positive integer, got 0 (from environment variable PARLEY_MAX_CONNECTIONS_PER_SUBNET)')
  })

  it.each([
    [{ limits: { maxReservations: -1 } }, 'limits.maxReservations: must be a positive integer, got -1'],
    [{ limits: { circuitBytes: 1.5 } }, 'limits.circuitBytes: must be a positive integer, got 1.5'],
    [{ limits: { maxReservation: 5 } }, 'limits.maxReservation: unknown key; did you mean maxReservations?'],
    [{ listn: ['/ip4/0.0.0.0/tcp/1'] }, 'listn: unknown key; did you mean listen?'],
    [{ listen: ['/ip4/999.1.1.1/tcp/4001'] }, 'listen[0]: "/ip4/999.1.1.1/tcp/4001" is not a valid multiaddr (Invalid IPv4 address'],
    [{ listen: ['/ip4/0.0.0.0/udp/4001/quic-v1'] }, 'listen[0]: "/ip4/0.0.0.0/udp/4001/quic-v1" is not an address the relay can listen on'],
    [{ announce: ['/dns4/relay.example.com/tcp'] }, 'announce[0]: "/dns4/relay.example.com/tcp" is not a valid multiaddr'],
    [{ bootstrap: ['/ip4/1.2.3.4/tcp/4001'] }, 'bootstrap[0]: "/ip4/1.2.3.4/tcp/4001" must end in /p2p/<peer id>'],
    [{ metrics: '127.0.0.1' }, 'metrics: "127.0.0.1" must be host:port'],
    [{ limits: { maxCircuits: '10' } }, 'limits.maxCircuits: must be a positive integer']
  ])('rejects %j naming the key and the reason', async (config, message) => {
    const err = await thrown(async () => createRelay(config as any))
    expect(err.name).toBe('InvalidConfigError')
    expect(err.message).toContain(message)
  })

  it('reports every problem at once', async () => {
    const err = await thrown(() => resolveRelayConfig({ limits: { maxReservations: 0, maxCircuits: -5 }, listen: ['nonsense'] }))
    expect(err.issues).toHaveLength(3)
    expect(err.message).toMatch(/^invalid configuration:\n/)
    expect(err.message).toContain('limits.maxReservations: must be a positive integer, got 0')
    expect(err.message).toContain('limits.maxCircuits: must be a positive integer, got -5')
    expect(err.message).toContain('listen[0]: "nonsense" is not a valid multiaddr')
  })

  it('layers defaults < config file < PARLEY_* environment < flags', async () => {
    const dataDir = await tempDir()
    await writeFile(join(dataDir, 'config.json'), JSON.stringify({
      listen: ['/ip4/127.0.0.1/tcp/5001'],
      metrics: '127.0.0.1:9999',
      limits: { maxReservations: 10, maxCircuits: 10, circuitBytes: 1_048_576 }
    }))
    const env = { PARLEY_HOME: dataDir, PARLEY_MAX_RESERVATIONS: '20', PARLEY_MAX_CIRCUITS: '20', PARLEY_METRICS: 'off' }

    const { config: fromFile, origins } = await loadRelayConfig({ dataDir }, {})
    expect(fromFile).toMatchObject({ dataDir, listen: ['/ip4/127.0.0.1/tcp/5001'], metrics: '127.0.0.1:9999', limits: { maxReservations: 10, maxCircuits: 10, circuitBytes: 1_048_576 } })

    expect(origins.get('limits.maxReservations')).toBe(`config file ${join(dataDir, 'config.json')}`)
    expect(origins.get('limits.maxConnections')).toBeUndefined()

    const { config: fromEnv } = await loadRelayConfig({}, env)
    expect(fromEnv).toMatchObject({ dataDir, metrics: false, limits: { maxReservations: 20, maxCircuits: 20, circuitBytes: 1_048_576 } })

    const { config: fromFlags, origins: flagOrigins } = await loadRelayConfig({ limits: { maxReservations: '30' }, listen: ['/ip4/127.0.0.1/tcp/6001'], metrics: '127.0.0.1:7000' }, env)
    expect(flagOrigins.get('limits.maxReservations')).toBe('--max-reservations')
    expect(flagOrigins.get('limits.maxCircuits')).toBe('environment variable PARLEY_MAX_CIRCUITS')
    expect(fromFlags).toMatchObject({ listen: ['/ip4/127.0.0.1/tcp/6001'], metrics: '127.0.0.1:7000', limits: { maxReservations: 30, maxCircuits: 20, circuitBytes: 1_048_576 } })

    // what the command uses with nothing given: metrics on loopback
    const plain = await loadRelayConfig({}, {})
    expect(plain.config).toMatchObject({ metrics: RELAY_DEFAULTS.cliMetrics })
    expect(plain.origins.get('metrics')).toBe('defaults')
    expect(resolveRelayConfig(plain.config).metrics).toEqual({ host: '127.0.0.1', port: 4003 })
  })

  it('names where a bad value came from', async () => {
    const dataDir = await tempDir()
    const file = join(dataDir, 'relay.json')
    await writeFile(file, JSON.stringify({ limits: { maxReservationsPerIp: -3 } }))

    let err = await thrown(async () => loadRelayConfig({ config: file }, {}))
    expect(err.message).toBe(`limits.maxReservationsPerIp: must be a positive integer, got -3 (from config file ${file})`)

    err = await thrown(async () => loadRelayConfig({}, { PARLEY_MAX_CIRCUITS: 'lots' }))
    expect(err.message).toBe('limits.maxCircuits: must be a positive integer, got "lots" (from environment variable PARLEY_MAX_CIRCUITS)')

    err = await thrown(async () => loadRelayConfig({ limits: { circuitDuration: '-1' } }, {}))
    expect(err.message).toBe('limits.circuitDuration: must be a positive integer, got -1 (from --circuit-duration)')

    err = await thrown(async () => loadRelayConfig({ listen: ['/ip4/1.2.3.4/tcp/x'] }, {}))
    expect(err.message).toMatch(/^listen\[0\]: "\/ip4\/1.2.3.4\/tcp\/x" is not a valid multiaddr \(.+\) \(from --listen\)$/)
  })

  it('ships a sample config file that is valid and spells out every default', async () => {
    const { config: sample } = await loadRelayConfig({ config: join(ROOT, 'relay/config.sample.json') }, {})
    const resolved = resolveRelayConfig(sample)
    expect(resolved.limits).toEqual(RELAY_DEFAULTS.limits)
    expect(resolved.listen).toEqual(RELAY_DEFAULTS.listen)
    expect(resolved.dhtProtocol).toBe(RELAY_DEFAULTS.dhtProtocol)
    expect(resolved.shutdownTimeout).toBe(RELAY_DEFAULTS.shutdownTimeout)
    expect(resolved.heartbeatInterval).toBe(RELAY_DEFAULTS.heartbeatInterval)
    expect(resolved.metrics).toEqual({ host: '127.0.0.1', port: 4003 })
  })

  it('rejects a config file that is missing, not JSON, or not an object', async () => {
    const dir = await tempDir()
    expect((await thrown(async () => loadRelayConfig({ config: join(dir, 'nope.json') }, {}))).message).toMatch(/^config file .*nope\.json: cannot read it/)
    await writeFile(join(dir, 'bad.json'), '{ "limits": ')
    expect((await thrown(async () => loadRelayConfig({ config: join(dir, 'bad.json') }, {}))).message).toMatch(/^config file .*bad\.json: not valid JSON/)
    await writeFile(join(dir, 'list.json'), '[]')
    expect((await thrown(async () => loadRelayConfig({ config: join(dir, 'list.json') }, {}))).message).toMatch(/must hold a JSON object/)
    // a data dir without a config file is fine
    expect((await loadRelayConfig({ dataDir: dir }, {})).config).toMatchObject({ dataDir: dir })
  })
})
