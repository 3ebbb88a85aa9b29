/**
 * The NAT lab's scenarios: real parley processes on hosts behind real Linux NAT
 * routers in network namespaces (built by lab.sh, run by run.sh as root).
 * Every scenario asserts; the table of what happened goes to results/latest.md.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, it } from 'vitest'
import { Agent, HOSTS, LOG_DIR, MANY_LETTERS, MANY_PER_LAN, Relay, STUN, TURN, WORK_DIR, egressDrops, killAll, lossDrops, moveHost, setLink, sleep, waitUntil, writeResults } from './lab.js'
import type { AgentConfig, AgentEvent, ConnectionInfo, Host, Row } from './lab.js'

/**
 * Checks that fail today for a reason outside the lab, keyed `<scenario>/<check>`,
 * with that reason. Such a check is reported (table, notes) without failing the
 * run, and the scenario shows as skipped; every other check of the scenario
 * still counts. Remove an entry once its reason is gone: a listed check that
 * passes is reported as passing.
 */
const KNOWN_FAILURES: Record<string, string> = {}

const rows: Row[] = []
const relay = new Relay(join(WORK_DIR, 'relay'))
let agents: Agent[] = []

beforeAll(async () => {
  await relay.start()
})

beforeEach(async () => {
  if (!relay.running) await relay.start()
})

afterEach(async () => {
  const stopping = agents
  agents = []
  await Promise.allSettled(stopping.map(async a => { await a.stop() }))
})

afterAll(async () => {
  await relay.stop()
  killAll()
  const md = writeResults(rows)
  console.info(`\n${md}\n`)
})

async function start (host: Host, label: string, config: AgentConfig = {}): Promise<Agent> {
  const agent = await Agent.start(host, label, { relays: [relay.multiaddr], dataDir: join(WORK_DIR, label), ...config })
  agents.push(agent)
  return agent
}

/** One scenario's row and its checks. */
class Scenario {
  constructor (readonly id: string, readonly row: Row) {}

  /** A check that lets the scenario go on when it fails; failures are counted at the end. */
  check (key: string, ok: boolean, what: string): boolean {
    if (ok) return true
    const known = KNOWN_FAILURES[`${this.id}/${key}`]
    if (known != null) {
      if (!this.row.known.some(k => k.startsWith(what))) this.row.known.push(`${what}. Why: ${known}`)
    } else if (!this.row.failures.includes(what)) {
      this.row.failures.push(what)
    }
    return false
  }

  note (text: string): void {
    this.row.notes.push(text)
  }
}

interface Sent { from: Agent, to: Agent, body: string, at: number, result?: AgentEvent }

/** The messages of one scenario, both ways: what was sent and what arrived. */
class Conversation {
  readonly sent: Sent[] = []
  private n = 0

  constructor (readonly s: Scenario, readonly a: Agent, readonly b: Agent) {}

  /** Sends one message and resolves with its `sent`/`send-failed` event. */
  async say (from: Agent, to: Agent, timeout?: number): Promise<AgentEvent> {
    const body = `s${this.s.id}/${from.host.name}->${to.host.name}/${++this.n}`
    const entry: Sent = { from, to, body, at: Date.now() }
    this.sent.push(entry)
    entry.result = await from.send(to, body, timeout)
    return entry.result
  }

  /** Sends, waits until it arrived, and checks that both ends report `path`. */
  async sayOver (from: Agent, to: Agent, path: 'direct' | 'relayed'): Promise<void> {
    const result = await this.say(from, to)
    if (result.event !== 'sent') {
      throw new Error(`${from.host.name} could not send to ${to.host.name}: ${String(result.error)}`)
    }
    const got = await waitUntil(() => to.find(e => e.event === 'message' && e.id === result.id), 10_000, `${to.host.name} to get ${String(result.id)}`)
    this.s.check(`${path}-path`, result.path === path && got.path === path,
      `a message ${from.host.name} → ${to.host.name} should go ${path}: acknowledged ${String(result.path)}, received ${String(got.path)}`)
  }

  received (entry: Sent): AgentEvent[] {
    return entry.to.filter(e => e.event === 'message' && e.body === entry.body && e.from === entry.from.peerId)
  }

  get delivered (): number {
    return this.sent.filter(s => this.received(s).length > 0).length
  }

  get duplicated (): number {
    return this.sent.reduce((sum, s) => sum + Math.max(0, this.received(s).length - 1), 0)
  }

  /** From the first send to its arrival. */
  get firstDeliveryMs (): number | undefined {
    const first = this.sent[0]
    const got = first == null ? undefined : this.received(first)[0]
    return got == null || first == null ? undefined : got.t - first.at
  }

  /** From the first send to the first time the first sender reported a direct path to the other. */
  get toDirectMs (): number | undefined {
    const first = this.sent[0]
    if (first == null) return undefined
    const direct = this.a.find(e => e.event === 'path' && e.peer === this.b.peerId && e.path === 'direct', first.at)
    return direct == null ? undefined : Math.max(0, direct.t - first.at)
  }

  async allDelivered (timeoutMs: number): Promise<void> {
    await waitUntil(() => this.delivered === this.sent.length, timeoutMs, `all ${this.sent.length} messages to arrive`, 250)
  }

  fill (row: Row): void {
    row.sent = this.sent.length
    row.delivered = this.delivered
    row.duplicated = this.duplicated
    row.firstDeliveryMs = this.firstDeliveryMs
    row.toDirectMs = this.toDirectMs
  }

  /** The invariant of every scenario: everything arrived, nothing twice. */
  checkClean (): void {
    const lost = this.sent.filter(s => this.received(s).length === 0)
      .map(s => `${s.body} (${String(s.result?.event ?? 'still sending')}${s.result?.error != null ? `: ${String(s.result.error)}` : ''})`)
    this.s.check('lost', lost.length === 0, `messages lost: ${lost.join(', ')}`)
    this.s.check('duplicated', this.duplicated === 0, `${this.duplicated} messages shown twice`)
  }
}

/** ICE's chosen pair, as "srflx 198.18.0.21:4000 → srflx 198.18.0.22:5000". */
function describeIce (c?: ConnectionInfo): string {
  const s = c?.ice?.selected
  if (s?.local == null || s.remote == null) return 'WebRTC'
  const side = (x: typeof s.local): string => `${x?.type ?? '?'} ${x?.address ?? ''}:${x?.port ?? ''}`
  return `WebRTC, ICE ${side(s.local)} → ${side(s.remote)}`
}

