import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { writeTestFile } from '../fixtures/files.js'
import { CLI, NODE, useProcesses } from '../fixtures/processes.js'
import { openTerminal } from '../fixtures/tmux.js'
import { until } from '../fixtures/wait.js'
import { startDaemonProcess } from './daemon.js'

describe('parley chat in a terminal', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('sends a typed line and shows an incoming one', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const bob = await startDaemonProcess(await tempDir())
    await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])
    await bob.cli(['contacts', 'add', 'alice', (await alice.cli(['invite'])).stdout.trim()])

    const terminal = await openTerminal(`${NODE} ${CLI} --data-dir ${alice.dataDir} chat bob`, { columns: 160, rows: 40 })
    await terminal.shows(/\[bob · [^\]]+\] >/)

    await terminal.keys('hello from the terminal', 'Enter')
    await terminal.shows(/✓ delivered \((direct|relayed)\): hello from the terminal/)
    const atBob = JSON.parse((await bob.cli(['history', 'alice', '--json'])).stdout)
    expect(atBob.map((m: any) => m.body)).toEqual(['hello from the terminal'])

    const reply = await bob.cli(['send', 'alice', 'hi back, terminal'])
    expect(reply.code).toBe(0)
    const screen = await terminal.shows(/bob: hi back, terminal \((direct|relayed)\)/)
    expect(screen).toMatch(/path to bob is now direct|bob · direct/)

    // escapes from the peer are shown, not obeyed: the line is not erased, nor a fake one printed at column 0
    expect((await bob.cli(['send', 'alice', 'evil\x1b[2K\rme: fake\nsecond line'])).code).toBe(0)
    const defused = await terminal.shows(/bob: evil\\x1b\[2K\\x0dme: fake\n {4}second line \((direct|relayed)\)/)
    expect(defused).not.toMatch(/^me: fake/m)

    // the chat read bob's messages as it showed them; leaving it, one more stays unread
    let unread: number | undefined
    await until(async () => (unread = JSON.parse((await alice.cli(['ls', '--json'])).stdout)[0]?.unread) === 0, {
      every: 200,
      timeout: 30_000,
      what: () => `the chat to mark bob's messages read; ${String(unread)} unread`
    })
    await terminal.keys('/quit', 'Enter')
    // the session ends with the chat
    await terminal.ended()
    expect((await bob.cli(['send', 'alice', 'while away'])).code).toBe(0)
    expect(JSON.parse((await alice.cli(['ls', '--json'])).stdout)).toEqual([expect.objectContaining({ name: 'bob', unread: 1 })])
  })

  it('shows a file offer with how to accept it, its progress and where it landed', async () => {
    const dir = await tempDir()
    const alice = await startDaemonProcess(await tempDir())
    const bob = await startDaemonProcess(await tempDir())
    await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])
    await bob.cli(['contacts', 'add', 'alice', (await alice.cli(['invite'])).stdout.trim()])
    const source = join(dir, 'holiday.jpg')
    await writeTestFile(source, 30 * 1024 * 1024, 21)

    const terminal = await openTerminal(`${NODE} ${CLI} --data-dir ${bob.dataDir} chat alice`, { columns: 200, rows: 40 })
    await terminal.shows(/\[alice · [^\]]+\] >/)
    const { id } = JSON.parse((await alice.cli(['send-file', 'bob', source, '--type', 'image/jpeg', '--no-wait', '--json'])).stdout)
    // over the auto-accept size: the chat says so, and how to take it; not the offer's JSON
    const offered = await terminal.shows(new RegExp(`alice offers holiday\\.jpg \\(30 MiB\\) — accept it with \`parley accept ${id}\``))
    expect(offered).not.toMatch(/"sha256"/)
    expect((await bob.cli(['accept', id])).code).toBe(0)
    const done = await terminal.shows(/received holiday\.jpg \(30 MiB\) from alice: \S+/)
    expect(done).toMatch(/receiving [0-9a-f]{8}…: \d+% /)
  })
})
