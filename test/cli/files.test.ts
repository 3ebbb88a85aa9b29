import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ApiClient } from '../../cli/client.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { sha256Of, writeTestFile } from '../fixtures/files.js'
import { useProcesses } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import { startDaemonProcess } from './daemon.js'
import type { DaemonProcess } from './daemon.js'
import type { ApiEvent } from '../../daemon/api/contract.js'

const MiB = 1024 * 1024
const CHUNK = 32_768

/** Calls `onEvent` with each of the daemon's events until the returned stop is called. */
function watch (dataDir: string, onEvent: (event: ApiEvent) => void): () => void {
  const controller = new AbortController()
  ;(async () => {
    const client = await ApiClient.forDataDir(dataDir)
    for await (const event of client.events(controller.signal)) onEvent(event)
  })().catch(() => {})
  return () => { controller.abort() }
}

async function befriend (alice: DaemonProcess, bob: DaemonProcess): Promise<void> {
  expect((await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])).code).toBe(0)
  expect((await bob.cli(['contacts', 'add', 'alice', (await alice.cli(['invite'])).stdout.trim()])).code).toBe(0)
}

describe('files between two daemons', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('send-file, files, accept: a stranger-sized file waits, is accepted, and arrives; the sender follows it to the end', async () => {
    const dir = await tempDir()
    const alice = await startDaemonProcess(join(dir, 'alice'))
    const bob = await startDaemonProcess(join(dir, 'bob'))
    await befriend(alice, bob)
    const source = join(dir, 'report.pdf')
    await writeTestFile(source, 30 * MiB, 11)

    const offered = await alice.cli(['send-file', 'bob', source, '--type', 'application/pdf', '--no-wait', '--json'])
    expect(offered.code).toBe(0)
    const { id } = JSON.parse(offered.stdout)
    // over the 25 MiB a contact's file is fetched without asking
    await until(async () => JSON.parse((await bob.cli(['files', '--in', '--json'])).stdout).some((f: any) => f.id === id && f.status === 'pending'), { every: 200, what: 'bob to see the offer' })
    const listed = await bob.cli(['files'])
    expect(listed.stdout).toMatch(/report\.pdf/)
    expect(listed.stdout).toMatch(/pending/)

    // the sender follows the transfer: plain lines, not a terminal
    const following = alice.cli(['send-file', 'bob', source, '--name', 'again.pdf'])
    const accepted = await bob.cli(['accept', id])
    expect(accepted.code).toBe(0)
    expect(accepted.stdout).toMatch(/^accepted report\.pdf \(30 MiB\): queued/)
    await until(async () => JSON.parse((await bob.cli(['files', '--json'])).stdout).find((f: any) => f.id === id)?.status === 'complete', { every: 250, what: 'the file to arrive' })
    const file = JSON.parse((await bob.cli(['files', '--json'])).stdout).find((f: any) => f.id === id)
    expect(await sha256Of(file.path)).toBe(await sha256Of(source))

    // the second offer, the same content: bob has it already; alice's follower sees it through
    let second: any
    await until(async () => (second = JSON.parse((await bob.cli(['files', '--in', '--json'])).stdout).find((f: any) => f.name === 'again.pdf')) != null, { every: 200, what: 'bob to see the second offer' })
    expect(second.status).toBe('pending')
    expect((await bob.cli(['accept', second.id])).code).toBe(0)
    const followed = await following
    expect(followed.code).toBe(0)
    expect(followed.stdout).toMatch(/^offered \S+ to bob: offering$/m)
    expect(followed.stdout).toMatch(/again\.pdf \(30 MiB\) to \S+: complete$/m)
  }, 120_000)

  it('resumes a transfer after the receiving daemon is SIGKILLed, from what it had verified and fsynced', async () => {
    const dir = await tempDir()
    const alice = await startDaemonProcess(join(dir, 'alice'))
    let bob = await startDaemonProcess(join(dir, 'bob'))
    await befriend(alice, bob)
    const source = join(dir, 'movie.bin')
    const size = 100 * MiB
    await writeTestFile(source, size, 12)

    const { id } = JSON.parse((await alice.cli(['send-file', 'bob', source, '--no-wait', '--json'])).stdout)
    await until(async () => JSON.parse((await bob.cli(['files', '--in', '--json'])).stdout).some((f: any) => f.id === id), { every: 200, what: 'bob to see the offer' })
    expect((await bob.cli(['accept', id])).code).toBe(0)
    // killed as soon as its store records a first verified stretch (a reader beside the daemon: WAL)
    const watcher = new DatabaseSync(join(bob.dataDir, 'messages.db'), { readOnly: true })
    const verifiedNow = (): number => (watcher.prepare("SELECT verified FROM files WHERE id = ? AND direction = 'in'").get(id) as { verified: number } | undefined)?.verified ?? 0
    await until(() => verifiedNow() > 0, { every: 20, what: 'bob to record verified chunks' })
    expect(await bob.stop('SIGKILL')).toMatchObject({ signal: 'SIGKILL' })
    watcher.close()

    // what the store says was verified is on disk, byte for byte
    const db = new DatabaseSync(join(bob.dataDir, 'messages.db'), { readOnly: true })
    const row = db.prepare("SELECT verified, sha256, status FROM files WHERE id = ? AND direction = 'in'").get(id) as { verified: number, sha256: string, status: string }
    db.close()
    expect(row.status).toBe('transferring')
    expect(row.verified).toBeGreaterThan(0)
    expect(row.verified * CHUNK).toBeLessThan(size)
    const prefix = async (path: string): Promise<string> => {
      const handle = await open(path, 'r')
      try {
        const buffer = Buffer.alloc(row.verified * CHUNK)
        await handle.read(buffer, 0, buffer.length, 0)
        return createHash('sha256').update(buffer).digest('hex')
      } finally {
        await handle.close()
      }
    }
    expect(await prefix(join(bob.dataDir, 'files', 'partial', `${id}-${row.sha256.slice(0, 16)}`))).toBe(await prefix(source))

    // back up: the transfer goes on from there, never from before it
    const after: number[] = []
    bob = await startDaemonProcess(bob.dataDir)
    const stopAfter = watch(bob.dataDir, e => { if (e.event === 'file-progress' && e.data.id === id) after.push(e.data.bytes) })
    await until(async () => JSON.parse((await bob.cli(['files', '--json'])).stdout).find((f: any) => f.id === id)?.status === 'complete', { every: 250, what: 'the file to arrive after the restart' })
    stopAfter()
    expect(after.every(b => b >= row.verified * CHUNK)).toBe(true)
    const file = JSON.parse((await bob.cli(['files', '--json'])).stdout).find((f: any) => f.id === id)
    expect(await sha256Of(file.path)).toBe(await sha256Of(source))
  }, 120_000)
})
