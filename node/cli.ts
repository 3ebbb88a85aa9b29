import { Command, InvalidArgumentError } from 'commander'
import { collect, stopOnSignals } from '../common/cli.js'
import { ApiClient } from './api/client.js'
import { runChat } from './chat.js'
import { defaultDataDir } from './daemon-config.js'
import { clock, historyLine, shortPeer } from './format.js'
import type { HistoryEntry } from './node.js'

/** Exit codes of `parley send`: delivered, error, still queued after --wait. */
const EXIT_QUEUED = 2

function positiveNumber (value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number >= 0')
  return n
}

function positiveInt (value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number >= 1')
  return n
}

function dataDirOf (command: Command): string {
  const opts = command.optsWithGlobals() as { dataDir?: string }
  return opts.dataDir ?? defaultDataDir()
}

async function clientOf (command: Command): Promise<ApiClient> {
  return ApiClient.forDataDir(dataDirOf(command))
}

function print (json: boolean, value: unknown, human: () => string): void {
  console.log(json ? JSON.stringify(value) : human())
}

/** The user-facing commands that talk to a running daemon, plus `init` and `node` that run one. */
export function nodeCommands (program: Command): void {
  program.option('--data-dir <dir>', 'the node\'s data dir (env PARLEY_HOME; default ~/.local/share/parley)')

  program.command('init')
    .description('create the data dir, identity and a config file with the defaults')
    .action(async (_opts, command: Command) => {
      const dataDir = dataDirOf(command)
      const { initDataDir } = await import('./daemon.js')
      const { created } = await initDataDir(dataDir)
      console.log(`${created ? 'initialised' : 'already initialised:'} ${dataDir}`)
    })

  program.command('node')
    .description('run your parley node in the foreground (the daemon the other commands talk to)')
    .option('--listen <multiaddr>', 'address to listen on, repeatable (env PARLEY_LISTEN)', collect)
    .option('--announce <multiaddr>', 'address to announce instead, repeatable (env PARLEY_ANNOUNCE)', collect)
    .option('--relay <multiaddr>', 'relay to hold a reservation on, repeatable (env PARLEY_RELAYS)', collect)
    .option('--bootstrap <multiaddr>', 'DHT bootstrap peer, repeatable (env PARLEY_BOOTSTRAP); default: the relays', collect)
    .option('--ice-servers <json>', 'STUN/TURN servers for WebRTC, a JSON array of RTCIceServer (env PARLEY_ICE_SERVERS)')
    .option('--ice-bind-address <ip>', 'local IP address WebRTC uses, the only one it offers peers (env PARLEY_ICE_BIND_ADDRESS); default: every interface')
    .option('--api-port <n>', 'port of the local API on 127.0.0.1, 0 for any (env PARLEY_API_PORT)')
    .addHelpText('after', '\nSettings: defaults < <data dir>/config.json < PARLEY_* environment < flags.')
    .action(async (flags, command: Command) => {
      const dataDir = dataDirOf(command)
      // loaded here: the commands that only talk to a daemon need none of libp2p
      const { startDaemon } = await import('./daemon.js')
      const daemon = await startDaemon(dataDir, flags)
      const { node } = daemon
      // handlers first: a supervisor may signal as soon as the first line appears
      stopOnSignals('parley node', daemon)
      console.log(`peer ID: ${node.peerId.toString()}`)
      console.log(`data dir: ${dataDir}`)
      console.log(`API: ${daemon.api.url} (token in ${dataDir}/api.json)`)
      let printed = ''
      const printAddrs = (): void => {
        const addrs = node.multiaddrs.map(a => a.toString())
        if (addrs.length === 0 || addrs.join() === printed) return
        printed = addrs.join()
        console.log('reachable at:')
        for (const addr of addrs) console.log(`  ${addr}`)
      }
      printAddrs()
      node.libp2p.addEventListener('self:peer:update', printAddrs)
      node.addEventListener('message', (evt) => {
        console.log(`[${clock(evt.detail.receivedAt)}] message from ${evt.detail.from} (${evt.detail.path})`)
      })
      node.addEventListener('path:change', (evt) => {
        const { peer, path, transport } = evt.detail
        console.log(path == null ? `${peer}: disconnected` : `${peer}: path now ${path} (${transport ?? 'unknown'})`)
      })
    })

  program.command('id')
    .description('print this node\'s peer ID and addresses')
    .option('--json', 'as JSON: {"peerId", "addrs"}')
    .action(async (opts, command: Command) => {
      const id = await (await clientOf(command)).get('/v1/id')
      print(opts.json === true, id, () => [id.peerId, ...id.addrs.map((a: string) => `  ${a}`)].join('\n'))
    })

  program.command('send')
    .description('send a message; exit 0 when delivered, 2 when still queued after --wait, 1 on error')
    .argument('<peer>', 'peer ID or contact name')
    .argument('<text>', 'the message')
    .option('--wait <seconds>', 'how long to wait for the recipient\'s ack', positiveNumber, 30)
    .option('--json', 'print {"id","status","path"}')
    .action(async (peer: string, text: string, opts, command: Command) => {
      const client = await clientOf(command)
      const { status, body } = await client.request('POST', '/v1/messages', { to: peer, body: text, wait: opts.wait })
      const result = { id: body.id, status: body.status, path: body.path }
      if (status === 422) {
        print(opts.json === true, { ...result, reason: body.message }, () => `not delivered: ${body.message as string}`)
        process.exitCode = 1
        return
      }
      print(opts.json === true, result, () => body.status === 'delivered'
        ? `delivered (${body.path as string}) ${body.id as string}`
        : `queued ${body.id as string}: not acknowledged within ${opts.wait as number} s; the daemon keeps trying`)
      if (body.status !== 'delivered') process.exitCode = EXIT_QUEUED
    })

  program.command('history')
    .description('the conversation with a peer, oldest first')
    .argument('<peer>', 'peer ID or contact name')
    .option('--limit <n>', 'at most this many (the newest)', positiveInt, 50)
    .option('--json', 'as a JSON array')
    .action(async (peer: string, opts, command: Command) => {
      const client = await clientOf(command)
      const entries: HistoryEntry[] = await client.get(`/v1/history/${encodeURIComponent(peer)}?limit=${opts.limit as number}`)
      print(opts.json === true, entries, () => entries.length === 0 ? '(no messages yet)' : entries.map(m => historyLine(m)).join('\n'))
    })

  program.command('watch')
    .description('print incoming messages and events as they happen')
    .option('--json', 'one JSON object a line: {"event", ...data}')
    .action(async (opts, command: Command) => {
      const client = await clientOf(command)
      const controller = new AbortController()
      process.once('SIGINT', () => { controller.abort() })
      process.once('SIGTERM', () => { controller.abort() })
      for await (const { event, data } of client.events(controller.signal)) {
        if (opts.json === true) {
          console.log(JSON.stringify({ event, ...data }))
        } else if (event === 'message') {
          console.log(`[${clock(data.receivedAt)}] ${data.from as string} (${data.path as string}): ${data.body as string}`)
        } else if (event === 'status') {
          console.log(`[${clock(Date.now())}] message ${data.id as string} to ${shortPeer(data.peer)}: ${data.status as string}${data.path != null ? ` (${data.path as string})` : ''}`)
        } else if (event === 'path') {
          console.log(`[${clock(Date.now())}] ${data.peer as string}: ${data.path == null ? 'disconnected' : `path now ${data.path as string}`}`)
        }
      }
    })

  program.command('chat')
    .description('an interactive chat with a peer: history, live messages, delivery ticks and the path')
    .argument('<peer>', 'peer ID or contact name')
    .action(async (peer: string, _opts, command: Command) => {
      await runChat(await clientOf(command), peer)
    })

  program.command('peers')
    .description('connected peers and how each is reached')
    .option('--json', 'as a JSON array of {peerId, path, transport, remoteAddr, rtt}')
    .action(async (opts, command: Command) => {
      const peers = await (await clientOf(command)).get('/v1/peers')
      print(opts.json === true, peers, () => peers.length === 0
        ? '(no connected peers)'
        : peers.map((p: any) => `${p.peerId as string}  ${p.path as string}  ${p.transport as string}  ${p.rtt != null ? `${p.rtt as number} ms` : ''}\n    ${p.remoteAddr as string}`).join('\n'))
    })

  program.command('status')
    .description('reachability, relay reservations, DHT peers, outbox size')
    .option('--json', 'as JSON')
    .action(async (opts, command: Command) => {
      const s = await (await clientOf(command)).get('/v1/status')
      print(opts.json === true, s, () => [
        `peer ID: ${s.peerId as string}`,
        `reachable at: ${s.addrs.length === 0 ? '(nowhere yet)' : ''}`,
        ...s.addrs.map((a: string) => `  ${a}`),
        `relays: ${s.relays.length === 0 ? '(none configured)' : ''}`,
        ...s.relays.map((r: any) => `  ${r.reserved === true ? 'reserved' : 'NOT reserved'}  ${r.relay as string}`),
        `connections: ${s.connections as number}   DHT peers: ${s.dhtPeers as number}   outbox: ${s.outbox as number}`
      ].join('\n'))
    })

  const contacts = program.command('contacts').description('names for peers')
  contacts.command('add')
    .description('add a contact from a peer ID or an invite (then `send <name>` works without a DHT lookup)')
    .argument('<name>')
    .argument('<peer>', 'peer ID or invite (parley:…)')
    .action(async (name: string, peer: string, _opts, command: Command) => {
      const added = (await (await clientOf(command)).request('POST', '/v1/contacts', { name, peer })).body
      console.log(`added ${added.name as string}: ${added.peerId as string}${added.addrs.length > 0 ? ` (${added.addrs.length as number} addresses)` : ''}`)
    })
  contacts.command('ls')
    .description('list contacts')
    .option('--json', 'as JSON')
    .action(async (opts, command: Command) => {
      const list = await (await clientOf(command)).get('/v1/contacts')
      print(opts.json === true, list, () => list.length === 0 ? '(no contacts)' : list.map((c: any) => `${c.name as string}  ${c.peerId as string}`).join('\n'))
    })
  contacts.command('rm')
    .description('remove a contact')
    .argument('<name>')
    .action(async (name: string, _opts, command: Command) => {
      await (await clientOf(command)).request('DELETE', `/v1/contacts/${encodeURIComponent(name)}`)
      console.log(`removed ${name}`)
    })

  program.command('invite')
    .description('print a one-line invite (peer ID and addresses) for a friend\'s `contacts add`')
    .action(async (_opts, command: Command) => {
      console.log((await (await clientOf(command)).get('/v1/invite')).invite)
    })
}
