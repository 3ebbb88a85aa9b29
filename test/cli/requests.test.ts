import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { describe, expect, it, onTestFinished } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { CLI, NODE, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'
import type { DaemonProcess } from './daemon.js'

/** What a terminal would act on instead of printing (line feed and tab aside). */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

interface Watch {
  /** Everything printed so far. */
  output: () => string
  /** Resolves with the first line (from now on or already printed) that `match` accepts. */
  line: (match: (line: string) => boolean) => Promise<string>
  stop: () => void
}

/** `parley watch [--json]` on a daemon, ready (its stream is live) when this resolves. */
async function watch (daemon: DaemonProcess, json: boolean): Promise<Watch> {
  const child = spawn(NODE, [CLI, '--data-dir', daemon.dataDir, 'watch', ...(json ? ['--json'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: string[] = []
  let output = ''
  const waiters = new Set<{ match: (line: string) => boolean, resolve: (line: string) => void }>()
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString('utf8') })
  createInterface({ input: child.stdout }).on('line', line => {
    lines.push(line)
    for (const waiter of waiters) {
      if (waiter.match(line)) {
        waiters.delete(waiter)
        waiter.resolve(line)
      }
    }
  })
  const line = async (match: (line: string) => boolean): Promise<string> => {
    const seen = lines.find(match)
    if (seen != null) return seen
    return new Promise(resolve => { waiters.add({ match, resolve }) })
  }
  const stop = (): void => { child.kill() }
  onTestFinished(stop)
  await line(l => json ? JSON.parse(l).event === 'ready' : l.startsWith('watching '))
  return { output: () => output, line, stop }
}

describe('message requests, blocks and contacts from the CLI', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('lists a stranger\'s message as a request; accept, decline, block, unblock; contacts add --replace', async () => {
    const bob = await startDaemonProcess(await tempDir())
    const alice = await startDaemonProcess(await tempDir())
    const carol = await startDaemonProcess(await tempDir())
    const invite = (await bob.cli(['invite'])).stdout.trim()
    // they know bob; bob knows neither
    for (const stranger of [alice, carol]) expect((await stranger.cli(['contacts', 'add', 'bob', invite])).code).toBe(0)

    const events = await watch(bob, true)
    const screen = await watch(bob, false)

    // alice's first message: a spoof of carol's line, with escapes, as issue 11 showed it
    const spoof = `hi\x1b]0;pwned\x07\x1b[2K\r[12:00:00] ${carol.peerId} (direct): new number, text me\u202e`
    const sent = await alice.cli(['send', 'bob', spoof, '--json'])
    expect(sent.code).toBe(0)
    const event = JSON.parse(await events.line(l => JSON.parse(l).event === 'message'))
    expect(event).toMatchObject({ from: alice.peerId, body: spoof, request: true })

    // the human watch marks it and prints no control character
    const shown = await screen.line(l => l.includes(`${alice.peerId} (request)`))
    expect(shown).toContain(`${alice.peerId} (request) (`)
    expect(shown).toContain('\\x1b]0;pwned\\x07\\x1b[2K\\x0d[12:00:00]')
    expect(screen.output()).not.toMatch(CONTROL)

    // listed as a request, in a terminal-safe table and as JSON
    const list = JSON.parse((await bob.cli(['requests', '--json'])).stdout)
    expect(list).toEqual([expect.objectContaining({ peerId: alice.peerId, messages: 1, bytes: Buffer.byteLength(spoof), preview: spoof })])
    const table = await bob.cli(['requests'])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/PEER\s+MSGS\s+SIZE\s+LAST\s+PREVIEW/)
    expect(table.stdout).toContain(alice.peerId)
    expect(table.stdout).not.toMatch(CONTROL)
    const status = await bob.cli(['status'])
    expect(status.stdout).toMatch(/message requests: 1 \(see `parley requests`\)/)
    expect(status.stdout).toMatch(/storage: .* of .*\(\d+%\)/)
    expect(status.stdout).not.toMatch(/STORAGE FULL/)
    expect(JSON.parse((await bob.cli(['status', '--json'])).stdout)).toMatchObject({ requests: 1, blocked: 0, storage: { usedBytes: expect.any(Number), limitBytes: expect.any(Number), full: false } })

    // history: marked, terminal-safe, and the spoofed line is not a line of its own
    const history = await bob.cli(['history', alice.peerId])
    expect(history.stdout).toMatch(/\(request\): hi\\x1b/)
    expect(history.stdout).not.toMatch(CONTROL)
    expect(history.stdout.split('\n').filter(l => l.startsWith('['))).toHaveLength(1)
    expect(JSON.parse((await bob.cli(['history', alice.peerId, '--json'])).stdout)).toEqual([expect.objectContaining({ body: spoof, request: true })])

    // accept, naming her: a contact, and no request left
    const accepted = await bob.cli(['requests', 'accept', alice.peerId, '--name', 'alice'])
    expect(accepted.code).toBe(0)
    expect(accepted.stdout).toMatch(/accepted 1 message from .*; added contact alice/)
    expect(JSON.parse((await bob.cli(['contacts', 'ls', '--json'])).stdout)).toEqual([expect.objectContaining({ name: 'alice', peerId: alice.peerId })])
    expect(JSON.parse((await bob.cli(['requests', '--json'])).stdout)).toEqual([])
    expect((await bob.cli(['requests'])).stdout).toMatch(/no message requests/)

    // carol writes, bob declines: deleted
    expect((await carol.cli(['send', 'bob', 'buy my stuff'])).code).toBe(0)
    await events.line(l => JSON.parse(l).from === carol.peerId)
    const declined = await bob.cli(['requests', 'decline', carol.peerId])
    expect(declined.code).toBe(0)
    expect(declined.stdout).toMatch(/declined .*: deleted 1 message/)
    expect(JSON.parse((await bob.cli(['requests', '--json'])).stdout)).toEqual([])
    expect(JSON.parse((await bob.cli(['history', carol.peerId, '--json'])).stdout)).toEqual([])

    // block carol: her next message is refused
    const blocked = await bob.cli(['block', carol.peerId])
    expect(blocked.code).toBe(0)
    expect(blocked.stdout).toContain(`blocked ${carol.peerId}`)
    expect(JSON.parse((await bob.cli(['blocked', '--json'])).stdout)).toEqual([expect.objectContaining({ peerId: carol.peerId, since: expect.any(Number) })])
    expect((await bob.cli(['blocked'])).stdout).toContain(carol.peerId)
    const refused = await carol.cli(['send', 'bob', 'let me in', '--wait', '60'])
    expect(refused.code).toBe(1)
    expect(refused.stdout).toMatch(/not delivered: .*BLOCKED/i)

    // unblock; a second unblock says she is not blocked
    expect((await bob.cli(['unblock', carol.peerId])).code).toBe(0)
    expect(JSON.parse((await bob.cli(['blocked', '--json'])).stdout)).toEqual([])
    expect((await bob.cli(['blocked'])).stdout).toMatch(/nobody is blocked/)
    const again = await bob.cli(['unblock', carol.peerId])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/not blocked/)

    // block and unblock by contact name
    expect((await bob.cli(['block', 'alice'])).code).toBe(0)
    expect(JSON.parse((await bob.cli(['blocked', '--json'])).stdout)).toEqual([expect.objectContaining({ peerId: alice.peerId, name: 'alice' })])
    expect((await bob.cli(['unblock', 'alice'])).code).toBe(0)

    // contacts add: a name taken by another peer needs --replace
    const taken = await bob.cli(['contacts', 'add', 'alice', carol.peerId])
    expect(taken.code).toBe(1)
    expect(taken.stderr).toContain(`"alice" is already the contact for ${alice.peerId}; nothing changed`)
    expect(taken.stderr).toMatch(/--replace/)
    expect(JSON.parse((await bob.cli(['contacts', 'ls', '--json'])).stdout)).toEqual([expect.objectContaining({ name: 'alice', peerId: alice.peerId })])
    const replaced = await bob.cli(['contacts', 'add', 'alice', carol.peerId, '--replace'])
    expect(replaced.code).toBe(0)
    expect(JSON.parse((await bob.cli(['contacts', 'ls', '--json'])).stdout)).toEqual([expect.objectContaining({ name: 'alice', peerId: carol.peerId })])
    // the same peer again is no conflict
    expect((await bob.cli(['contacts', 'add', 'alice', carol.peerId])).code).toBe(0)

    events.stop()
    screen.stop()
    expect(screen.output()).not.toMatch(CONTROL)
  })
})
