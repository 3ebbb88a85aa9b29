/**
 * A message to a wrong or dead peer ID, as a user meets it: `parley outbox`
 * shows it waiting, `parley cancel` takes it back, and a message expiry
 * configured in config.json fails one on its own.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { useProcesses } from '../fixtures/processes.js'
import { startDaemonProcess } from './daemon.js'

/** A valid peer ID nobody runs. */
async function nobody (): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
}

describe('the outbox, as processes', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('lists a message to an unreachable peer under its contact name; cancel takes it out, and history shows it failed', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const ghost = await nobody()
    expect((await alice.cli(['contacts', 'add', 'ghost', ghost])).code).toBe(0)

    const sent = await alice.cli(['send', 'ghost', 'are you there?', '--wait', '0', '--json'])
    expect(sent.code).toBe(2)
    const { id } = JSON.parse(sent.stdout)

    const listed = await alice.cli(['outbox'])
    expect(listed.code).toBe(0)
    const lines = listed.stdout.split('\n')
    expect(lines[0]).toMatch(/^ID +TO +STATUS +TRIES +NEXT +AGE +LAST ERROR$/)
    expect(lines[1]).toMatch(new RegExp(`^${id} +ghost +(queued|sending) +\\d+ +\\S`))
    expect(listed.stdout).toContain('parley cancel <id>')
    const [item] = JSON.parse((await alice.cli(['outbox', '--json'])).stdout)
    expect(item).toMatchObject({ id, to: ghost, name: 'ghost', body: 'are you there?', attempts: expect.any(Number), nextAttemptAt: expect.any(Number), sentAt: expect.any(Number) })

    const cancelled = await alice.cli(['cancel', id])
    expect(cancelled).toMatchObject({ code: 0, stdout: `cancelled ${id} to ${ghost}\n` })
    expect((await alice.cli(['outbox'])).stdout).toMatch(/^\(the outbox is empty/)
    expect(JSON.parse((await alice.cli(['outbox', '--json'])).stdout)).toEqual([])
    expect(JSON.parse((await alice.cli(['history', 'ghost', '--json'])).stdout)).toEqual([
      expect.objectContaining({ id, status: 'failed', reason: 'cancelled by the sender' })
    ])
    expect((await alice.cli(['history', 'ghost'])).stdout).toMatch(/me: are you there\? ✗ cancelled by the sender/)

    const again = await alice.cli(['cancel', id])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/is failed \(cancelled by the sender\): only a message still waiting in the outbox can be cancelled/)
    const unknown = await alice.cli(['cancel', '0190f5c8-7d3a-7a8b-8c9d-000000000009'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/no message sent with id/)
  })

  it('fails a message not delivered within the messageExpiry of config.json, and says so to a waiting send', async () => {
    const dataDir = await tempDir()
    await writeFile(join(dataDir, 'config.json'), JSON.stringify({ messageExpiry: 2_000 }))
    const alice = await startDaemonProcess(dataDir)
    const sent = await alice.cli(['send', await nobody(), 'hello?', '--wait', '60'])
    expect(sent.code).toBe(1)
    expect(sent.stdout).toMatch(/^not delivered: message \S+ expired: not delivered within 2 seconds$/m)
    expect(JSON.parse((await alice.cli(['outbox', '--json'])).stdout)).toEqual([])
  })
})