function usesTurn (c?: ConnectionInfo): boolean {
  const s = c?.ice?.selected
  return s?.local?.type === 'relay' || s?.remote?.type === 'relay'
}

/** The connection from `from` to `to` right now, described for the table. */
async function pathOf (from: Agent, to: Agent): Promise<{ text: string, webrtc?: ConnectionInfo, direct?: ConnectionInfo }> {
  const conns = await from.connectionsTo(to)
  const webrtc = conns.find(c => c.transport === 'webrtc')
  const direct = conns.find(c => c.transport !== 'circuit-relay' && !c.limited)
  if (webrtc != null) {
    return { text: usesTurn(webrtc) ? `TURN (${describeIce(webrtc)})` : `direct (${describeIce(webrtc)})`, webrtc, direct }
  }
  if (direct != null) {
    return { text: `direct (${direct.transport} to ${direct.remoteAddr.split('/p2p/')[0]})`, direct }
  }
  return { text: conns.length > 0 ? 'relayed (circuit relay)' : 'no connection' }
}

function logOf (agent: Agent): string[] {
  try {
    return readFileSync(join(LOG_DIR, `${agent.label}.log`), 'utf8').split('\n')
  } catch {
    return []
  }
}

/**
 * What held up the first message, from the sender's log: dials to the peer's
 * LAN addresses (unreachable from another network) and WebRTC dials that
 * failed between the first send (`since`) and its acknowledgement (`until`).
 */
function firstDialNote (from: Agent, to: Agent, since: number, until?: number): string | undefined {
  const failures = logOf(from)
    .filter(l => l.includes('dial failed to') && l.includes(to.peerId))
    .map(l => ({ line: l, t: Date.parse(l.slice(0, 24)) }))
    .filter(f => f.t >= since && (until == null || f.t <= until))
  const lan = failures.filter(f => /dial failed to \/ip4\/198\.18\.[1-9]\d*\./.test(f.line)).length
  const webrtc = failures.filter(f => f.line.includes('/p2p-circuit/webrtc/')).length
  if (lan + webrtc === 0) return undefined
  const what = [lan > 0 ? `${lan} of ${to.host.name}'s LAN addresses` : '', webrtc > 0 ? `${webrtc} WebRTC addresses` : ''].filter(Boolean).join(' and ')
  const last = Math.max(...failures.map(f => f.t)) - since
  return `${from.host.name} first dialled ${what}; all failed, the last ${(last / 1000).toFixed(1)} s after the send`
}

function dcutrNote (agent: Agent): string | undefined {
  const log = logOf(agent)
  if (log.some(l => l.includes('libp2p:dcutr') && l.includes('had no dialable multiaddrs'))) {
    return 'DCUtR tried nothing: libp2p counts 198.18.0.0/15 as private and DCUtR only dials public addresses'
  }
  return undefined
}

/** Times `agent` reported a direct WebRTC path to `peer`. */
function webrtcDirectReports (agent: Agent, peer: Agent): AgentEvent[] {
  return agent.filter(e => e.event === 'path' && e.peer === peer.peerId && e.path === 'direct' && e.transport === 'webrtc')
}

/**
 * What `from`'s WebRTC upgrades to `to` did, from both logs, on one line: how
 * many were tried, the last failure, and connections either heartbeat
 * aborted (what a failed wait for a direct path is explained by).
 */
function upgradeSummary (from: Agent, to: Agent): string {
  const mine = logOf(from).filter(l => l.includes(to.peerId))
  const tried = mine.filter(l => l.includes('to WebRTC via')).length
  const failures = mine.filter(l => l.includes('WebRTC upgrade to') && l.includes('failed'))
  const aborted = [...logOf(from), ...logOf(to)].filter(l => l.includes('parley:heartbeat') && l.includes('aborting it')).length
  const last = failures.at(-1)?.replace(/^.* - /, '')
  return `${from.host.name} tried ${tried} WebRTC upgrade(s), ${failures.length} failed${last == null ? '' : ` (last: ${last})`}; heartbeats aborted ${aborted} connection(s)`
}

function upgradeFailed (agent: Agent): boolean {
  return logOf(agent).some(l => l.includes('WebRTC upgrade to') && l.includes('failed'))
}

/**
 * A scenario: fills its table row whatever happens. Failed checks fail the
 * test; if all of them are known failures the test is skipped instead.
 */
function scenario (id: string, title: string, nat: string, timeout: number, body: (s: Scenario) => Promise<void>): void {
  it(`${id}. ${title}`, async (ctx) => {
    const row: Row = { scenario: `${id}. ${title}`, nat, path: '—', sent: 0, delivered: 0, duplicated: 0, result: 'FAIL', notes: [], failures: [], known: [] }
    rows.push(row)
    const s = new Scenario(id, row)
    try {
      await body(s)
    } catch (err: any) {
      row.failures.push(String(err.message).split('\n')[0])
    }
    if (row.failures.length > 0) {
      throw new Error(`scenario ${id} failed:\n  ${row.failures.join('\n  ')}`)
    }
    if (row.known.length > 0) {
      row.result = 'known failure'
      ctx.skip(`known failure: ${row.known.join('; ')}`)
      return
    }
    row.result = 'pass'
  }, timeout)
}

