import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { startCli, useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'
import type { DaemonProcess } from './daemon.js'

/** What a terminal would act on instead of printing (line feed and tab aside). */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

async function json (daemon: DaemonProcess, args: string[]): Promise<any> {
  const run = await daemon.cli([...args, '--json'])
  expect(run.code, run.stderr).toBe(0)
  return JSON.parse(run.stdout)
}

describe('the inbox from the CLI', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('lists conversations with unread counts (ls too), marks them read with read, history and sends, and shows contact names in history and watch', async () => {
    const bob = await startDaemonProcess(await tempDir())
    const alice = await startDaemonProcess(await tempDir())
    expect((await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])).code).toBe(0)
    expect((await bob.cli(['contacts', 'add', 'alice', alice.peerId])).code).toBe(0)
    expect((await bob.cli(['conversations'])).stdout).toMatch(/no conversations yet/)

    const watch = startCli(['--data-dir', bob.dataDir, 'watch'])
    await watch.waitFor(/^watching /m)

    // one line each in the table, whatever the body holds
    const hostile = 'line one\nline two \x1b[2J\u202e'
    for (const body of ['first', hostile]) expect((await alice.cli(['send', 'bob', body])).code).toBe(0)

    // watch: bob's name for her, not her peer ID
    const seen = await watch.waitFor(/^\[[\d:]+\] alice \(\w+\): first$/m)
    expect(seen[0]).not.toContain(alice.peerId)

    const list = await json(bob, ['conversations'])
    expect(list).toEqual([{ peerId: alice.peerId, name: 'alice', last: expect.objectContaining({ direction: 'in', preview: hostile, status: 'received' }), unread: 2, request: false, path: expect.toBeOneOf(['direct', 'relayed', null]) }])
    const table = await bob.cli(['ls'])
    expect(table.code).toBe(0)
    const rows = table.stdout.trimEnd().split('\n')
    expect(rows[0]).toMatch(/^NAME\s+UNREAD\s+LAST\s+MESSAGE$/)
    expect(rows).toHaveLength(2)
    expect(rows[1]).toMatch(/^alice\s+2\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+line one\\nline two \\x1b\[2J\\u202e$/)
    expect(table.stdout).not.toMatch(CONTROL)

    // history with --keep-unread: names, and the mark stays
    const kept = await bob.cli(['history', 'alice', '--keep-unread'])
    expect(kept.stdout).toMatch(/^\[[\d:]+\] alice: first/m)
    expect(kept.stdout).not.toContain(alice.peerId.slice(-6))
    expect((await json(bob, ['ls']))[0].unread).toBe(2)
    // history reads the conversation (with --json too)
    expect(await json(bob, ['history', 'alice'])).toHaveLength(2)
    expect((await json(bob, ['ls']))[0].unread).toBe(0)

    // read: everything, or up to a message
    const [third, fourth] = [await alice.cli(['send', 'bob', 'third', '--json']), await alice.cli(['send', 'bob', 'fourth', '--json'])].map(r => JSON.parse(r.stdout).id)
    expect(fourth).toEqual(expect.any(String))
    expect(await json(bob, ['read', 'alice', '--up-to', third])).toEqual({ peerId: alice.peerId, unread: 1 })
    const read = await bob.cli(['read', alice.peerId])
    expect(read.code).toBe(0)
    expect(read.stdout).toMatch(new RegExp(`^marked read: ${alice.peerId}$`, 'm'))
    expect((await json(bob, ['ls']))[0].unread).toBe(0)
    const wrong = await bob.cli(['read', 'alice', '--up-to', 'nope'])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/upTo "nope" is not a message id/)

    // alice wrote last and has read nothing from bob; bob answers: his last message, read by him, unread at hers
    expect((await bob.cli(['send', 'alice', 'hi alice'])).code).toBe(0)
    expect(await json(bob, ['conversations'])).toEqual([expect.objectContaining({ unread: 0, last: expect.objectContaining({ direction: 'out', preview: 'hi alice', status: 'delivered' }) })])
    expect((await bob.cli(['ls'])).stdout).toMatch(/^alice\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+me: hi alice$/m)
    expect(await json(alice, ['ls'])).toEqual([expect.objectContaining({ peerId: bob.peerId, name: 'bob', unread: 1 })])

    // the status line of alice's watch names bob too
    const aliceWatch = startCli(['--data-dir', alice.dataDir, 'watch'])
    await aliceWatch.waitFor(/^watching /m)
    expect((await alice.cli(['send', 'bob', 'watched'])).code).toBe(0)
    await aliceWatch.waitFor(/message \S+ to bob: delivered/)
    // sending read bob's answer
    expect((await json(alice, ['ls']))[0].unread).toBe(0)
  })
})
