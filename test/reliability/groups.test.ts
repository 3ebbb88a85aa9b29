// A ten-member group under trouble, with real nodes, a real relay (mailbox
// host and DHT) and one member in a process of its own: three members offline
// while 50 messages are sent by four senders, a member removed midway, a
// sender SIGKILLed mid-fan-out and restarted from its data dir. Every member
// sees each message once, each sender's in order; the removed member sees
// nothing written after its removal; the offline ones catch up when back.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { useTempDirs } from '../fixtures/dirs.js'
import { reserved, useNetwork } from '../fixtures/network.js'
import { NODE } from '../fixtures/processes.js'
import { until } from '../fixtures/wait.js'
import type { GroupMessage, NodeConfig, ParleyNode } from '../../index.js'
import type { ChildProcess } from 'node:child_process'

const MEMBER = join(import.meta.dirname, '..', 'fixtures', 'group-member-process.mjs')

type Line = Record<string, any>

interface Member {
  child: ChildProcess
  exited: Promise<unknown>
  /** The first line, printed so far or later, for which `match` is true. */
  line(match: (line: Line) => boolean): Promise<Line>
  /** The next such line printed from now on. */
  next(match: (line: Line) => boolean): Promise<Line>
  command(command: Line): void
}

async function mailboxOpen (node: ParleyNode): Promise<void> {
  await until(() => node.status().mailboxes.length > 0 && node.status().mailboxes.every(m => m.connected), {
    on: [node, 'mailbox:change'],
    what: () => `the mailboxes of ${node.peerId.toString()} to open`
  })
}