describe('NAT lab', () => {
  scenario('1', 'cone ↔ cone, STUN', 'cone ↔ cone', 150_000, async (s) => {
    const a = await start(HOSTS.cone1a, 's1-cone1a', { iceServers: [STUN] })
    const b = await start(HOSTS.cone2a, 's1-cone2a', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      // the first message should not wait for ICE: it goes over the relay
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      s.check('first-relayed', first.path === 'relayed', `the first message should go relayed; it went ${String(first.path)}`)
      const dials = firstDialNote(a, b, chat.sent[0].at, first.t)
      if (dials != null) s.note(dials)

      // then the node that dialled over the relay upgrades to WebRTC
      await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 45_000, 'a direct path from cone1a to cone2a')
      const path = await pathOf(a, b)
      s.row.path = path.text
      if (path.webrtc == null) throw new Error(`no WebRTC connection: ${path.text}`)
      const ice = path.webrtc.ice
      s.check('srflx', ice?.localCandidates?.includes('srflx') === true && ice?.remoteCandidates?.includes('srflx') === true,
        `both sides should offer server-reflexive candidates: local ${String(ice?.localCandidates)}, remote ${String(ice?.remoteCandidates)}`)
      s.check('through-nat', !usesTurn(path.webrtc) && ice?.selected?.remote?.address === b.host.publicIp,
        `ICE should pair with cone2a's NAT address ${b.host.publicIp}: ${describeIce(path.webrtc)}`)

      for (let i = 0; i < 3; i++) {
        await chat.sayOver(a, b, 'direct')
        await chat.sayOver(b, a, 'direct')
      }
      s.check('reports-direct', await a.pathTo(b) === 'direct', 'cone1a should report its path to cone2a as direct')

      // with the relay gone the direct connection carries on
      await relay.stop()
      await waitUntil(async () => (await a.status()).circuits === 0 && (await b.status()).circuits === 0, 20_000, 'both nodes to lose their reservation')
      for (let i = 0; i < 3; i++) {
        await chat.sayOver(a, b, 'direct')
        await chat.sayOver(b, a, 'direct')
      }
      s.note('relay stopped: the 6 messages after it went direct')
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  scenario('2', 'symmetric ↔ symmetric, no TURN', 'symmetric ↔ symmetric', 180_000, async (s) => {
    const a = await start(HOSTS.sym1a, 's2-sym1a', { iceServers: [STUN] })
    const b = await start(HOSTS.sym2a, 's2-sym2a', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      await chat.sayOver(a, b, 'relayed')
      const dials = firstDialNote(a, b, chat.sent[0].at, chat.sent[0].result?.t)
      if (dials != null) s.note(dials)
      // keep talking (5 rounds at least) while the WebRTC upgrade is tried and fails
      const until = Date.now() + 45_000
      for (let round = 0; round < 5 || (Date.now() < until && !upgradeFailed(a)); round++) {
        await chat.sayOver(a, b, 'relayed')
        await chat.sayOver(b, a, 'relayed')
        await sleep(2_000)
      }
      s.note(upgradeFailed(a) ? 'the WebRTC upgrade was tried and failed, as it must' : 'no failed WebRTC upgrade in the log within 45 s')
      await chat.sayOver(a, b, 'relayed')
      await chat.sayOver(b, a, 'relayed')
      const path = await pathOf(a, b)
      s.row.path = path.text
      s.check('no-direct', path.webrtc == null && path.direct == null, `no direct path exists between two symmetric NATs, yet: ${path.text}`)
      const reported = [await a.pathTo(b), await b.pathTo(a)]
      s.check('reports-relayed', reported.every(p => p === 'relayed'), `both nodes should report relayed at the end: ${reported.join(', ')}`)
      const phantom = [...webrtcDirectReports(a, b), ...webrtcDirectReports(b, a)]
      s.check('never-direct', phantom.length === 0, `neither node should ever report a direct path, yet they did ${phantom.length} time(s), each a WebRTC connection that ICE never connected`)
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  scenario('3', 'symmetric ↔ cone, TURN', 'symmetric ↔ cone', 150_000, async (s) => {
    const a = await start(HOSTS.sym1a, 's3-sym1a', { iceServers: [STUN, TURN] })
    const b = await start(HOSTS.cone2a, 's3-cone2a', { iceServers: [STUN, TURN] })
    const chat = new Conversation(s, a, b)
    try {
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      const dials = firstDialNote(a, b, chat.sent[0].at, first.t)
      if (dials != null) s.note(dials)
      await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 60_000, 'a WebRTC connection from sym1a to cone2a')
      const path = await pathOf(a, b)
      s.row.path = path.text
      if (path.webrtc == null) throw new Error(`no WebRTC connection: ${path.text}`)
      // a port-restricted cone drops what a symmetric NAT sends from a new port: only TURN joins them
      s.check('turn', usesTurn(path.webrtc), `the WebRTC connection should run through TURN: ${describeIce(path.webrtc)}`)
      s.note(`took ${usesTurn(path.webrtc) ? 'the TURN relay (coturn)' : 'a direct pair'}; parley reports it as "direct" (its path names only relayed vs not, TURN counts as WebRTC)`)
      for (let i = 0; i < 3; i++) {
        await chat.sayOver(a, b, 'direct')
        await chat.sayOver(b, a, 'direct')
      }
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  scenario('4a', 'public ↔ cone, public sends first', 'public ↔ cone', 120_000, async (s) => {
    const a = await start(HOSTS.pub, 's4a-pub', { iceServers: [STUN] })
    const b = await start(HOSTS.cone1a, 's4a-cone1a', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      s.note(`the first message went ${String(first.path)}`)
      const dials = firstDialNote(a, b, chat.sent[0].at, first.t)
      if (dials != null) s.note(dials)
      await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 45_000, 'a direct path from pub to cone1a')
      const path = await pathOf(a, b)
      s.row.path = path.text
      s.check('direct', path.direct != null || path.webrtc != null, `a direct connection should result: ${path.text}`)
      const dcutr = dcutrNote(b) ?? dcutrNote(a)
      if (dcutr != null) s.note(dcutr)
      for (let i = 0; i < 3; i++) {
        await chat.sayOver(a, b, 'direct')
        await chat.sayOver(b, a, 'direct')
      }
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  scenario('4b', 'public ↔ cone, cone sends first', 'cone ↔ public', 120_000, async (s) => {
    const a = await start(HOSTS.cone2a, 's4b-cone2a', { iceServers: [STUN] })
    const b = await start(HOSTS.pub, 's4b-pub', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      // libp2p (and parley's dial order) count 198.18.0.0/15 as private, so the
      // public host's TCP address ranks after its relay circuit here: the first
      // message takes the relay, then the path turns direct. With a real public
      // address the plain dial goes first.
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      s.note(`the first message went ${String(first.path)}`)
      await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 45_000, 'a direct path from cone2a to pub')
      const path = await pathOf(a, b)
      s.row.path = path.text
      s.check('direct', path.direct != null || path.webrtc != null, `a direct connection should result: ${path.text}`)
      for (let i = 0; i < 3; i++) {
        await chat.sayOver(a, b, 'direct')
        await chat.sayOver(b, a, 'direct')
      }
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  scenario('5', 'two hosts behind the same NAT', 'cone, same LAN', 90_000, async (s) => {
    const a = await start(HOSTS.cone1a, 's5-cone1a', { iceServers: [STUN] })
    const b = await start(HOSTS.cone1b, 's5-cone1b', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      await chat.sayOver(a, b, 'direct')
      const path = await pathOf(a, b)
      s.row.path = path.text
      s.check('lan', path.direct?.remoteAddr.includes(`/ip4/${b.host.ip}/`) === true, `a direct connection on the LAN (${b.host.ip}) should result: ${path.text}`)
      for (let i = 0; i < 3; i++) {
        await chat.sayOver(a, b, 'direct')
        await chat.sayOver(b, a, 'direct')
      }
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  scenario('6', 'relay killed and restarted mid-conversation', 'symmetric ↔ symmetric', 300_000, async (s) => {
    const a = await start(HOSTS.sym1a, 's6-sym1a', { iceServers: [STUN] })
    const b = await start(HOSTS.sym2a, 's6-sym2a', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      await chat.sayOver(a, b, 'relayed')
      await chat.sayOver(b, a, 'relayed')
      s.row.path = (await pathOf(a, b)).text

      await relay.stop('SIGKILL')
      const killedAt = Date.now()
      // sent while the relay is down; each send may take up to 150 s
      const during: Array<Promise<AgentEvent>> = []
      for (let i = 0; i < 3; i++) {
        during.push(chat.say(a, b, 150_000), chat.say(b, a, 150_000))
        await sleep(1_000)
      }
      await sleep(Math.max(0, killedAt + 8_000 - Date.now()))
      await relay.start()
      const restartedAt = Date.now()

      let healedMs: number | undefined
      try {
        await waitUntil(async () => (await a.status()).circuits > 0 && (await b.status()).circuits > 0, 60_000, 'both nodes to reserve on the restarted relay', 500)
        healedMs = Date.now() - restartedAt
      } catch {}
      s.check('healed', healedMs != null, `both reservations should be made again on the restarted relay within 60 s (sym1a ${(await a.status()).circuits}, sym2a ${(await b.status()).circuits} circuit addresses)`)
      if (healedMs != null) s.note(`relay down 8 s; both reservations were back ${healedMs} ms after its restart`)

      await chat.allDelivered(120_000)
      const deliveredAt = Math.max(...chat.sent.flatMap(m => chat.received(m).map(e => e.t)))
      s.note(`the 6 messages sent during the outage arrived within ${deliveredAt - restartedAt} ms of the restart`)
      const phantom = [...webrtcDirectReports(a, b), ...webrtcDirectReports(b, a)].length
      if (phantom > 0) s.note(`${phantom} time(s) a node reported a direct WebRTC path that ICE never connected (see 2), and tried its messages there first`)
      const results = await Promise.all(during)
      s.check('receipts', results.every(r => r.event === 'sent'), `every send during the outage should resolve delivered: ${results.map(r => `${r.event} ${String(r.error ?? '')}`).join(', ')}`)
      // what went through a mailbox meanwhile is delivered for its sender once the
      // recipient's receipt comes; until the last one has, the sender still holds the
      // peer unreachable, and a new message goes to its mailbox at once as well (as it
      // must while a peer is away): the messages after the outage are sent after that
      const outage = chat.sent.slice(2)
      await waitUntil(() => outage.every(m => m.from.find(e => e.event === 'msg-status' && e.id === m.result?.id && e.status === 'delivered') != null), 60_000, 'the receipts of the messages sent during the outage', 250)
      for (let i = 0; i < 2; i++) {
        await chat.sayOver(a, b, 'relayed')
        await chat.sayOver(b, a, 'relayed')
      }
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  scenario('7', 'LAN link down for 10 s', 'cone ↔ cone', 300_000, async (s) => {
    const a = await start(HOSTS.cone1a, 's7-cone1a', { iceServers: [STUN] })
    const b = await start(HOSTS.cone2a, 's7-cone2a', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 45_000, 'a direct path from cone1a to cone2a')
      await chat.sayOver(a, b, 'direct')
      await chat.sayOver(b, a, 'direct')
      const before = (await pathOf(a, b)).text

      // cone1a's cable is pulled for 10 s; both sides write meanwhile
      setLink(a.host, false)
      const downAt = Date.now()
      const during: Array<Promise<AgentEvent>> = []
      try {
        for (let i = 0; i < 3; i++) {
          during.push(chat.say(a, b, 150_000), chat.say(b, a, 150_000))
          await sleep(2_500)
        }
        await sleep(Math.max(0, downAt + 10_000 - Date.now()))
      } finally {
        setLink(a.host, true)
      }
      const upAt = Date.now()
      await chat.allDelivered(120_000)
      const deliveredAt = Math.max(...chat.sent.flatMap(m => chat.received(m).map(e => e.t)))
      s.note(`the 6 messages sent while the link was down arrived within ${deliveredAt - upAt} ms of it coming back`)
      const results = await Promise.all(during)
      s.check('receipts', results.every(r => r.event === 'sent'), `every send during the outage should resolve delivered: ${results.map(r => `${r.event} ${String(r.error ?? '')}`).join(', ')}`)
      for (let i = 0; i < 2; i++) {
        await chat.say(a, b)
        await chat.say(b, a)
      }
      await chat.allDelivered(30_000)
      s.row.path = `before: ${before}; after: ${(await pathOf(a, b)).text}`
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  /* ---------- issue 15: the networks people actually have ---------- */

  /**
   * Carrier-grade NAT: a home NAT behind a carrier NAT, both keeping the source
   * port while it is free (endpoint-independent mapping), so the two mappings
   * in a row are one endpoint-independent mapping and ICE punches through
   * them as through one cone NAT.
   */
  function carrierNat (id: string, title: string, nat: string, hostA: Host, hostB: Host): void {
    scenario(id, title, nat, 150_000, async (s) => {
      const a = await start(hostA, `s${id}-${hostA.name}`, { iceServers: [STUN] })
      const b = await start(hostB, `s${id}-${hostB.name}`, { iceServers: [STUN] })
      const chat = new Conversation(s, a, b)
      try {
        const first = await chat.say(a, b)
        if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
        s.note(`the first message went ${String(first.path)}`)
        const dials = firstDialNote(a, b, chat.sent[0].at, first.t)
        if (dials != null) s.note(dials)

        await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 45_000, `a direct path from ${a.host.name} to ${b.host.name}`)
        const path = await pathOf(a, b)
        s.row.path = path.text
        if (path.webrtc == null) throw new Error(`no WebRTC connection: ${path.text}`)
        s.check('through-nat', !usesTurn(path.webrtc) && path.webrtc.ice?.selected?.remote?.address === b.host.publicIp,
          `ICE should pair with ${b.host.name}'s outermost NAT address ${b.host.publicIp}: ${describeIce(path.webrtc)}`)
        s.check('local-mapping', path.webrtc.ice?.selected?.local?.address === a.host.publicIp,
          `${a.host.name}'s side of the pair should be its outermost NAT address ${a.host.publicIp}: ${describeIce(path.webrtc)}`)
        for (let i = 0; i < 3; i++) {
          await chat.sayOver(a, b, 'direct')
          await chat.sayOver(b, a, 'direct')
        }
        const reported = [await a.pathTo(b), await b.pathTo(a)]
        s.check('reports-direct', reported.every(p => p === 'direct'), `both nodes should report direct: ${reported.join(', ')}`)
        chat.checkClean()
      } finally {
        chat.fill(s.row)
      }
    })
  }

  carrierNat('15.1a', 'carrier-grade NAT on both sides', 'home cone + carrier cone ↔ home cone + carrier cone', HOSTS.cgn1a, HOSTS.cgn2a)
  carrierNat('15.1b', 'carrier-grade NAT on one side', 'home cone + carrier cone ↔ cone', HOSTS.cgn1a, HOSTS.cone2a)

  /**
   * UDP blocked: office1's firewall lets out only TCP to ports 80 and 443 (lab.sh,
   * kind web-only), so no STUN, no TURN over UDP and no ICE get out. The office
   * node reaches the relay on 443 over WebSockets and everything goes relayed;
   * the WebRTC upgrade is tried, fails and is never reported as a direct path.
   * (TURN over TCP or TLS would be the other way out, but libjuice, the ICE agent
   * node-datachannel is built with, implements TURN over UDP only.)
   */
  function udpBlocked (id: string, title: string, nat: string, officeFirst: boolean): void {
    scenario(id, title, nat, 150_000, async (s) => {
      const office = await start(HOSTS.office1a, `s${id}-office1a`, { relays: [relay.webMultiaddr], iceServers: [STUN, TURN] })
      const peer = await start(HOSTS.cone2a, `s${id}-cone2a`, { iceServers: [STUN, TURN] })
      const [a, b] = officeFirst ? [office, peer] : [peer, office]
      const chat = new Conversation(s, a, b)
      try {
        await chat.sayOver(a, b, 'relayed')
        const dials = firstDialNote(a, b, chat.sent[0].at, chat.sent[0].result?.t)
        if (dials != null) s.note(dials)
        // keep talking (5 rounds at least) while the WebRTC upgrade is tried and fails
        const until = Date.now() + 45_000
        for (let round = 0; round < 5 || (Date.now() < until && !upgradeFailed(a)); round++) {
          await chat.sayOver(a, b, 'relayed')
          await chat.sayOver(b, a, 'relayed')
          await sleep(1_000)
        }
        s.note(upgradeFailed(a) ? `${a.host.name}'s WebRTC upgrade was tried and failed, as it must without UDP` : 'no failed WebRTC upgrade in the log within 45 s')
        const toRelay = (await office.status()).connections.filter(c => c.peer === relay.peerId && c.status === 'open')
        s.check('relay-on-443', toRelay.length > 0 && toRelay.every(c => c.remoteAddr.includes('/tcp/443/ws')),
          `office1a should reach the relay over WebSockets on 443: ${toRelay.map(c => c.remoteAddr).join(', ') || 'no connection'}`)
        const path = await pathOf(a, b)
        s.row.path = `${path.text}, office1a ↔ relay over WebSockets on 443`
        s.check('no-direct', path.webrtc == null && path.direct == null, `nothing direct gets through a firewall that lets out only TCP to 80/443, yet: ${path.text}`)
        const reported = [await a.pathTo(b), await b.pathTo(a)]
        s.check('reports-relayed', reported.every(p => p === 'relayed'), `both nodes should report relayed: ${reported.join(', ')}`)
        const phantom = [...webrtcDirectReports(a, b), ...webrtcDirectReports(b, a)]
        s.check('never-direct', phantom.length === 0, `neither node should ever report a direct path, yet they did ${phantom.length} time(s)`)
        s.note(`the office firewall dropped ${egressDrops('office1', 'udp')} outgoing UDP packets (STUN, TURN, ICE) and ${egressDrops('office1', 'all')} other packets`)
        chat.checkClean()
      } finally {
        chat.fill(s.row)
      }
    })
  }

  udpBlocked('15.2a', 'UDP blocked, only TCP to 80/443 out; the office node sends first', 'office firewall (TCP 80/443 only) + cone ↔ cone', true)
  udpBlocked('15.2b', 'UDP blocked, only TCP to 80/443 out; its peer sends first', 'cone ↔ office firewall (TCP 80/443 only) + cone', false)

  /** Whether a connection's remote end is an IPv6 address: its multiaddr, or the pair ICE chose. */
  function overIpv6 (c?: ConnectionInfo): boolean {
    if (c == null) return false
    if (c.transport === 'webrtc') return c.ice?.selected?.remote?.address?.includes(':') === true
    return c.remoteAddr.startsWith('/ip6/')
  }

  const DUAL_STACK = ['/ip4/0.0.0.0/tcp/0', '/ip4/0.0.0.0/tcp/0/ws', '/ip6/::/tcp/0', '/ip6/::/tcp/0/ws', '/webrtc']

  /**
   * IPv6, open end to end: dual1a and dual2a sit behind IPv4 symmetric NATs
   * (no direct IPv4 path: see 2), but their IPv6 addresses are routed without
   * NAT or filter. The path must go direct, over IPv6. (Behind IPv4 cone NATs
   * ICE may as well pick the IPv4 server-reflexive pair: it did once in 4 runs.)
   */
  scenario('15.7a', 'IPv6 open end to end, dual-stack pair', 'dual stack: IPv4 symmetric, IPv6 open ↔ the same', 150_000, async (s) => {
    const a = await start(HOSTS.dual1a, 's15.7a-dual1a', { listen: DUAL_STACK, iceServers: [STUN] })
    const b = await start(HOSTS.dual2a, 's15.7a-dual2a', { listen: DUAL_STACK, iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      s.note(`the first message went ${String(first.path)}`)
      const dials = firstDialNote(a, b, chat.sent[0].at, first.t)
      if (dials != null) s.note(dials)
      // the path as it is now, not a direct one reported once: an upgrade that
      // fails may open its connection before it fails, and the upgrader retries
      try {
        await waitUntil(async () => await a.pathTo(b) === 'direct', 45_000, 'a direct path from dual1a to dual2a', 250)
      } catch (err: any) {
        throw new Error(`${String(err.message)}: ${upgradeSummary(a, b)}`)
      }
      s.note(upgradeSummary(a, b))
      const conns = (await a.connectionsTo(b)).filter(c => c.transport !== 'circuit-relay' && !c.limited)
      const path = await pathOf(a, b)
      s.row.path = path.text
      s.check('ipv6', conns.length > 0 && conns.every(overIpv6), `the direct connection should run over IPv6: ${conns.map(c => c.transport === 'webrtc' ? describeIce(c) : c.remoteAddr).join('; ') || 'none'}`)
      for (let i = 0; i < 3; i++) {
        await chat.sayOver(a, b, 'direct')
        await chat.sayOver(b, a, 'direct')
      }
      const reported = [await a.pathTo(b), await b.pathTo(a)]
      s.check('reports-direct', reported.every(p => p === 'direct'), `both nodes should report direct: ${reported.join(', ')}`)
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  /**
   * An IPv6-only node and an IPv4-only node: no path between them but the
   * dual-stack relay, which each reaches in its own family.
   */
  function acrossFamilies (id: string, title: string, nat: string, v6First: boolean): void {
    scenario(id, title, nat, 120_000, async (s) => {
      const v6 = await start(HOSTS.v6pub, `s${id}-v6pub`, { listen: ['/ip6/::/tcp/0', '/ip6/::/tcp/0/ws', '/webrtc'], relays: [relay.multiaddr6] })
      const v4 = await start(HOSTS.cone2a, `s${id}-cone2a`, { iceServers: [STUN] })
      const [a, b] = v6First ? [v6, v4] : [v4, v6]
      const chat = new Conversation(s, a, b)
      try {
        for (let i = 0; i < 4; i++) {
          await chat.sayOver(a, b, 'relayed')
          await chat.sayOver(b, a, 'relayed')
        }
        const toRelay = (await v6.status()).connections.filter(c => c.peer === relay.peerId && c.status === 'open')
        s.check('relay-over-ipv6', toRelay.length > 0 && toRelay.every(c => c.remoteAddr.startsWith('/ip6/')), `v6pub should reach the relay over IPv6: ${toRelay.map(c => c.remoteAddr).join(', ') || 'no connection'}`)
        const path = await pathOf(a, b)
        s.row.path = `${path.text}: v6pub ↔ relay over IPv6, cone2a ↔ relay over IPv4`
        s.check('relayed', path.webrtc == null && path.direct == null, `an IPv6-only and an IPv4-only node have no direct path, yet: ${path.text}`)
        chat.checkClean()
      } finally {
        chat.fill(s.row)
      }
    })
  }

  acrossFamilies('15.7b', 'IPv6-only node ↔ IPv4-only node through a dual-stack relay, IPv6 side sends first', 'IPv6 only ↔ IPv4 cone', true)
  acrossFamilies('15.7c', 'IPv4-only node ↔ IPv6-only node through a dual-stack relay, IPv4 side sends first', 'IPv4 cone ↔ IPv6 only', false)

  /**
   * A lossy link: lossy1a's router drops 5 % of the packets on its WAN side,
   * each way (lab.sh). The messages go in bursts, both ways at once, so that
   * retransmissions overtake one another: each must still arrive once, and in
   * the order it was sent (parley presents a conversation by seq).
   */
  scenario('15.3', 'lossy link, 5 % loss each way', 'cone, 5 % loss each way ↔ cone', 180_000, async (s) => {
    const a = await start(HOSTS.lossy1a, 's15.3-lossy1a', { iceServers: [STUN] })
    const b = await start(HOSTS.cone2a, 's15.3-cone2a', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    const burst = async (): Promise<void> => {
      const sends: Array<Promise<AgentEvent>> = []
      for (let i = 0; i < 5; i++) sends.push(chat.say(a, b), chat.say(b, a))
      await Promise.all(sends)
    }
    try {
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      s.note(`the first message went ${String(first.path)}`)
      // talk while the path turns direct, then on the direct path
      for (let round = 0; round < 4; round++) await burst()
      try {
        await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 60_000, `a direct path from ${a.host.name} to ${b.host.name}`)
      } catch {}
      for (let round = 0; round < 4; round++) await burst()
      await chat.allDelivered(60_000)

      const path = await pathOf(a, b)
      s.row.path = path.text
      s.check('direct', path.webrtc != null && !usesTurn(path.webrtc), `loss does not stop hole punching between cone NATs; the path should go direct: ${path.text}`)
      const results = chat.sent.map(m => m.result)
      s.check('receipts', results.every(r => r?.event === 'sent'), `every send should resolve delivered: ${results.filter(r => r?.event !== 'sent').map(r => `${String(r?.event)} ${String(r?.error ?? '')}`).join(', ')}`)

      // in order: each side received the other's messages in the order they were sent
      for (const [from, to] of [[a, b], [b, a]]) {
        const order = new Map(chat.sent.filter(m => m.from === from).map((m, i) => [m.body, i]))
        const got = to.messagesFrom(from).map(e => order.get(e.body) ?? -1)
        const outOfOrder = got.filter((n, i) => i > 0 && n <= got[i - 1]).length
        s.check('in-order', outOfOrder === 0, `${to.host.name} should get ${from.host.name}'s messages in the order sent: ${outOfOrder} out of order`)
      }

      const latencies = chat.sent.flatMap(m => chat.received(m).slice(0, 1).map(e => e.t - m.at)).sort((x, y) => x - y)
      const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]
      const paths = new Map<string, number>()
      for (const m of chat.sent) for (const e of chat.received(m).slice(0, 1)) paths.set(String(e.path), (paths.get(String(e.path)) ?? 0) + 1)
      s.note(`delivery over ${latencies.length} messages, in bursts of 5 each way: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, slowest ${latencies.at(-1) ?? 0} ms; received ${[...paths].map(([p, n]) => `${n} ${p}`).join(', ')}`)
      const dropped = lossDrops('lossy1')
      s.check('lossy', dropped > 0, 'the lossy router should have dropped packets')
      s.note(`the router dropped ${dropped} packets on the way`)
      s.note('no added delay: this kernel has no netem qdisc (tc qdisc … netem: "Specified qdisc kind is unknown"), so only the loss is emulated')
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  /**
   * Laptop moves: mid-conversation roam1a's link is pulled from roam1's LAN and
   * plugged into roam2's (another cone NAT, another address). The node is not
   * restarted: it must notice, reserve on the relay again, republish its
   * record, and its peer must reach it again; nothing lost or shown twice.
   */
  scenario('15.4', 'laptop moves to another NAT mid-conversation', 'cone → another cone ↔ cone', 240_000, async (s) => {
    const host = { ...HOSTS.roam1a }
    const a = await start(host, 's15.4-roam1a', { iceServers: [STUN] })
    const b = await start(HOSTS.cone2a, 's15.4-cone2a', { iceServers: [STUN] })
    const chat = new Conversation(s, a, b)
    try {
      const first = await chat.say(a, b)
      if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
      await waitUntil(() => a.find(e => e.event === 'path' && e.peer === b.peerId && e.path === 'direct'), 45_000, 'a direct path from roam1a to cone2a')
      await chat.sayOver(a, b, 'direct')
      await chat.sayOver(b, a, 'direct')
      const before = (await pathOf(a, b)).text

      moveHost(host, 'roam2', '198.18.82.10', '198.18.0.82')
      const movedAt = Date.now()
      const sentBefore = chat.sent.length
      // both write right after the move, and on while the node finds its feet
      const after: Array<Promise<AgentEvent>> = []
      for (let i = 0; i < 3; i++) {
        after.push(chat.say(b, a, 150_000), chat.say(a, b, 150_000))
        await sleep(2_000)
      }
      await chat.allDelivered(150_000)
      const firstAfter = Math.min(...chat.sent.slice(sentBefore).flatMap(m => chat.received(m).map(e => e.t)))
      s.note(`the first message after the move arrived ${firstAfter - movedAt} ms after it; the last of the 6 sent during the first 6 s ${Math.max(...chat.sent.slice(sentBefore).flatMap(m => chat.received(m).map(e => e.t))) - movedAt} ms after it`)
      const results = await Promise.all(after)
      s.check('receipts', results.every(r => r.event === 'sent'), `every send after the move should resolve delivered: ${results.map(r => `${r.event} ${String(r.error ?? '')}`).join(', ')}`)

      let reservedMs: number | undefined
      try {
        await waitUntil(async () => {
          const st = await a.status()
          return st.circuits > 0 && st.lastPublished != null && st.lastPublished > movedAt
        }, 60_000, 'roam1a to reserve again and republish its record', 500)
        reservedMs = Date.now() - movedAt
      } catch {}
      const st = await a.status()
      if (reservedMs != null) s.note(`roam1a held a reservation again and had republished its record ${reservedMs} ms after the move (seen by polling every 0.5 s once the messages were through)`)
      const paths = new Map<string, number>()
      for (const m of chat.sent.slice(sentBefore)) for (const e of chat.received(m).slice(0, 1)) paths.set(String(e.path), (paths.get(String(e.path)) ?? 0) + 1)
      s.note(`the 6 messages sent after the move were received ${[...paths].map(([p, n]) => `${n} ${p}`).join(', ')}`)
      const directAgain = [a, b].map(x => x.find(e => e.event === 'path' && e.peer === (x === a ? b : a).peerId && e.path === 'direct', movedAt)?.t).filter((t): t is number => t != null)
      if (directAgain.length > 0) s.note(`direct again ${Math.min(...directAgain) - movedAt} ms after the move`)
      s.check('republished', reservedMs != null, `roam1a should hold a reservation again and republish its record after the move: ${st.circuits} circuit addresses, last published ${st.lastPublished == null ? 'never' : `${st.lastPublished - movedAt} ms after the move`}`)
      s.check('new-address', st.multiaddrs.some(m => m.includes('/ip4/198.18.82.10/')) && !st.multiaddrs.some(m => m.includes('/ip4/198.18.81.10/')), `roam1a should announce its new address only: ${st.multiaddrs.filter(m => !m.includes('p2p-circuit')).join(', ')}`)

      for (let i = 0; i < 2; i++) {
        await chat.say(a, b)
        await chat.say(b, a)
      }
      await chat.allDelivered(30_000)
      s.row.path = `before: ${before}; after: ${(await pathOf(a, b)).text}`
      chat.checkClean()
    } finally {
      chat.fill(s.row)
    }
  })

  /**
   * Many peers behind one NAT: four hosts on each of two LANs behind two cone
   * NATs. Every pair across the NATs talks both ways at once; the pairs on one
   * LAN must find each other on the LAN, not through the relay or the NAT.
   */
  const many = MANY_PER_LAN
  const manyWord = ['two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'][many - 2]
  scenario('15.6', `${manyWord} peers behind each of two cone NATs`, `cone (${many} hosts) ↔ cone (${many} hosts)`, 120_000 + many * many * 8_000, async (s) => {
    // started four at a time: twenty node processes loading at once on 2 cores take longer than a start may
    const started: Agent[] = []
    const names = [1, 2].flatMap(n => MANY_LETTERS.slice(0, many).map(letter => `many${n}${letter}`))
    for (let i = 0; i < names.length; i += 4) {
      started.push(...await Promise.all(names.slice(i, i + 4).map(async name => start(HOSTS[name], `s15.6-${name}`, { iceServers: [STUN] }))))
    }
    const left = started.slice(0, many)
    const right = started.slice(many)
    const cross = left.flatMap(a => right.map(b => new Conversation(s, a, b)))
    const local = [left, right].flatMap(side => side.flatMap((a, i) => side.slice(i + 1).map(b => new Conversation(s, a, b))))
    const all = [...cross, ...local]
    try {
      // every pair across the NATs at once, both ways
      await Promise.all(cross.map(async chat => {
        await chat.say(chat.a, chat.b)
        await chat.say(chat.b, chat.a)
      }))
      await Promise.all(cross.map(async chat => { await chat.allDelivered(60_000) }))
      const firsts = cross.map(chat => chat.firstDeliveryMs ?? Infinity).sort((x, y) => x - y)
      s.row.firstDeliveryMs = firsts.at(-1)
      s.note(`first delivery across the NATs: p50 ${Math.round(firsts[Math.floor(firsts.length / 2)])} ms, slowest ${Math.round(firsts.at(-1) ?? 0)} ms over ${cross.length} pairs`)

      // the pairs across the NATs turn direct by hole punching, each through its own mappings
      const direct = async (chat: Conversation): Promise<boolean> => (await chat.a.pathTo(chat.b)) === 'direct'
      try {
        await waitUntil(async () => (await Promise.all(cross.map(direct))).every(Boolean), 60_000, 'every pair across the NATs to go direct', 1_000)
      } catch {}
      const crossPaths = await Promise.all(cross.map(async chat => pathOf(chat.a, chat.b)))
      const punched = crossPaths.filter(p => p.webrtc != null && !usesTurn(p.webrtc) && p.webrtc.ice?.selected?.remote?.address === '198.18.0.52').length
      s.check('cross-direct', punched === cross.length, `every pair across the NATs should go direct through the NATs: ${punched} of ${cross.length} did`)
      const toDirect = cross.map(chat => chat.toDirectMs).filter((t): t is number => t != null)
      if (toDirect.length > 0) s.row.toDirectMs = Math.max(...toDirect)

      // then every pair on a LAN: direct on the LAN from the first message
      for (const chat of local) {
        await chat.sayOver(chat.a, chat.b, 'direct')
        await chat.sayOver(chat.b, chat.a, 'direct')
      }
      const localPaths = await Promise.all(local.map(async chat => pathOf(chat.a, chat.b)))
      const onLan = localPaths.filter((p, i) => p.direct?.remoteAddr.includes(`/ip4/${local[i].b.host.ip}/`) === true).length
      s.check('lan', onLan === local.length, `every pair on one LAN should connect on the LAN: ${onLan} of ${local.length} did (${localPaths.map(p => p.text).join('; ')})`)
      s.row.path = `across: ${punched} of ${cross.length} pairs direct (WebRTC, srflx ↔ srflx); same LAN: ${onLan} of ${local.length} pairs direct (tcp on the LAN)`

      // and once more across, now over the paths they settled on
      await Promise.all(cross.map(async chat => {
        await chat.say(chat.a, chat.b)
        await chat.say(chat.b, chat.a)
      }))
      await Promise.all(cross.map(async chat => { await chat.allDelivered(30_000) }))
      for (const chat of all) chat.checkClean()
    } finally {
      s.row.sent = all.reduce((sum, chat) => sum + chat.sent.length, 0)
      s.row.delivered = all.reduce((sum, chat) => sum + chat.delivered, 0)
      s.row.duplicated = all.reduce((sum, chat) => sum + chat.duplicated, 0)
    }
  })

  /**
   * A router that answers unsolicited packets: a cone NAT without the INPUT
   * drop. A peer's punch that reaches the router before the host's own packets
   * leave is taken by the router itself (a conntrack entry on the mapped
   * port), so MASQUERADE maps the host's flow to another port, which the
   * peer's NAT drops: ICE fails where it succeeds through a textbook cone NAT.
   * parley must notice, stay relayed without losing anything, and stop trying;
   * or go direct where the order of the punches lets it. `a` sends first, so
   * it dials over the relay and offers the WebRTC upgrade.
   */
  function answeringRouter (id: string, title: string, nat: string, hostA: Host, hostB: Host): void {
    scenario(id, title, nat, 300_000, async (s) => {
      const a = await start(hostA, `s${id}-${hostA.name}`, { iceServers: [STUN] })
      const b = await start(hostB, `s${id}-${hostB.name}`, { iceServers: [STUN] })
      const chat = new Conversation(s, a, b)
      const lines = (what: string): number[] => logOf(a)
        .filter(l => l.includes(what) && l.includes(b.peerId))
        .map(l => Date.parse(l.slice(0, 24)))
      const attempts = (): number[] => lines('to WebRTC via')
      const gaveUp = (): number | undefined => lines('giving up').at(0)
      try {
        const first = await chat.say(a, b)
        if (first.event !== 'sent') throw new Error(`the first message failed: ${String(first.error)}`)
        const startedAt = chat.sent[0].at
        // keep talking while the upgrade is tried, until it succeeds or parley gives it up
        // (5 attempts of up to 30 s each, 30 s of back-off between them)
        let direct = false
        const until = Date.now() + 210_000
        while (Date.now() < until && gaveUp() == null && !direct) {
          await chat.say(a, b)
          await chat.say(b, a)
          direct = await a.pathTo(b) === 'direct'
          await sleep(2_000)
        }
        await chat.allDelivered(30_000)
        const path = await pathOf(a, b)
        s.row.path = path.text
        const failedAt = lines('WebRTC upgrade to').at(0)
        if (path.webrtc != null) {
          s.note(`the upgrade succeeded after ${attempts().length} attempt(s) of ${a.host.name}'s; the connection was offered by ${path.webrtc.direction === 'outbound' ? a.host.name : b.host.name}: ${describeIce(path.webrtc)}`)
          s.row.toDirectMs = chat.toDirectMs
          for (let i = 0; i < 2; i++) {
            await chat.sayOver(a, b, 'direct')
            await chat.sayOver(b, a, 'direct')
          }
        } else {
          const giveUp = gaveUp()
          const tried = attempts().length
          s.check('noticed', failedAt != null && failedAt - startedAt < 35_000, `the failed upgrade should be noticed within 35 s of the first send: ${failedAt == null ? 'never' : `${failedAt - startedAt} ms`}`)
          s.check('gives-up', giveUp != null, `the upgrader should give up the doomed upgrade; it tried ${tried} times in ${Math.round((Date.now() - startedAt) / 1000)} s`)
          if (failedAt != null) s.note(`the first upgrade failed ${failedAt - startedAt} ms after the first send`)
          if (giveUp != null) {
            s.note(`${tried} attempts, then parley gave up ${((giveUp - startedAt) / 1000).toFixed(1)} s after the first send and stayed relayed`)
            // talk on a little: no further attempt may start
            for (let i = 0; i < 3; i++) {
              await chat.sayOver(a, b, 'relayed')
              await chat.sayOver(b, a, 'relayed')
            }
            s.check('no-retry', attempts().length === tried, `no upgrade may be tried after giving up: ${attempts().length - tried} more`)
          }
          const reported = [await a.pathTo(b), await b.pathTo(a)]
          s.check('reports-relayed', reported.every(p => p === 'relayed'), `both nodes should report relayed: ${reported.join(', ')}`)
        }
        chat.checkClean()
      } finally {
        chat.fill(s.row)
      }
    })
  }

  answeringRouter('15.5a', 'router that answers unsolicited packets, its host dials', 'open cone → cone', HOSTS.open1a, HOSTS.cone2a)
  answeringRouter('15.5b', 'router that answers unsolicited packets, the peer dials', 'cone → open cone', HOSTS.cone2a, HOSTS.open1a)
})
