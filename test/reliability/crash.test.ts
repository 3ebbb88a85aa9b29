import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadIdentity } from '../../common/identity.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { LOOPBACK_TCP, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { ReceivedMessage } from '../../index.js'
import type { ChildProcess } from 'node:child_process'

const SENDER = join(import.meta.dirname, '..', 'fixtures', 'sender-process.mjs')

interface Sender {
  child: ChildProcess
  lines: Array<Record<string, unknown>>
  /** Resolves with the first line for which `match` is true. */
  line(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>
}

describe('a sender killed with messages queued and in flight', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()
  const children: ChildProcess[] = []
  afterEach(() => { for (const c of children.splice(0)) c.kill('SIGKILL') })

  function startSender (args: string[]): Sender {
    const child = spawn(process.execPath, [SENDER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    const lines: Array<Record<string, unknown>> = []
    const waiters: Array<{ match: (l: Record<string, unknown>) => boolean, resolve: (l: Record<string, unknown>) => void }> = []
    createInterface({ input: child.stdout }).on('line', (text) => {
      const parsed = JSON.parse(text)
      lines.push(parsed)
      for (const w of [...waiters]) {
        if (w.match(parsed)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(parsed)
        }
      }
    })
    return {
      child,
      lines,
      async line (match) {
        const seen = lines.find(match)
        if (seen != null) return seen
        return new Promise(resolve => waiters.push({ match, resolve }))
      }
    }
  }

  it('delivers every one of 100 messages after a restart on the same data dir, once each and in order', async () => {
    const bob = await net.node({ listen: [LOOPBACK_TCP] })
    const got: ReceivedMessage[] = []
    bob.addEventListener('message', evt => { got.push(evt.detail) })
    const dataDir = await tempDir()
    // bob knows the sender: a stranger's 100 messages would wait as a message request past its quota
    const sender = peerIdFromPrivateKey(await loadIdentity(dataDir))
    await bob.addContact('sender', sender.toString())
    const args = [dataDir, bob.peerId.toString(), JSON.stringify(bob.multiaddrs.map(a => a.toString()))]

    const first = startSender([...args, '100'])
    await first.line(l => l.queued === 100)
    // let some get through, then kill it mid-flight: no chance to clean up
    await until(() => got.length >= 5, { on: [bob, 'message'], what: 'bob to receive 5 messages before the crash' })
    first.child.kill('SIGKILL')
    await new Promise(resolve => first.child.once('exit', resolve))
    const beforeCrash = got.length
    expect(beforeCrash).toBeLessThan(100)

    const second = startSender([...args, '0'])
    await second.line(l => l.outbox === 0)
    await until(() => got.length >= 100, { on: [bob, 'message'], what: () => `bob to receive all 100 messages (he has ${got.length})` })

    expect(got.map(m => m.body)).toEqual(Array.from({ length: 100 }, (_, i) => `msg ${i + 1}`))
    expect(got.map(m => m.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    expect(new Set(got.map(m => m.id)).size).toBe(100)
    expect(new Set(got.map(m => m.from)).size).toBe(1)
  })

  it('send(): a sender killed while its sends travel loses none it answered, shows none twice, and goes on with new seqs after a restart (one seq given again at most: a row its kill took before the commit)', async () => {
    const bob = await net.node({ listen: [LOOPBACK_TCP] })
    const got: ReceivedMessage[] = []
    bob.addEventListener('message', evt => { got.push(evt.detail) })
    const dataDir = await tempDir()
    const sender = peerIdFromPrivateKey(await loadIdentity(dataDir))
    await bob.addContact('sender', sender.toString())
    const args = [dataDir, bob.peerId.toString(), JSON.stringify(bob.multiaddrs.map(a => a.toString()))]

    // send() puts each message on the wire while its outbox row is synced: kill
    // the process with sends on the way, at a moment nobody chose
    const first = startSender([...args, '1000', 'send', '1'])
    await first.line(l => l.sent === 20)
    first.child.kill('SIGKILL')
    await new Promise(resolve => first.child.once('exit', resolve))
    const answered = first.lines.filter(l => l.sent != null).map(l => l.id as string)
    expect(answered.length).toBeGreaterThanOrEqual(20)
    expect(answered.length).toBeLessThan(1000)

    // the restart resumes what was queued but not acknowledged, then sends 20 more
    const second = startSender([...args, '20', 'send', '2001'])
    await second.line(l => l.done === true)
    await second.line(l => l.outbox === 0)
    const after = second.lines.filter(l => l.sent != null).map(l => l.id as string)
    await until(() => after.every(id => got.some(m => m.id === id)), { on: [bob, 'message'], what: 'bob to receive the 20 messages sent after the restart' })

    // every message the first run answered, and every one after the restart: there
    for (const id of [...answered, ...after]) expect(got.some(m => m.id === id), id).toBe(true)
    // none shown twice, by id or by text
    expect(new Set(got.map(m => m.id)).size).toBe(got.length)
    expect(new Set(got.map(m => m.body)).size).toBe(got.length)
    // each presented in order, none held or dropped as a repeat. A lone
    // message goes on the wire before its row is committed: a kill in between
    // loses that row, and its seq is given again after the restart. Only that
    // one's seq, and its first copy is one the killed run never answered.
    const seqs = got.map(m => m.seq)
    const again = got.filter((m, i) => seqs.indexOf(m.seq) !== i)
    expect(again.length).toBeLessThanOrEqual(1)
    for (const repeat of again) expect(answered).not.toContain(got[seqs.indexOf(repeat.seq)].id)
    const distinct = [...new Set(seqs)]
    expect(distinct).toEqual(Array.from({ length: distinct.length }, (_, i) => i + 1))
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y))
    // the first run's messages come first, in order, then the second run's
    const numbers = got.map(m => Number(m.body.slice(4)))
    expect(numbers).toEqual([...numbers].sort((x, y) => x - y))
    expect(numbers.slice(-20)).toEqual(Array.from({ length: 20 }, (_, i) => 2001 + i))
  }, 120_000)
})
