/**
 * Helpers of the NAT lab: the lab's addresses (as lab.sh lays them out), parley
 * processes in network namespaces (agents and the relay), link control, and the
 * results table. run.sh builds the namespaces and tears them down; this file
 * only starts processes in them.
 */
import { spawn, execFileSync } from 'node:child_process'
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import type { WriteStream } from 'node:fs'

/* ---------- the lab as lab.sh builds it (keep the two in step) ---------- */
/* internet 198.18.0.0/24 (relay .1, coturn .2, public host .10, routers .21/.22
 * cone and .31/.32 symmetric, the void .254), one LAN 198.18.N.0/24 per router */

export const PREFIX = process.env.PARLEY_NAT_PREFIX ?? 'parley-nat'
export const RELAY_IP = '198.18.0.1'
/** The relay's IPv6 address (15.7): the internet bridge carries 2001:db8::/64 too. */
export const RELAY_IP6 = '2001:db8::1'
export const TURN_IP = '198.18.0.2'
export const TURN_USER = 'parley'
export const TURN_PASSWORD = 'parley-lab'
export const STUN = { urls: `stun:${TURN_IP}:3478` }
export const TURN = { urls: `turn:${TURN_IP}:3478?transport=udp`, username: TURN_USER, credential: TURN_PASSWORD }

export type NatKind = 'cone' | 'symmetric' | 'public' | 'double' | 'open-cone' | 'web-only' | 'ipv6-only'

export interface Host {
  name: string
  ip: string
  /** The router the host sits behind; none for the public host. */
  router?: string
  /** The address the internet sees the host's traffic come from. */
  publicIp: string
  nat: NatKind
  /** Its IPv6 address, on the hosts that have one (15.7). */
  ip6?: string
}

export const HOSTS: Record<string, Host> = {
  pub: { name: 'pub', ip: '198.18.0.10', publicIp: '198.18.0.10', nat: 'public' },
  cone1a: { name: 'cone1a', ip: '198.18.1.10', router: 'cone1', publicIp: '198.18.0.21', nat: 'cone' },
  cone1b: { name: 'cone1b', ip: '198.18.1.11', router: 'cone1', publicIp: '198.18.0.21', nat: 'cone' },
  cone2a: { name: 'cone2a', ip: '198.18.2.10', router: 'cone2', publicIp: '198.18.0.22', nat: 'cone' },
  sym1a: { name: 'sym1a', ip: '198.18.3.10', router: 'sym1', publicIp: '198.18.0.31', nat: 'symmetric' },
  sym2a: { name: 'sym2a', ip: '198.18.4.10', router: 'sym2', publicIp: '198.18.0.32', nat: 'symmetric' }
}

/* issue 15's networks (see lab.sh): double NAT (a home router behind a carrier
 * NAT), two LANs of four hosts, and a cone NAT that answers unsolicited packets */
Object.assign(HOSTS, {
  cgn1a: { name: 'cgn1a', ip: '198.18.42.10', router: 'home1', publicIp: '198.18.0.41', nat: 'double' },
  cgn2a: { name: 'cgn2a', ip: '198.18.44.10', router: 'home2', publicIp: '198.18.0.42', nat: 'double' },
  open1a: { name: 'open1a', ip: '198.18.61.10', router: 'open1', publicIp: '198.18.0.61', nat: 'open-cone' }
} satisfies Record<string, Host>)
/** Hosts a LAN of 15.6 has (lab.sh makes ten); the scenario uses PARLEY_NAT_MANY of them (default 4). */
export const MANY_LETTERS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']
export const MANY_PER_LAN = Math.min(MANY_LETTERS.length, Math.max(2, Number(process.env.PARLEY_NAT_MANY ?? 4)))
for (const lan of [1, 2]) {
  for (const [i, letter] of MANY_LETTERS.entries()) {
    const name = `many${lan}${letter}`
    HOSTS[name] = { name, ip: `198.18.5${lan}.${10 + i}`, router: `many${lan}`, publicIp: `198.18.0.5${lan}`, nat: 'cone' }
  }
}

