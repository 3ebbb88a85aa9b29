import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { ROOT, runCli, startRelayProcess, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'

/** Issue 13's smaller points: help, version, the whitespace rule, JSON errors, `peers` and `history --before`. */
describe('the parley CLI on day one', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('lists --data-dir in the node\'s help, as `npm start -- --help` shows it, with examples', async () => {
    const { stdout } = await promisify(execFile)('npm', ['start', '--silent', '--', '--help'], { cwd: ROOT, timeout: 60_000 })
    expect(stdout).toMatch(/^Usage: parley node/)
    expect(stdout).toMatch(/--data-dir <dir> +the node's data dir \(env PARLEY_HOME/)
    expect(stdout).toMatch(/Examples:\n {2}parley node --relay /)
  })

  it('prints examples in the main commands\' help', async () => {
    for (const command of [['send'], ['history'], ['chat'], ['watch'], ['contacts', 'add'], []]) {
      const { code, stdout } = await runCli([...command, '--help'])
      expect(code, command.join(' ')).toBe(0)
      expect(stdout, command.join(' ')).toMatch(new RegExp(`\\nExamples:\\n {2}parley ${command.length === 0 ? '' : command.join(' ')}`))
    }
  })

  it('prints its version and the Node.js it runs on, with --version and -V', async () => {
    const version = JSON.parse(await (await import('node:fs/promises')).readFile(`${ROOT}/package.json`, 'utf8')).version as string
    for (const flag of ['--version', '-V']) {
      expect(await runCli([flag])).toMatchObject({ code: 0, stdout: `parley ${version} (Node.js ${process.version})\n` })
    }
  })

  it('refuses a message of only whitespace, as chat ignores one, and says so in JSON with --json', async () => {
    const daemon = await startDaemonProcess(await tempDir())
    const other = await startDaemonProcess(await tempDir())
    for (const blank of ['', '   ', ' \n\t ']) {
      const refused = await daemon.cli(['send', other.peerId, blank])
      expect(refused).toMatchObject({ code: 1, stdout: '' })
      expect(refused.stderr).toBe('parley: the message is empty (only whitespace): nothing sent\n')
    }
    const json = await daemon.cli(['send', other.peerId, '  ', '--json'])
    expect(json).toMatchObject({ code: 1, stderr: '' })
    expect(JSON.parse(json.stdout)).toEqual({ error: { name: 'EmptyMessageError', message: 'the message is empty (only whitespace): nothing sent' } })
    // nothing was queued, nothing reached the other side
    expect(JSON.parse((await daemon.cli(['history', other.peerId, '--json'])).stdout)).toEqual([])
    expect(JSON.parse((await daemon.cli(['status', '--json'])).stdout).outbox).toBe(0)
  })

  it('prints errors as one JSON object on stdout for every command with --json, with the same exit code', async () => {
    const daemon = await startDaemonProcess(await tempDir())
    const unknown = await daemon.cli(['send', 'nobody', 'hi', '--json'])
    expect(unknown).toMatchObject({ code: 1, stderr: '' })
    expect(JSON.parse(unknown.stdout)).toEqual({ error: { name: 'InvalidPeerIdError', message: expect.stringMatching(/nobody/) } })
    for (const args of [['history', 'nobody', '--json'], ['block', 'nobody', '--json'], ['requests', 'accept', 'nobody', '--json']]) {
      const failed = await daemon.cli(args)
      expect(failed, args.join(' ')).toMatchObject({ code: 1, stderr: '' })
      expect(JSON.parse(failed.stdout), args.join(' ')).toEqual({ error: { name: expect.any(String), message: expect.any(String) } })
    }
    // no daemon at all: the same shape
    const noDaemon = await runCli(['--data-dir', await tempDir(), 'peers', '--json'])
    expect(noDaemon).toMatchObject({ code: 1, stderr: '' })
    expect(JSON.parse(noDaemon.stdout)).toEqual({ error: { name: expect.any(String), message: expect.any(String) } })
    // a usage error, found before any command runs, too
    const usage = await daemon.cli(['history', 'nobody', '--before', 'soon', '--json'])
    expect(usage.code).toBe(1)
    expect(JSON.parse(usage.stdout)).toEqual({ error: { name: 'UsageError', message: expect.stringMatching(/^option '--before <time>' argument 'soon' is invalid/) } })
    // and without --json, for people, as before
    const human = await daemon.cli(['send', 'nobody', 'hi'])
    expect(human).toMatchObject({ code: 1, stdout: '' })
    expect(human.stderr).toMatch(/^parley: .*nobody/)
  })

  it('pages history back with --before, and shows the relay apart from people in peers', async () => {
    const relay = await startRelayProcess(['--listen', '/ip4/127.0.0.1/tcp/0', '--no-metrics', '--data-dir', await tempDir()])
    const alice = await startDaemonProcess(await tempDir(), ['--relay', relay.multiaddrs[0]])
    const bob = await startDaemonProcess(await tempDir(), ['--relay', relay.multiaddrs[0]])
    expect((await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])).code).toBe(0)
    for (const text of ['first', 'second']) expect((await alice.cli(['send', 'bob', text, '--wait', '60'])).code).toBe(0)

    const all = JSON.parse((await alice.cli(['history', 'bob', '--json'])).stdout)
    expect(all.map((m: any) => m.body)).toEqual(['first', 'second'])
    const before = async (time: string): Promise<string[]> => {
      const answer = await alice.cli(['history', 'bob', '--json', '--before', time])
      expect(answer.code, answer.stderr).toBe(0)
      return JSON.parse(answer.stdout).map((m: any) => m.body)
    }
    expect(await before(String(all[1].sentAt))).toEqual(['first'])
    expect(await before(new Date(all[1].sentAt).toISOString())).toEqual(['first'])
    expect(await before('1970-01-02')).toEqual([])
    expect(await before('2999-01-01T00:00:00Z')).toEqual(['first', 'second'])
    const bad = await alice.cli(['history', 'bob', '--before', 'last week'])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/--before <time>.* must be an ISO date/)

    const peers = JSON.parse((await alice.cli(['peers', '--json'])).stdout)
    expect(peers).toEqual(expect.arrayContaining([
      expect.objectContaining({ peerId: relay.peerId, relay: true }),
      expect.objectContaining({ peerId: bob.peerId, relay: false })
    ]))
    // a direct WebRTC connection is shown where its data goes, never as the relay's circuit
    for (const peer of peers.filter((p: any) => p.transport.startsWith('webrtc'))) {
      expect(peer.remoteAddr).not.toContain('/p2p-circuit')
    }
    const table = (await alice.cli(['peers'])).stdout
    expect(table).toMatch(new RegExp(`^${relay.peerId} {2}relay {2}`, 'm'))
    expect(table).toMatch(new RegExp(`^${bob.peerId} {2}(direct|relayed) {2}`, 'm'))
  })
})
