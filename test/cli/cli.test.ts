import { spawn } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, expect, it, onTestFinished } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { CLI, NODE, runCli, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'

describe('the parley CLI and daemon, as processes', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('sends between two daemons through a relay: delivered, in both histories, streamed by watch', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const alice = await startDaemonProcess(await tempDir(), ['--relay', relay.multiaddrs[0]])
    const bob = await startDaemonProcess(await tempDir(), ['--relay', relay.multiaddrs[0]])

    // bob watches before alice sends
    const watch = spawn(NODE, [CLI, '--data-dir', bob.dataDir, 'watch', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
    // a failed assertion must not leave it running (it would hold the test run open)
    onTestFinished(() => { watch.kill() })
    const ready = Promise.withResolvers<void>()
    const watched = (async () => {
      for await (const line of createInterface({ input: watch.stdout })) {
        const event = JSON.parse(line)
        if (event.event === 'ready') ready.resolve()
        if (event.event === 'message') return event
      }
    })()
    await ready.promise

    const sent = await alice.cli(['send', bob.peerId, 'hello from the CLI', '--json'])
    expect(sent.code).toBe(0)
    const receipt = JSON.parse(sent.stdout)
    expect(receipt).toMatchObject({ status: 'delivered', path: expect.stringMatching(/direct|relayed/) })

    const event = await watched
    watch.kill()
    expect(event).toMatchObject({ event: 'message', id: receipt.id, from: alice.peerId, body: 'hello from the CLI' })

    const atBob = JSON.parse((await bob.cli(['history', alice.peerId, '--json'])).stdout)
    const atAlice = JSON.parse((await alice.cli(['history', bob.peerId, '--json'])).stdout)
    expect(atBob).toEqual([expect.objectContaining({ id: receipt.id, from: alice.peerId, to: bob.peerId, direction: 'in', status: 'received', seq: 1, body: 'hello from the CLI' })])
    expect(atAlice).toEqual([expect.objectContaining({ id: receipt.id, from: alice.peerId, to: bob.peerId, direction: 'out', status: 'delivered', seq: 1 })])
    for (const entry of [...atBob, ...atAlice]) {
      expect(Object.keys(entry)).toEqual(expect.arrayContaining(['id', 'from', 'to', 'body', 'seq', 'sentAt', 'receivedAt', 'direction', 'status']))
    }

    const id = JSON.parse((await alice.cli(['id', '--json'])).stdout)
    expect(id.peerId).toBe(alice.peerId)
    expect(id.addrs.some((a: string) => a.includes('/p2p-circuit'))).toBe(true)
    const status = JSON.parse((await alice.cli(['status', '--json'])).stdout)
    expect(status.relays).toEqual([expect.objectContaining({ relay: relay.multiaddrs[0], reserved: true })])
    expect(status.outbox).toBe(0)
    const peers = JSON.parse((await alice.cli(['peers', '--json'])).stdout)
    expect(peers).toEqual(expect.arrayContaining([expect.objectContaining({ peerId: bob.peerId, path: expect.stringMatching(/direct|relayed/), transport: expect.any(String), remoteAddr: expect.any(String) })]))
  })

  it('adds a contact from an invite and sends to it by name, with no DHT and no relay', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const bob = await startDaemonProcess(await tempDir())
    const invite = (await bob.cli(['invite'])).stdout.trim()
    expect(invite).toMatch(/^parley:\S+$/)

    const added = await alice.cli(['contacts', 'add', 'bob', invite])
    expect(added.code).toBe(0)
    expect(JSON.parse((await alice.cli(['contacts', 'ls', '--json'])).stdout)).toEqual([expect.objectContaining({ name: 'bob', peerId: bob.peerId })])
    expect(JSON.parse((await alice.cli(['status', '--json'])).stdout).dhtPeers).toBe(0)

    const sent = await alice.cli(['send', 'bob', 'by name', '--json', '--wait', '60'])
    expect(sent.code).toBe(0)
    expect(JSON.parse(sent.stdout)).toMatchObject({ status: 'delivered', path: 'direct' })
    expect(JSON.parse((await bob.cli(['history', alice.peerId, '--json'])).stdout).map((m: any) => m.body)).toEqual(['by name'])

    expect((await alice.cli(['contacts', 'rm', 'bob'])).code).toBe(0)
    const unknown = await alice.cli(['send', 'bob', 'again'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/not a valid peer ID .* nor a contact name/)
  })

  it('exits 2 when the message is still queued after --wait', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const bob = await startDaemonProcess(await tempDir())
    await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])
    await bob.stop()
    const sent = await alice.cli(['send', 'bob', 'are you there?', '--wait', '1', '--json'])
    expect(sent.code).toBe(2)
    expect(JSON.parse(sent.stdout)).toMatchObject({ status: expect.stringMatching(/queued|sending/) })
  })

  it('answers 401 without the token and 400 on malformed input, on loopback only', async () => {
    const dataDir = await tempDir()
    const daemon = await startDaemonProcess(dataDir)
    const { url, token } = daemon.api
    expect(new URL(url).hostname).toBe('127.0.0.1')
    expect((await stat(join(dataDir, 'api.json'))).mode & 0o777).toBe(0o600)

    expect((await fetch(`${url}/v1/id`)).status).toBe(401)
    expect((await fetch(`${url}/v1/id`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401)
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
    expect((await fetch(`${url}/v1/id`, { headers: auth })).status).toBe(200)

    const bad = async (body: string): Promise<{ status: number, body: any }> => {
      const response = await fetch(`${url}/v1/messages`, { method: 'POST', headers: auth, body })
      return { status: response.status, body: await response.json() }
    }
    expect(await bad('{not json')).toMatchObject({ status: 400 })
    expect(await bad(JSON.stringify({ body: 'no recipient' }))).toMatchObject({ status: 400, body: { message: expect.stringContaining('to') } })
    expect(await bad(JSON.stringify({ to: 'not-a-peer', body: 'hi' }))).toMatchObject({ status: 400, body: { error: 'InvalidPeerIdError' } })
    expect(await bad(JSON.stringify({ to: daemon.peerId, body: '' }))).toMatchObject({ status: 400 })
    expect(await bad(JSON.stringify({ to: daemon.peerId, body: 'x', wait: 'soon' }))).toMatchObject({ status: 400, body: { message: expect.stringContaining('body.wait') } })
    expect(await bad(JSON.stringify({ to: daemon.peerId, body: 'x', colour: 'red' }))).toMatchObject({ status: 400, body: { message: expect.stringContaining('colour') } })
    expect(await bad(JSON.stringify({ to: daemon.peerId, body: 'x'.repeat(2 * 1024 * 1024) }))).toMatchObject({ status: 413 })
    const answer = async (path: string, method = 'GET'): Promise<{ status: number, body: any }> => {
      const response = await fetch(`${url}${path}`, { method, headers: { authorization: auth.authorization } })
      return { status: response.status, body: await response.json() }
    }
    expect(await answer('/v1/nothing-here')).toMatchObject({ status: 404, body: { error: 'NotFound' } })
    expect(await answer('/v1/status', 'DELETE')).toMatchObject({ status: 405 })
    expect(await answer(`/v1/history/${daemon.peerId}?limit=0`)).toMatchObject({ status: 400, body: { message: expect.stringContaining('querystring.limit') } })
    expect(await answer(`/v1/history/${daemon.peerId}?limit=5`)).toMatchObject({ status: 200, body: [] })
    expect(await answer('/v1/messages/%E0%A4%A')).toMatchObject({ status: 400 })
    // none of that took the daemon down
    expect(await answer('/v1/status')).toMatchObject({ status: 200, body: { peerId: daemon.peerId } })

    // the API port is bound to 127.0.0.1 and nothing else (read from the kernel's socket table)
    const port = Number(new URL(url).port)
    const listening = (await readFile('/proc/net/tcp', 'utf8')).split('\n').slice(1)
      .map(l => l.trim().split(/\s+/)).filter(f => f.length > 3 && f[3] === '0A')
      .map(f => f[1]).filter(local => parseInt(local.split(':')[1], 16) === port)
    expect(listening).toEqual(['0100007F:' + port.toString(16).toUpperCase().padStart(4, '0')])
    const listening6 = (await readFile('/proc/net/tcp6', 'utf8').catch(() => '')).split('\n').slice(1)
      .map(l => l.trim().split(/\s+/)).filter(f => f.length > 3 && f[3] === '0A' && parseInt(f[1].split(':')[1], 16) === port)
    expect(listening6).toEqual([])
  })

  it('refuses a second daemon on the same data dir, and tells a CLI with no daemon how to start one', async () => {
    const dataDir = await tempDir()
    await startDaemonProcess(dataDir)
    const second = await runCli(['node', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(second.code).toBe(1)
    expect(second.stderr).toMatch(/another parley process/)

    const lonely = await runCli(['--data-dir', await tempDir(), 'status'])
    expect(lonely.code).toBe(1)
    expect(lonely.stderr).toMatch(/no parley daemon is running .* start one with `parley node/)
  })

  it('fails at start on invalid config, naming the key', async () => {
    const bad = await runCli(['node', '--data-dir', await tempDir()], { env: { PARLEY_API_PORT: '99999' } })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/apiPort: .*PARLEY_API_PORT/)
    const badAddr = await runCli(['node', '--data-dir', await tempDir(), '--relay', '/ip4/nope'])
    expect(badAddr.code).toBe(1)
    expect(badAddr.stderr).toMatch(/relays\[0\]: "\/ip4\/nope" is not a valid multiaddr \(.+\) \(from --relay\)/)
    const noPeer = await runCli(['node', '--data-dir', await tempDir(), '--relay', '/ip4/127.0.0.1/tcp/4001'])
    expect(noPeer.code).toBe(1)
    expect(noPeer.stderr).toContain('relays[0]: "/ip4/127.0.0.1/tcp/4001" must end in /p2p/<peer id> (from --relay)')
    const badIce = await runCli(['node', '--data-dir', await tempDir()], { env: { PARLEY_ICE_BIND_ADDRESS: 'localhost' } })
    expect(badIce.code).toBe(1)
    expect(badIce.stderr).toMatch(/iceBindAddress: must be an IP address.*PARLEY_ICE_BIND_ADDRESS/)
  })
})