/* 15.3: a cone NAT whose WAN link loses 5 % of the packets each way (lab.sh) */
HOSTS.lossy1a = { name: 'lossy1a', ip: '198.18.71.10', router: 'lossy1', publicIp: '198.18.0.71', nat: 'cone' }

/* 15.4: a host that moves from roam1's LAN to roam2's (both cone NATs) */
HOSTS.roam1a = { name: 'roam1a', ip: '198.18.81.10', router: 'roam1', publicIp: '198.18.0.81', nat: 'cone' }

/* 15.2: an office firewall (cone NAT) that lets out only TCP to ports 80 and 443 */
HOSTS.office1a = { name: 'office1a', ip: '198.18.91.10', router: 'office1', publicIp: '198.18.0.91', nat: 'web-only' }

/* 15.7: two dual-stack hosts (IPv4 behind symmetric NATs, IPv6 routed and open) and
 * an IPv6-only host on the internet bridge (no IPv4 address at all) */
HOSTS.dual1a = { name: 'dual1a', ip: '198.18.101.10', ip6: '2001:db8:101::10', router: 'dual1', publicIp: '198.18.0.101', nat: 'symmetric' }
HOSTS.dual2a = { name: 'dual2a', ip: '198.18.102.10', ip6: '2001:db8:102::10', router: 'dual2', publicIp: '198.18.0.102', nat: 'symmetric' }
HOSTS.v6pub = { name: 'v6pub', ip: '2001:db8::20', ip6: '2001:db8::20', publicIp: '2001:db8::20', nat: 'ipv6-only' }

export const ns = (name: string): string => `${PREFIX}-${name}`

const ROOT = new URL('../../', import.meta.url).pathname
const NODE = process.execPath
const AGENT = join(ROOT, 'test/nat/agent.mjs')
const CLI = join(ROOT, 'dist/bin/parley.js')

/** Per-run scratch space (data dirs) and logs, set by run.sh. */
export const WORK_DIR = process.env.PARLEY_NAT_WORK ?? '/tmp/parley-nat'
export const RESULTS_DIR = process.env.PARLEY_NAT_RESULTS ?? join(ROOT, 'test/nat/results')
export const LOG_DIR = join(RESULTS_DIR, 'logs')
const DEBUG = process.env.PARLEY_NAT_DEBUG ?? 'parley:*,libp2p:circuit-relay*,libp2p:webrtc*,libp2p:dcutr*,libp2p:connection-manager:dial-queue*'

/** Takes the LAN link of a host down or up: the router's end of its veth. */
export function setLink (host: Host, up: boolean): void {
  if (host.router == null) throw new Error(`${host.name} has no LAN link`)
  execFileSync('ip', ['-n', ns(host.router), 'link', 'set', `l-${host.name}`, up ? 'up' : 'down'])
}

/** Packets of `proto` a router's FORWARD rules dropped on the way out of its LAN (lab.sh, kind web-only). */
export function egressDrops (router: string, proto: 'udp' | 'all'): number {
  const out = execFileSync('ip', ['netns', 'exec', ns(router), 'iptables', '-L', 'FORWARD', '-v', '-n', '-x'], { encoding: 'utf8' })
  return out.split('\n')
    .map(l => l.trim().split(/\s+/))
    // iptables names the protocol or gives its number, by version
    .filter(f => f[2] === 'DROP' && (proto === 'udp' ? ['udp', '17'] : ['all', '0']).includes(f[3]) && f[5] === 'br-lan')
    .reduce((sum, f) => sum + Number(f[0]), 0)
}

/** Packets a router's random-loss rules (lab.sh, kind lossy-cone) dropped so far, all ways. */
export function lossDrops (router: string): number {
  const out = execFileSync('ip', ['netns', 'exec', ns(router), 'iptables', '-L', 'FORWARD', '-v', '-n', '-x'], { encoding: 'utf8' })
  return out.split('\n').filter(l => l.includes('statistic mode random')).reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0]), 0)
}

/**
 * Moves a host to another router's LAN, as a laptop carried to another
 * network: its link is pulled from the old LAN (the old address goes with it)
 * and a new one plugged into the new LAN, with address `ip`. Updates `host`.
 */