describe('a ten-member group with members offline, removed and crashed', () => {
  const tempDir = useTempDirs()
  const net = useNetwork()
  const children: ChildProcess[] = []
  afterEach(() => { for (const c of children.splice(0)) c.kill('SIGKILL') })

  function startMember (dataDir: string, relay: string): Member {
    const child = spawn(NODE, [MEMBER, dataDir, relay], { stdio: ['pipe', 'pipe', 'inherit'] })
    children.push(child)
    const lines: Line[] = []
    const waiters: Array<{ match: (l: Line) => boolean, resolve: (l: Line) => void }> = []
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
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
      exited: new Promise(resolve => child.once('exit', resolve)),
      async line (match) {
        const seen = lines.find(match)
        if (seen != null) return seen
        return new Promise(resolve => waiters.push({ match, resolve }))
      },
      async next (match) {
        return new Promise(resolve => waiters.push({ match, resolve }))
      },
      command (command) {
        child.stdin?.write(JSON.stringify(command) + '\n')
      }
    }
  }

  it('50 messages from 4 senders reach every member once and in order; removal, crash and offline members included', async () => {
    // every member deposits from 127.0.0.1: the per-IP deposit rate is lifted, as the fixture lifts the relay's other per-IP limits
    const relay = await net.relay({ dataDir: await tempDir(), mailbox: { depositsPerSecondPerIp: 10_000, depositBurstPerIp: 10_000 } })
    const relayAddr = relay.multiaddrs[0].toString()
    const config = (dataDir: string): NodeConfig => ({ dataDir, relays: [relayAddr], mailboxAfter: 500, retry: { initialDelay: 200, maxDelay: 2_000 } })

    const names = ['alice', 'sam', 'sue', 'rob', 'otto', 'olga', 'oscar', 'mia', 'max'] as const
    type Name = typeof names[number]
    const dirs = {} as Record<Name, string>
    const nodes = {} as Record<Name, ParleyNode>
    for (const n of names) dirs[n] = await tempDir()
    await Promise.all(names.map(async n => { nodes[n] = await net.node(config(dirs[n])) }))
    const seen = new Map<string, GroupMessage[]>()
    const watch = (node: ParleyNode): void => {
      const got = seen.get(node.peerId.toString()) ?? []
      seen.set(node.peerId.toString(), got)
      node.addEventListener('group:message', evt => { got.push(evt.detail) })
    }
    for (const n of names) watch(nodes[n])
    const seenBy = (node: ParleyNode): GroupMessage[] => seen.get(node.peerId.toString()) ?? []

    // steve: a member in a process of its own, killed mid-fan-out later
    let steve = startMember(await tempDir(), relayAddr)
    const childDir = steve.child.spawnargs[2]
    let steveInfo = await steve.line(l => l.peerId != null)
    const steveId = steveInfo.peerId as string

    const running = (): ParleyNode[] => names.map(n => nodes[n]).filter(n => n.libp2p.status === 'started')
    /** Every running node may dial every other directly, steve included. */
    const introduce = async (): Promise<void> => {
      for (const a of running()) {
        for (const b of running()) if (a !== b) await a.libp2p.peerStore.merge(b.peerId, { multiaddrs: b.multiaddrs })
        await a.libp2p.peerStore.merge(peerIdFromString(steveId), { multiaddrs: (steveInfo.addrs as string[]).map(s => multiaddr(s)) })
      }
      const ack = steve.next(l => l.peers != null)
      steve.command({ peers: running().map(n => [n.peerId.toString(), n.multiaddrs.map(a => a.toString())]) })
      await ack
    }

    // the offline members' mailboxes must be registered (their records published) before they go
    await Promise.all(names.map(async n => { await reserved(nodes[n]) }))
    await Promise.all(['otto', 'olga', 'oscar'].map(async n => { await mailboxOpen(nodes[n as Name]) }))
    await introduce()
    const { alice, sam, sue, rob, otto, olga, oscar, mia, max } = nodes
    const offline = [otto, olga, oscar]
    const others = [sam, sue, rob, otto, olga, oscar, mia, max]

    const steveKnows = steve.line(l => l.group != null && l.members === 10)
    const group = await alice.createGroup('family', [...others.map(n => n.peerId), steveId])
    expect(group.members).toHaveLength(10)
    await Promise.all(others.map(async n => {
      await until(() => n.groups().some(g => g.id === group.id), { on: [n, 'group:change'], what: `${n.peerId.toString()} to know the group` })
    }))
    await steveKnows
    // the senders can find the offline members' mailboxes (their records are in the relay's DHT)
    for (const sender of [alice, sam, sue]) {
      for (const o of offline) await until(async () => (await sender.mailboxOf(o.peerId)) != null, { what: 'a mailbox record in the DHT', every: 200 })
    }
    await Promise.all(offline.map(async o => { await o.stop() }))

    // phase 1: 25 messages, steve's 10 among them; steve is killed mid-fan-out
    const phase1: string[] = []
    const queue = async (node: ParleyNode, prefix: string, count: number, into: string[]): Promise<void> => {
      for (let i = 1; i <= count; i++) {
        await node.queueGroup(group.id, `${prefix} ${i}`)
        into.push(`${prefix} ${i}`)
      }
    }
    steve.command({ send: group.id, count: 10, prefix: 'steve' })
    for (let i = 1; i <= 10; i++) phase1.push(`steve ${i}`)
    await Promise.all([queue(alice, 'alice', 5, phase1), queue(sam, 'sam', 5, phase1), queue(sue, 'sue', 5, phase1)])
    await steve.line(l => l.queued === 10)
    const fromSteve = (node: ParleyNode): GroupMessage[] => seenBy(node).filter(m => m.from === steveId)
    await until(() => fromSteve(mia).length >= 2, { on: [mia, 'group:message'], what: 'mia to get some of steve\'s' })
    // mid-fan-out whatever the online members have got by now: the copies for
    // the three offline members are still in its outbox (a mailbox deposit
    // keeps them there until the member acknowledges them)
    steve.child.kill('SIGKILL')
    await steve.exited

    steve = startMember(childDir, relayAddr)
    steveInfo = await steve.line(l => l.peerId === steveId)
    await introduce()
    const online = [alice, sam, sue, rob, mia, max]
    const countOf = (node: ParleyNode, bodies: string[]): number => seenBy(node).filter(m => bodies.includes(m.body)).length
    const ownOf = (node: ParleyNode, bodies: string[]): number => bodies.filter(b => b.startsWith(`${nameOf(node)} `)).length
    const nameOf = (node: ParleyNode): string => names.find(n => nodes[n] === node) as string
    await Promise.all(online.map(async n => {
      await until(() => countOf(n, phase1) === phase1.length - ownOf(n, phase1), {
        on: [n, 'group:message'],
        what: () => `${nameOf(n)} to get phase 1 (${countOf(n, phase1)} of ${phase1.length - ownOf(n, phase1)})`
      })
    }))

    // rob is removed; everyone online learns of it
    const steveLearns = steve.next(l => l.group === group.id && l.members === 9)
    await alice.removeMember(group.id, rob.peerId)
    await Promise.all([sam, sue, rob, mia, max].map(async n => {
      await until(() => n.group(group.id).members.length === 9, { on: [n, 'group:change'], what: `${nameOf(n)} to learn of the removal` })
    }))
    await steveLearns
    expect(rob.group(group.id).member).toBe(false)

    // phase 2: 25 more, from alice, sam and sue
    const phase2: string[] = []
    await Promise.all([queue(alice, 'alice again', 13, phase2), queue(sam, 'sam again', 6, phase2), queue(sue, 'sue again', 6, phase2)])
    const stillIn = [alice, sam, sue, mia, max]
    await Promise.all(stillIn.map(async n => {
      await until(() => countOf(n, phase2) === phase2.length - ownOf(n, phase2), { on: [n, 'group:message'], what: () => `${nameOf(n)} to get phase 2` })
    }))

    // the offline members come back, from their data dirs, and catch up
    for (const name of ['otto', 'olga', 'oscar'] as const) {
      nodes[name] = await net.node(config(dirs[name]))
      watch(nodes[name])
    }
    await introduce()
    const back = [nodes.otto, nodes.olga, nodes.oscar]
    const all = [...phase1, ...phase2]
    await Promise.all(back.map(async n => {
      await until(() => n.groupHistory(group.id, { limit: 1000 }).length === 50, {
        on: [n, 'group:message'],
        what: () => `${nameOf(n)} to catch up (${n.groupHistory(group.id, { limit: 1000 }).length} of 50)`
      })
    }))

    // every member still in: all 50, once each, each sender's in order
    for (const n of [...stillIn, ...back]) {
      const history = n.groupHistory(group.id, { limit: 1000 })
      expect(history.map(m => m.body).sort()).toEqual([...all].sort())
      expect(new Set(history.map(m => `${m.from} ${m.seq}`)).size).toBe(50)
      const shown = seenBy(n)
      expect(new Set(shown.map(m => `${m.from} ${m.seq}`)).size).toBe(shown.length)
      for (const sender of new Set(shown.map(m => m.from))) {
        const seqs = shown.filter(m => m.from === sender).map(m => m.seq)
        expect(seqs, `${nameOf(n)}: the messages of ${nameOf(running().find(r => r.peerId.toString() === sender) as ParleyNode) ?? sender} in order (${JSON.stringify(shown.filter(m => m.from === sender).map(m => [m.seq, m.path, m.receivedAt]))})`).toEqual([...seqs].sort((a, b) => a - b))
      }
      // display order: Lamport time
      const lamports = history.map(m => m.lamport)
      expect(lamports).toEqual([...lamports].sort((a, b) => a - b))
    }
    // the offline ones got theirs through their mailboxes
    expect(back.some(n => seenBy(n).some(m => m.path === 'mailbox'))).toBe(true)
    // rob: nothing written after his removal, and never a one-to-one message
    expect(seenBy(rob).filter(m => phase2.includes(m.body))).toEqual([])
    expect(rob.groupHistory(group.id, { limit: 1000 }).every(m => phase1.includes(m.body))).toBe(true)
    for (const n of [...stillIn, ...back, rob]) expect(n.conversations()).toEqual([])
  })
})
