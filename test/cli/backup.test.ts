import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { CLI, NODE, runCli, useProcesses } from '../fixtures/processes.js'
import { openTerminal } from '../fixtures/tmux.js'
import { startDaemonProcess } from './daemon.js'
import type { DaemonProcess } from './daemon.js'

/** A call to a daemon's API (its state, read and set without a CLI process each time). */
async function api (daemon: DaemonProcess, method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`${daemon.api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${daemon.api.token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const answer = await response.json()
  if (response.status >= 400) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(answer)}`)
  return answer
}

describe('parley export and import, as processes', () => {
  const tempDir = useTempDirs()
  useProcesses()

  it('moves a node to a new data dir: same peer ID, contacts, block list, history and outbox', async () => {
    const alice = await startDaemonProcess(await tempDir())
    const bob = await startDaemonProcess(await tempDir())
    expect((await alice.cli(['contacts', 'add', 'bob', (await bob.cli(['invite'])).stdout.trim()])).code).toBe(0)
    await api(bob, 'POST', '/v1/contacts', { name: 'alice', peer: (await api(alice, 'GET', '/v1/invite')).invite })
    expect(await api(alice, 'POST', '/v1/messages', { to: 'bob', body: 'hello bob, keep this', wait: 60 })).toMatchObject({ status: 'delivered' })
    expect(await api(bob, 'POST', '/v1/messages', { to: 'alice', body: 'kept: 你好 🎉', wait: 60 })).toMatchObject({ status: 'delivered' })
    const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await api(alice, 'POST', '/v1/blocked', { peer: stranger })
    const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await api(alice, 'POST', '/v1/messages', { to: nobody, body: 'still queued', wait: 0 })

    const history = await api(alice, 'GET', `/v1/history/${bob.peerId}`)
    expect(history.map((m: any) => m.body)).toEqual(['hello bob, keep this', 'kept: 你好 🎉'])
    const contacts = await api(alice, 'GET', '/v1/contacts')
    const blocked = await api(alice, 'GET', '/v1/blocked')
    expect(blocked).toEqual([expect.objectContaining({ peerId: stranger })])
    const outbox = await api(alice, 'GET', '/v1/outbox')
    expect(outbox).toEqual([expect.objectContaining({ to: nobody })])

    // exported while the node runs
    const backup = join(await tempDir(), 'alice.parley-backup')
    const exported = await runCli(['--data-dir', alice.dataDir, 'export', backup], { env: { PARLEY_PASSPHRASE: 'correct horse battery staple' } })
    expect(exported.stderr).toBe('')
    expect(exported.code).toBe(0)
    expect(exported.stdout).toMatch(new RegExp(`^exported ${alice.peerId} \\(identity.key, config.json, mailbox-keys.json, messages.db\\) to `))
    expect((await stat(backup)).mode & 0o777).toBe(0o600)
    const bytes = await readFile(backup)
    expect(bytes.subarray(0, 8).toString()).toBe('PARLEYBK')
    expect(bytes.includes('hello bob')).toBe(false)
    expect(bytes.includes(Buffer.from(alice.peerId))).toBe(false)
    // the file is not overwritten by accident
    const again = await runCli(['--data-dir', alice.dataDir, 'export', backup], { env: { PARLEY_PASSPHRASE: 'x' } })
    expect(again).toMatchObject({ code: 1, stderr: expect.stringContaining('exists; give --force') })
    await alice.stop()

    const moved = join(await tempDir(), 'new-machine')
    const passphraseFile = join(await tempDir(), 'passphrase')
    await writeFile(passphraseFile, 'correct horse battery staple\n')
    const wrong = await runCli(['--data-dir', moved, 'import', backup], { env: { PARLEY_PASSPHRASE: 'correct horse' } })
    expect(wrong).toMatchObject({ code: 1, stderr: expect.stringMatching(/wrong passphrase.*nothing was written/) })
    await expect(stat(moved)).rejects.toThrow(/ENOENT/)

    const imported = await runCli(['--data-dir', moved, 'import', backup, '--passphrase-file', passphraseFile])
    expect(imported.stderr).toBe('')
    expect(imported.code).toBe(0)
    expect(imported.stdout).toContain(`imported ${alice.peerId}`)
    for (const file of ['identity.key', 'messages.db', 'config.json', 'mailbox-keys.json']) {
      expect((await stat(join(moved, file))).mode & 0o777, file).toBe(0o600)
    }
    // mail sealed to the old machine's mailbox keys stays readable on the new one
    expect(await readFile(join(moved, 'mailbox-keys.json'), 'utf8')).toBe(await readFile(join(alice.dataDir, 'mailbox-keys.json'), 'utf8'))
    expect((await stat(moved)).mode & 0o777).toBe(0o700)
    expect(await readFile(join(moved, 'config.json'), 'utf8')).toBe(await readFile(join(alice.dataDir, 'config.json'), 'utf8'))
    const twice = await runCli(['--data-dir', moved, 'import', backup, '--passphrase-file', passphraseFile])
    expect(twice).toMatchObject({ code: 1, stderr: expect.stringMatching(/already holds a parley node .*--force/) })

    const restored = await startDaemonProcess(moved)
    expect(restored.peerId).toBe(alice.peerId)
    expect(JSON.parse((await restored.cli(['id', '--json'])).stdout).peerId).toBe(alice.peerId)
    expect(JSON.parse((await restored.cli(['contacts', 'ls', '--json'])).stdout)).toEqual(contacts)
    expect(JSON.parse((await restored.cli(['history', 'bob', '--json'])).stdout)).toEqual(history)
    expect(await api(restored, 'GET', '/v1/blocked')).toEqual(blocked)
    expect(await api(restored, 'GET', '/v1/outbox')).toEqual([expect.objectContaining({ id: outbox[0].id, to: nobody })])

    // never under a running node, --force or not
    const busy = await runCli(['--data-dir', moved, 'import', backup, '--force', '--passphrase-file', passphraseFile])
    expect(busy).toMatchObject({ code: 1, stderr: expect.stringMatching(/is using .*stop it first.*nothing was written/) })
    // and the restored node is alice to bob
    expect(await api(restored, 'POST', '/v1/messages', { to: 'bob', body: 'back again', wait: 60 })).toMatchObject({ status: 'delivered' })
  })

  it('exports a stopped node, and import --force replaces a node that is there', async () => {
    const alice = await startDaemonProcess(await tempDir())
    await alice.stop()
    const backup = join(await tempDir(), 'backup')
    const env = { PARLEY_PASSPHRASE: 'pw' }
    expect((await runCli(['--data-dir', alice.dataDir, 'export', backup], { env })).code).toBe(0)

    const other = await startDaemonProcess(await tempDir())
    await other.stop()
    expect((await runCli(['--data-dir', other.dataDir, 'import', backup], { env })).code).toBe(1)
    const forced = await runCli(['--data-dir', other.dataDir, 'import', backup, '--force'], { env })
    expect(forced.stderr).toBe('')
    expect(forced.code).toBe(0)
    const restarted = await startDaemonProcess(other.dataDir)
    expect(restarted.peerId).toBe(alice.peerId)
  })

  it('says what to do without a passphrase, or with a file that is not a backup', async () => {
    const dataDir = await tempDir()
    expect((await runCli(['--data-dir', dataDir, 'init'])).code).toBe(0)
    const noPassphrase = await runCli(['--data-dir', dataDir, 'export', join(dataDir, 'out')])
    expect(noPassphrase).toMatchObject({ code: 1, stderr: expect.stringContaining('give --passphrase-file <file> or set PARLEY_PASSPHRASE') })
    const empty = await runCli(['--data-dir', dataDir, 'export', join(dataDir, 'out')], { env: { PARLEY_PASSPHRASE: '' } })
    expect(empty).toMatchObject({ code: 1, stderr: expect.stringContaining('passphrase is empty') })
    await expect(stat(join(dataDir, 'out'))).rejects.toThrow(/ENOENT/)

    const target = join(await tempDir(), 'target')
    const notBackup = await runCli(['--data-dir', target, 'import', join(dataDir, 'config.json')], { env: { PARLEY_PASSPHRASE: 'pw' } })
    expect(notBackup).toMatchObject({ code: 1, stderr: expect.stringContaining('not a parley backup') })
    await expect(stat(target)).rejects.toThrow(/ENOENT/)
  })

  describe('on a terminal', () => {
    it('asks for the passphrase twice without echo, and refuses two that differ', async () => {
      const dataDir = await tempDir()
      expect((await runCli(['--data-dir', dataDir, 'init'])).code).toBe(0)
      const backup = join(dataDir, 'backup')
      const exportOnTerminal = `${NODE} ${CLI} --data-dir ${dataDir} export ${backup}; echo "exit=$?"; sleep 600`

      const first = await openTerminal(exportOnTerminal, { columns: 120, rows: 20 })
      await first.shows(/^passphrase:/m)
      await first.keys('secret words', 'Enter')
      await first.shows(/^passphrase again:/m)
      await first.keys('other words', 'Enter')
      expect(await first.shows(/exit=1/)).toMatch(/the two passphrases differ/)
      await expect(stat(backup)).rejects.toThrow(/ENOENT/)
      await first.close()

      const second = await openTerminal(exportOnTerminal, { columns: 120, rows: 20 })
      await second.shows(/^passphrase:/m)
      await second.keys('secret words', 'Enter')
      await second.shows(/^passphrase again:/m)
      await second.keys('secret words', 'Enter')
      const screen = await second.shows(/exit=0/)
      expect(screen).toMatch(/exported 12D3KooW/)
      expect(screen).not.toContain('secret')

      const imported = await runCli(['--data-dir', join(await tempDir(), 'moved'), 'import', backup], { env: { PARLEY_PASSPHRASE: 'secret words' } })
      expect(imported.code).toBe(0)
    })
  })
})