export function moveHost (host: Host, router: string, ip: string, publicIp: string): void {
  if (host.router == null) throw new Error(`${host.name} has no LAN link`)
  const link = `l-${host.name}`
  execFileSync('ip', ['-n', ns(host.router), 'link', 'del', link])
  execFileSync('ip', ['link', 'add', link, 'netns', ns(router), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(host.name)])
  execFileSync('ip', ['-n', ns(router), 'link', 'set', link, 'master', 'br-lan', 'up'])
  execFileSync('ip', ['-n', ns(host.name), 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
  execFileSync('ip', ['-n', ns(host.name), 'link', 'set', 'eth0', 'up'])
  execFileSync('ip', ['-n', ns(host.name), 'route', 'add', '198.18.0.0/15', 'via', ip.replace(/\.\d+$/, '.1')])
  Object.assign(host, { router, ip, publicIp })
}

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Polls `check` until it returns something other than undefined/false. */
export async function waitUntil<T> (check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

/* ---------- processes in namespaces ---------- */

export interface AgentEvent {
  event: string
  t: number
  [key: string]: any
}

export interface IceSide { type?: string, address?: string, port?: number, transport?: string }

export interface ConnectionInfo {
  peer: string
  remoteAddr: string
  direction: 'inbound' | 'outbound'
  status: string
  limited: boolean
  transport: string
  ice?: {
    selected?: { local?: IceSide, remote?: IceSide }
    localCandidates?: string[]
    remoteCandidates?: string[]
    error?: string
  }
}

export interface AgentStatus {
  peerId: string
  multiaddrs: string[]
  circuits: number
  lastPublished?: number
  /** `node.pathTo(peer)` for the peer asked about; null when not connected. */
  pathTo?: 'direct' | 'relayed' | null
  reservations?: Array<{ relay: string, reserved: boolean, failures: number }>
  connections: ConnectionInfo[]
}

/** The JSON-able part of NodeConfig the agent passes to createNode. */
export interface AgentConfig {
  listen?: string[]
  relays?: string[]
  bootstrap?: string[]
  iceServers?: Array<{ urls: string, username?: string, credential?: string }>
  sendTimeout?: number
  heartbeatInterval?: number
  dataDir?: string
}

/** Every process the lab started, so a failed scenario can still end them all. */
const running = new Set<{ kill(): void }>()

export function killAll (): void {
  for (const p of running) p.kill()
  running.clear()
}

function logStream (label: string): WriteStream {
  mkdirSync(LOG_DIR, { recursive: true })
  return createWriteStream(join(LOG_DIR, `${label}.log`))
}

/** A parley node (test/nat/agent.mjs) on one lab host, driven over stdio. */
export class Agent {
  readonly events: AgentEvent[] = []
  peerId = ''
  private readonly proc: ChildProcess
  private nextRef = 0
  private exited = false

  private constructor (readonly host: Host, readonly label: string, config: AgentConfig) {
    const log = logStream(label)
    const events = createWriteStream(join(LOG_DIR, `${label}.events.jsonl`))
    this.proc = spawn('ip', ['netns', 'exec', ns(host.name), NODE, AGENT, JSON.stringify(config)], {
      cwd: ROOT,
      env: { ...process.env, DEBUG },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    this.proc.stderr?.pipe(log)
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      events.write(line + '\n')
      try {
        this.events.push(JSON.parse(line))
      } catch {
        this.events.push({ event: 'garbage', t: Date.now(), line })
      }
    })
    this.proc.on('exit', (code, signal) => {
      this.exited = true
      this.events.push({ event: 'exit', t: Date.now(), code, signal })
      running.delete(this)
    })
    running.add(this)
  }

  /** Starts a node on `host` and resolves once it holds `circuits` relay reservations and published its record. */
  static async start (host: Host, label: string, config: AgentConfig, options: { circuits?: number, timeout?: number } = {}): Promise<Agent> {
    const agent = new Agent(host, label, config)
    const ready = await waitUntil(() => agent.find(e => e.event === 'ready' || e.event === 'error' || e.event === 'exit'), options.timeout ?? 30_000, `${label} to start`)
    if (ready.event !== 'ready') {
      throw new Error(`${label} did not start: ${JSON.stringify(ready)}`)
    }
    agent.peerId = ready.peerId
    const circuits = options.circuits ?? (config.relays?.length ?? 0)
    if (circuits > 0) {
      await waitUntil(async () => {
        const s = await agent.status()
        return s.circuits >= circuits && s.lastPublished != null
      }, options.timeout ?? 30_000, `${label} to hold a reservation and publish its peer record`, 250)
    }
    return agent
  }

  find (check: (e: AgentEvent) => boolean, after = 0): AgentEvent | undefined {
    return this.events.find(e => e.t >= after && check(e))
  }

  filter (check: (e: AgentEvent) => boolean): AgentEvent[] {
    return this.events.filter(check)
  }

  private command (cmd: Record<string, unknown>): string {
    const ref = `${this.label}-${++this.nextRef}`
    if (this.exited) throw new Error(`${this.label} has exited`)
    this.proc.stdin?.write(JSON.stringify({ ...cmd, ref }) + '\n')
    return ref
  }

  async status (peer?: Agent): Promise<AgentStatus> {
    const ref = this.command({ op: 'status', peer: peer?.peerId })
    const event = await waitUntil(() => this.find(e => e.ref === ref), 10_000, `${this.label} status`, 20)
    return event as unknown as AgentStatus
  }

  /** Sends a message; resolves with the `sent` or `send-failed` event. */
  async send (to: Agent, body: string, timeout?: number): Promise<AgentEvent> {
    const ref = this.command({ op: 'send', to: to.peerId, body, timeout })
    return waitUntil(() => this.find(e => e.ref === ref && (e.event === 'sent' || e.event === 'send-failed' || e.event === 'error')), (timeout ?? 60_000) + 30_000, `${this.label} send "${body}"`, 20)
  }

  /** Messages this node received from `from`. */
  messagesFrom (from: Agent): AgentEvent[] {
    return this.filter(e => e.event === 'message' && e.from === from.peerId)
  }

  /** The open connections to `peer` right now. */
  async connectionsTo (peer: Agent): Promise<ConnectionInfo[]> {
    return (await this.status()).connections.filter(c => c.peer === peer.peerId && c.status === 'open')
  }

  /** What the node itself reports as its path to `peer` (`node.pathTo`). */
  async pathTo (peer: Agent): Promise<'direct' | 'relayed' | null | undefined> {
    return (await this.status(peer)).pathTo
  }

  async stop (): Promise<void> {
    if (this.exited) return
    try {
      this.proc.stdin?.write(JSON.stringify({ op: 'stop' }) + '\n')
      await waitUntil(() => this.exited, 10_000, `${this.label} to stop`)
    } catch {
      this.kill()
    }
  }

  kill (): void {
    if (!this.exited) this.proc.kill('SIGKILL')
  }
}

/** The parley relay, a `parley relay` process in the internet namespace. */
export class Relay {
  peerId = ''
  private proc?: ChildProcess
  private starts = 0

  constructor (private readonly dataDir: string) {}

  get multiaddr (): string {
    return `/ip4/${RELAY_IP}/tcp/4001/p2p/${this.peerId}`
  }

  /** WebSockets on port 443, what a firewall that lets out only web traffic lets through (15.2). */
  get webMultiaddr (): string {
    return `/ip4/${RELAY_IP}/tcp/443/ws/p2p/${this.peerId}`
  }

  /** Its IPv6 address (15.7). */
  get multiaddr6 (): string {
    return `/ip6/${RELAY_IP6}/tcp/4001/p2p/${this.peerId}`
  }

  get running (): boolean {
    return this.proc != null && this.proc.exitCode == null && this.proc.signalCode == null
  }

  async start (): Promise<void> {
    const log = logStream(`relay-${++this.starts}`)
    const proc = spawn('ip', ['netns', 'exec', ns('inet'), NODE, CLI, 'relay',
      '--listen', `/ip4/${RELAY_IP}/tcp/4001`, '--listen', `/ip4/${RELAY_IP}/tcp/4002/ws`,
      '--listen', `/ip4/${RELAY_IP}/tcp/443/ws`, '--listen', `/ip6/${RELAY_IP6}/tcp/4001`,
      // ten hosts behind one NAT (15.6 with PARLEY_NAT_MANY=10) share one address, and every
      // NAT of the lab sits in one /24: the defaults (8 reservations and 32 circuits per IP,
      // 32 and 128 per /24) would refuse some of them, as they would an office behind one NAT
      ...(MANY_PER_LAN > 8 ? ['--max-reservations-per-ip', '16', '--max-circuits-per-ip', '128', '--max-reservations-per-subnet', '64', '--max-circuits-per-subnet', '256'] : []),
      '--data-dir', this.dataDir], { cwd: ROOT, env: { ...process.env, DEBUG: 'parley:*,libp2p:circuit-relay*' }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    const handle = { kill: () => { if (proc.exitCode == null) proc.kill('SIGKILL') } }
    running.add(handle)
    proc.on('exit', () => running.delete(handle))
    proc.stderr?.pipe(log)
    let id: string | undefined
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      log.write(`[stdout] ${line}\n`)
      const match = /relay peer ID: (\S+)/.exec(line)
      if (match != null) id = match[1]
    })
    this.peerId = await waitUntil(() => id ?? (proc.exitCode != null ? Promise.reject(new Error('the relay exited at start')) : undefined), 30_000, 'the relay to start')
  }

  /** Stops the relay: SIGTERM lets it close cleanly, SIGKILL is a crash. */
  async stop (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const proc = this.proc
    if (proc == null || !this.running) return
    proc.kill(signal)
    await waitUntil(() => proc.exitCode != null || proc.signalCode != null, 15_000, 'the relay to exit')
  }
}

/* ---------- results ---------- */

export interface Row {
  scenario: string
  nat: string
  path: string
  firstDeliveryMs?: number
  toDirectMs?: number
  sent: number
  delivered: number
  duplicated: number
  result: 'pass' | 'FAIL' | 'known failure'
  /** What happened, for people: shown under the table. */
  notes: string[]
  /** Checks that failed. */
  failures: string[]
  /** Checks that failed for a reason listed as known (see KNOWN_FAILURES). */
  known: string[]
}

const ms = (v?: number): string => v == null ? '—' : v < 10_000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(1)} s`

export function table (rows: Row[]): string {
  const head = ['scenario', 'NAT kinds', 'path achieved', 'first delivery', 'first message → direct', 'sent / delivered / duplicated', 'result']
  const lines = rows.map(r => [r.scenario, r.nat, r.path, ms(r.firstDeliveryMs), ms(r.toDirectMs), `${r.sent} / ${r.delivered} / ${r.duplicated}`, r.result])
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...lines.map(l => `| ${l.join(' | ')} |`)]
  const notes = rows.flatMap(r => [
    ...r.notes.map(n => `- ${r.scenario.split(' ')[0]} ${n}`),
    ...r.known.map(n => `- ${r.scenario.split(' ')[0]} KNOWN FAILURE: ${n}`),
    ...r.failures.map(n => `- ${r.scenario.split(' ')[0]} FAILED: ${n}`)
  ])
  return [...out, ...(notes.length > 0 ? ['', ...notes] : [])].join('\n')
}

export function writeResults (rows: Row[]): string {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const md = table(rows)
  const mode = process.env.PARLEY_NAT_UNROUTABLE === 'reject' ? 'refused at once (PARLEY_NAT_UNROUTABLE=reject)' : 'dropped silently, as on the internet'
  writeFileSync(join(RESULTS_DIR, 'latest.md'), `NAT lab, ${new Date().toISOString()}; packets to another LAN's private address: ${mode}\n\n${md}\n`)
  writeFileSync(join(RESULTS_DIR, 'latest.json'), JSON.stringify({ at: new Date().toISOString(), rows }, null, 2) + '\n')
  return md
}
