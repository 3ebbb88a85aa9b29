import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { writeTestFile } from '../fixtures/files.js'
import { CLI, NODE, useProcesses } from '../fixtures/processes.js'
import { screenShows, tmux } from '../fixtures/tmux.js'
import { until } from '../fixtures/wait.js'
import { startDaemonProcess } from './daemon.js'

describe('parley chat in a terminal', () => {
  const tempDir = useTempDirs()
  useProcesses()
  const session = `parley-chat-${process.pid}`
  afterEach(async () => { await tmux('kill-session', '-t', session).catch(() => {}) })

  it('sends a typed line and shows an incoming one', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const bob = await startDaemonProcess(await tempDir())
    await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])
    await bob.cli(['contacts', 'add', 'alice', (await alice.cli(['invite'])).stdout.trim()])

    await tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40',
      `${NODE} ${CLI} --data-dir ${alice.dataDir} chat bob`)
    await screenShows(session, /\[bob · [^\]]+\] >/)

    await tmux('send-keys', '-t', session, 'hello from the terminal', 'Enter')
    await screenShows(session, /✓ delivered \((direct|relayed)\): hello from the terminal/)
    const atBob = JSON.parse((await bob.cli(['history', 'alice', '--json'])).stdout)
    expect(atBob.map((m: any) => m.body)).toEqual(['hello from the terminal'])

    const reply = await bob.cli(['send', 'alice', 'hi back, terminal'])
    expect(reply.code).toBe(0)
    const screen = await screenShows(session, /bob: hi back, terminal \((direct|relayed)\)/)
    expect(screen).toMatch(/path to bob is now direct|bob · direct/)

    // escapes from the peer are shown, not obeyed: the line is not erased, nor a fake one printed at column 0
    expect((await bob.cli(['send', 'alice', 'evil\x1b[2K\rme: fake\nsecond line'])).code).toBe(0)
    const defused = await screenShows(session, /bob: evil\\x1b\[2K\\x0dme: fake\n {4}second line \((direct|relayed)\)/)
    expect(defused).not.toMatch(/^me: fake/m)

    // the chat read bob's messages as it showed them; leaving it, one more stays unread
    let unread: number | undefined
    await until(async () => (unread = JSON.parse((await alice.cli(['ls', '--json'])).stdout)[0]?.unread) === 0, {
      every: 200,
      timeout: 30_000,
      what: () => `the chat to mark bob's messages read; ${String(unread)} unread`
    })
    await tmux('send-keys', '-t', session, '/quit', 'Enter')
    // the session ends with the chat
    await until(async () => tmux('has-session', '-t', session).then(() => false, () => true), { every: 200, timeout: 30_000, what: () => 'the chat to quit' })
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

    await tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '40',
      `${NODE} ${CLI} --data-dir ${bob.dataDir} chat alice`)
    await screenShows(session, /\[alice · [^\]]+\] >/)
    const { id } = JSON.parse((await alice.cli(['send-file', 'bob', source, '--type', 'image/jpeg', '--no-wait', '--json'])).stdout)
    // over the auto-accept size: the chat says so, and how to take it; not the offer's JSON
    const offered = await screenShows(session, new RegExp(`alice offers holiday\\.jpg \\(30 MiB\\) — accept it with \`parley accept ${id}\``))
    expect(offered).not.toMatch(/"sha256"/)
    expect((await bob.cli(['accept', id])).code).toBe(0)
    const done = await screenShows(session, /received holiday\.jpg \(30 MiB\) from alice: \S+/)
    expect(done).toMatch(/receiving [0-9a-f]{8}…: \d+% /)
  })
})
