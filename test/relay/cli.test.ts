import { stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { createNode } from '../../index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { reserved } from '../fixtures/network.js'
import { freePorts, httpGet, metricValue, runCli, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import { bareNode, reserve } from './hop.js'
import type { ParleyNode } from '../../index.js'
import type { AddressInfo, Server } from 'node:net'

/** Test loopback: every client comes from 127.0.0.1, so lift the per-IP connection rate. */
const LOOPBACK = ['--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/0/ws', '--metrics', '127.0.0.1:0', '--inbound-connections-per-second', '1000']

describe('parley relay (the process)', () => {
  const tempDir = useTempDirs()
  useProcesses()
  let cleanup: Array<() => Promise<unknown>> = []
  afterEach(async () => {
    const steps = cleanup
    cleanup = []
    await Promise.allSettled(steps.map(async step => step()))
  })

  it('prints its peer ID and addresses, serves /metrics and /healthz, and on SIGTERM ends reservations and exits 0', async () => {
    const relay = await startRelayProcess(['--data-dir', await tempDir(), ...LOOPBACK])
    expect(relay.peerId).toMatch(/^12D3KooW\w+$/)
    const tcp = relay.multiaddrs.find(a => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//.test(a))
    const ws = relay.multiaddrs.find(a => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\//.test(a))
    expect(tcp).toBe(`${tcp?.split('/p2p/')[0] ?? ''}/p2p/${relay.peerId}`)
    expect(ws).toBeDefined()
    expect(relay.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)

    // a bare client over TCP and a parley node over WebSockets hold reservations
    const client = await bareNode()
    const node: ParleyNode = await createNode({ listen: [], relays: [ws as string] })
    cleanup.push(async () => Promise.all([client.stop(), node.stop()]))
    expect((await reserve(client, tcp as string)).status).toBe('OK')
    await reserved(node)

    // its roles, as identify tells them: relay, DHT server (the bootstrap node), AutoNAT, identify, ping
    const relayPeer = peerIdFromString(relay.peerId)
    const protocols = async (): Promise<string[]> => (await client.peerStore.get(relayPeer)).protocols
    await until(async () => (await protocols()).includes('/libp2p/circuit/relay/0.2.0/hop'), { on: [client, 'peer:identify'], what: 'the relay to be identified as one' })
    expect(await protocols()).toEqual(expect.arrayContaining([
      '/libp2p/circuit/relay/0.2.0/hop', '/parley/kad/1.0.0', '/libp2p/autonat/1.0.0', '/ipfs/id/1.0.0', '/ipfs/ping/1.0.0'
    ]))

    const health = await httpGet(`${relay.metricsUrl ?? ''}/healthz`)
    expect(health.status).toBe(200)
    expect(JSON.parse(health.body)).toMatchObject({ ok: true, status: 'ok', peerId: relay.peerId, reservations: 2 })

    const metrics = await httpGet(`${relay.metricsUrl ?? ''}/metrics`)
    expect(metrics.status).toBe(200)
    expect(metrics.contentType).toMatch(/^text\/plain/)
    expect(metricValue(metrics.body, 'parley_relay_reservations')).toBe(2)
    expect(metricValue(metrics.body, 'parley_relay_reservations_granted_total', { kind: 'new' })).toBe(2)
    expect(metricValue(metrics.body, 'parley_relay_connections', { direction: 'inbound' })).toBe(2)
    // libp2p's own metrics and the process's are there too
    expect(metrics.body).toMatch(/^libp2p_connection_manager_connections\{/m)
    expect(metricValue(metrics.body, 'libp2p_circuit_relay_server_reservations_total')).toBe(2)
    expect(metricValue(metrics.body, 'process_resident_memory_bytes')).toBeGreaterThan(0)

    const clientLeft = new Promise(resolve => { client.addEventListener('peer:disconnect', resolve, { once: true }) })
    const nodeLeft = new Promise(resolve => { node.libp2p.addEventListener('peer:disconnect', resolve, { once: true }) })
    const exit = await relay.stop('SIGTERM')
    expect(exit).toEqual({ code: 0, signal: null })
    expect(relay.stderr()).toContain('SIGTERM received, stopping')
    // the relay closed its connections itself: both clients know at once
    await Promise.all([clientLeft, nodeLeft])
  })

  it('keeps its peer ID and addresses across a restart on the same data dir', async () => {
    const dataDir = await tempDir()
    const [tcpPort, wsPort, metricsPort] = await freePorts(3)
    const args = ['--data-dir', dataDir, '--listen', `/ip4/127.0.0.1/tcp/${tcpPort}`, '--listen', `/ip4/127.0.0.1/tcp/${wsPort}/ws`, '--metrics', `127.0.0.1:${metricsPort}`]

    const first = await startRelayProcess(args)
    expect(await first.stop()).toEqual({ code: 0, signal: null })
    const second = await startRelayProcess(args)

    expect(second.peerId).toBe(first.peerId)
    expect(second.multiaddrs).toEqual(first.multiaddrs)
    expect(second.multiaddrs).toEqual([
      `/ip4/127.0.0.1/tcp/${tcpPort}/p2p/${first.peerId}`,
      `/ip4/127.0.0.1/tcp/${wsPort}/ws/p2p/${first.peerId}`
    ])
    expect(second.metricsUrl).toBe(`http://127.0.0.1:${metricsPort}`)
    // the key that makes the peer ID is the operator's alone
    expect((await stat(join(dataDir, 'identity.key'))).mode & 0o777).toBe(0o600)
    expect(await second.stop()).toEqual({ code: 0, signal: null })
  })

  it('announces the addresses it is told to instead of its listening ones', async () => {
    const relay = await startRelayProcess([...LOOPBACK, '--announce', '/dns4/relay.example.com/tcp/443/wss', '--announce', '/ip4/203.0.113.7/tcp/4001'])
    expect(relay.multiaddrs).toEqual([
      `/dns4/relay.example.com/tcp/443/wss/p2p/${relay.peerId}`,
      `/ip4/203.0.113.7/tcp/4001/p2p/${relay.peerId}`
    ])
  })

  it('takes settings from its config file, then PARLEY_* environment, then flags', async () => {
    const dataDir = await tempDir()
    await writeFile(join(dataDir, 'config.json'), JSON.stringify({
      listen: ['/ip4/127.0.0.1/tcp/0'],
      metrics: '127.0.0.1:0',
      limits: { maxReservations: 10, maxCircuits: 10, circuitBytes: 1_048_576, inboundConnectionsPerSecond: 1000 }
    }))
    const relay = await startRelayProcess(['--max-reservations', '30'], {
      env: { PARLEY_HOME: dataDir, PARLEY_MAX_RESERVATIONS: '20', PARLEY_MAX_CIRCUITS: '20' }
    })
    expect(relay.stdout()).toMatch(/^limits: .*maxReservations=30 .*maxCircuits=20 .*circuitBytes=1048576 /m)
    expect(relay.multiaddrs).toHaveLength(1)
    const { body } = await httpGet(`${relay.metricsUrl ?? ''}/metrics`)
    expect(metricValue(body, 'parley_relay_limit', { limit: 'maxReservations' })).toBe(30)
    expect(metricValue(body, 'parley_relay_limit', { limit: 'maxCircuits' })).toBe(20)
    expect(metricValue(body, 'parley_relay_limit', { limit: 'circuitBytes' })).toBe(1_048_576)
  })

  it('fails when the metrics endpoint it was given cannot listen, and does without the default one if that port is taken', async () => {
    const hold = async (port: number): Promise<Server | undefined> => new Promise(resolve => {
      const server = createServer()
      server.once('error', () => { resolve(undefined) })
      server.listen(port, '127.0.0.1', () => { resolve(server) })
    })
    const busy = await hold(0)
    cleanup.push(async () => new Promise(resolve => busy?.close(resolve)))
    const busyPort = (busy?.address() as AddressInfo).port

    const given = await runCli(['relay', '--listen', '/ip4/127.0.0.1/tcp/0', '--metrics', `127.0.0.1:${busyPort}`])
    expect(given.code).toBe(1)
    expect(given.stderr).toContain(`parley: metrics: cannot listen on 127.0.0.1:${busyPort} (EADDRINUSE)`)

    // the default port: hold it, unless something else already does
    const defaultPort = await hold(4003)
    cleanup.push(async () => new Promise(resolve => { if (defaultPort == null) resolve(undefined); else defaultPort.close(resolve) }))
    if (defaultPort == null) return
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(relay.metricsUrl).toBeUndefined()
    expect(relay.stdout()).toContain('metrics: off')
    expect(relay.stderr()).toContain('parley relay: warning: metrics: cannot listen on 127.0.0.1:4003 (EADDRINUSE)')
    expect(await relay.stop()).toEqual({ code: 0, signal: null })
  })

  it('fails at start on bad config, naming the key and the reason', async () => {
    const dir = await tempDir()
    const file = join(dir, 'relay.json')
    await writeFile(file, JSON.stringify({ limits: { maxReservation: 100 } }))

    const cases: Array<{ args: string[], env?: Record<string, string>, message: string }> = [
      { args: ['--config', file], message: 'limits.maxReservation: unknown key; did you mean maxReservations? known keys here: maxReservations, ' },
      { args: ['--max-reservations', '-1'], message: 'limits.maxReservations: must be a positive integer, got -1 (from --max-reservations)' },
      { args: ['--listen', '/ip4/300.1.2.3/tcp/4001'], message: 'listen[0]: "/ip4/300.1.2.3/tcp/4001" is not a valid multiaddr (Invalid IPv4 address "300.1.2.3") (from --listen)' },
      { args: [], env: { PARLEY_CIRCUIT_BYTES: '-5' }, message: 'limits.circuitBytes: must be a positive integer, got -5 (from environment variable PARLEY_CIRCUIT_BYTES)' }
    ]
    const results = await Promise.all(cases.map(async c => runCli(['relay', ...c.args], { env: c.env })))
    results.forEach((result, i) => {
      expect(result.code, result.stderr).toBe(1)
      expect(result.stderr).toContain(`parley: ${cases[i].message}`)
      expect(result.stdout).not.toContain('relay running')
    })
  })
})
