import { Command, InvalidArgumentError } from 'commander'
import { collect, stopOnSignals } from '../common/cli.js'
import { ApiClient, ApiError } from './client.js'
import { runChat } from './chat.js'
import { backupCommands } from './backup.js'
import { defaultDataDir } from '../daemon/config.js'
import { bytes, clock, contentTypeNote, count, date, historyLine, shortPeer, terminalSafe } from './format.js'
import type { MessageRequest } from '../node/types.js'

/** `parley send` exits 0 when delivered, 1 on an error, and this when the message is still queued after --wait. */
const EXIT_QUEUED = 2

function nonNegativeNumber (value: string): number {
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

/** A string from the daemon, on one line and safe for a terminal (see terminalSafe). */
function safe (text: unknown): string {
  return terminalSafe(String(text ?? ''), { indent: false })
}

/** The message requests as a table, previews cut to one terminal-safe line. */
function requestsTable (list: MessageRequest[]): string {
  if (list.length === 0) return '(no message requests)'
  const rows = list.map(r => {
    const preview = terminalSafe(r.preview, { indent: false })
    return [r.peerId, String(r.messages), bytes(r.bytes), date(r.lastAt), preview.length > 60 ? `${preview.slice(0, 59)}…` : preview]
  })
  const header = ['PEER', 'MSGS', 'SIZE', 'LAST', 'PREVIEW']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join('  ')
  return [
    line(header),
    ...rows.map(line),
    '',
    'accept: parley requests accept <peer> [--name <name>]   decline: parley requests decline <peer>   block: parley block <peer>'
  ].join('\n')
}

/** The user-facing commands that talk to a running daemon, plus `init` and `node` that run one. */
export function nodeCommands (program: Command): void {
  program.option('--data-dir <dir>', 'the node\'s data dir (env PARLEY_HOME; default ~/.local/share/parley)')

  program.command('init')
    .description('create the data dir, identity and a config file with the defaults')
    .action(async (_opts, command: Command) => {
      const dataDir = dataDirOf(command)
      const { initDataDir } = await import('../daemon/daemon.js')
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
      const { startDaemon } = await import('../daemon/daemon.js')
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
        console.log(`[${clock(evt.detail.receivedAt)}] message from ${evt.detail.from}${evt.detail.request === true ? ' (request)' : ''} (${evt.detail.path})`)
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
      const id = await (await clientOf(command)).id()
      print(opts.json === true, id, () => [safe(id.peerId), ...id.addrs.map(a => `  ${safe(a)}`)].join('\n'))
    })

  program.command('send')
    .description('send a message; exit 0 when delivered, 2 when still queued after --wait, 1 on error')
    .argument('<peer>', 'peer ID or contact name')
    .argument('<text>', 'the message')
    .option('--wait <seconds>', 'how long to wait for the recipient\'s ack', nonNegativeNumber, 30)
    .option('--json', 'print {"id","status","path"}')
    .action(async (peer: string, text: string, opts, command: Command) => {
      const client = await clientOf(command)
      const answer = await client.send({ to: peer, body: text, wait: opts.wait })
      const { body } = answer
      // only a receipt (200) has a path
      const path = 'path' in body ? body.path : undefined
      const result = { id: body.id, status: body.status, path }
      if (answer.status === 422) {
        print(opts.json === true, { ...result, reason: answer.body.message }, () => `not delivered: ${safe(answer.body.message)}`)
        process.exitCode = 1
        return
      }
      print(opts.json === true, result, () => body.status === 'delivered'
        ? `delivered (${String(path)}) ${body.id}`
        : `queued ${body.id}: not acknowledged within ${opts.wait as number} s; the daemon keeps trying`)
      if (body.status !== 'delivered') process.exitCode = EXIT_QUEUED
    })

  program.command('history')
    .description('the conversation with a peer, oldest first')
    .argument('<peer>', 'peer ID or contact name')
    .option('--limit <n>', 'at most this many (the newest)', positiveInt, 50)
    .option('--json', 'as a JSON array')
    .action(async (peer: string, opts, command: Command) => {
      const client = await clientOf(command)
      const entries = await client.history(peer, { limit: opts.limit })
      print(opts.json === true, entries, () => entries.length === 0 ? '(no messages yet)' : entries.map(m => historyLine(m)).join('\n'))
    })

  program.command('watch')
    .description('print incoming messages and events as they happen; a stranger\'s message is marked (request)')
    .option('--json', 'one JSON object a line: {"event", ...data}')
    .addHelpText('after', '\nA watch that stops reading (a suspended terminal) is dropped by the daemon once over 1 MiB behind: it gets an\n"overflow" event and exits 1; what it missed is in `parley history`.')
    .action(async (opts, command: Command) => {
      const client = await clientOf(command)
      const controller = new AbortController()
      process.once('SIGINT', () => { controller.abort() })
      process.once('SIGTERM', () => { controller.abort() })
      for await (const { event, data } of client.events(controller.signal)) {
        if (opts.json === true) {
          console.log(JSON.stringify({ event, ...data }))
        } else if (event === 'ready') {
          console.log(`watching ${safe(data.peerId)} (Ctrl-C to stop)`)
        } else if (event === 'message') {
          console.log(`[${clock(data.receivedAt)}] ${safe(data.from)}${data.request === true ? ' (request)' : ''} (${safe(data.path)}): ${terminalSafe(data.body)}${contentTypeNote(data.contentType)}`)
        } else if (event === 'status') {
          console.log(`[${clock(Date.now())}] message ${safe(data.id)} to ${safe(shortPeer(data.peer))}: ${safe(data.status)}${data.path != null ? ` (${safe(data.path)})` : ''}${data.status === 'failed' && data.reason != null ? `: ${safe(data.reason)}` : ''}`)
        } else if (event === 'path') {
          console.log(`[${clock(Date.now())}] ${safe(data.peer)}: ${data.path == null ? 'disconnected' : `path now ${safe(data.path)}`}`)
        }
        if (event === 'overflow') {
          console.error(`parley: ${safe(data.message)}`)
          process.exitCode = 1
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
      const peers = await (await clientOf(command)).peers()
      print(opts.json === true, peers, () => peers.length === 0
        ? '(no connected peers)'
        : peers.map(p => `${safe(p.peerId)}  ${safe(p.path)}  ${safe(p.transport)}  ${p.rtt != null ? `${Number(p.rtt)} ms` : ''}\n    ${safe(p.remoteAddr)}`).join('\n'))
    })

  program.command('status')
    .description('reachability, relay reservations, DHT peers, outbox size, storage, message requests')
    .option('--json', 'as JSON')
    .action(async (opts, command: Command) => {
      const s = await (await clientOf(command)).status()
      print(opts.json === true, s, () => [
        ...(s.storage.full ? ['STORAGE FULL: the message store is at its limit; incoming messages are refused and sending fails until room is made'] : []),
        `peer ID: ${s.peerId}`,
        `reachable at: ${s.addrs.length === 0 ? '(nowhere yet)' : ''}`,
        ...s.addrs.map(a => `  ${safe(a)}`),
        `relays: ${s.relays.length === 0 ? '(none configured)' : ''}`,
        ...s.relays.map(r => `  ${r.reserved ? 'reserved' : 'NOT reserved'}  ${safe(r.relay)}`),
        `connections: ${s.connections}   DHT peers: ${s.dhtPeers}   outbox: ${s.outbox}`,
        `storage: ${bytes(s.storage.usedBytes)} of ${bytes(s.storage.limitBytes)} (${Math.floor(100 * s.storage.usedBytes / Math.max(1, s.storage.limitBytes))}%)${s.storage.full ? ' FULL' : ''}`,
        `message requests: ${s.requests}${s.requests > 0 ? ' (see `parley requests`)' : ''}   blocked: ${s.blocked}`
      ].join('\n'))
    })

  const contacts = program.command('contacts').description('names for peers')
  contacts.command('add')
    .description('add a contact from a peer ID or an invite (then `send <name>` works without a DHT lookup); it also accepts the peer\'s message request')
    .argument('<name>')
    .argument('<peer>', 'peer ID or invite (parley:…)')
    .option('--replace', 'if the name is another peer\'s contact, point it at this peer instead')
    .action(async (name: string, peer: string, opts, command: Command) => {
      const client = await clientOf(command)
      let added
      try {
        added = await client.addContact(name, peer, { replace: opts.replace === true })
      } catch (err) {
        if (err instanceof ApiError && err.code === 'ContactExistsError') {
          const current = (await client.contacts().catch(() => [])).find(c => c.name === name)
          throw new Error(`"${safe(name)}" is already the contact for ${current?.peerId ?? 'another peer'}; nothing changed. To point it at the new peer instead, run again with --replace: parley contacts add --replace "${safe(name)}" <peer>`)
        }
        throw err
      }
      console.log(`added ${safe(added.name)}: ${added.peerId}${added.addrs.length > 0 ? ` (${added.addrs.length} addresses)` : ''}`)
    })
  contacts.command('ls')
    .description('list contacts')
    .option('--json', 'as JSON')
    .action(async (opts, command: Command) => {
      const list = await (await clientOf(command)).contacts()
      print(opts.json === true, list, () => list.length === 0 ? '(no contacts)' : list.map(c => `${safe(c.name)}  ${safe(c.peerId)}`).join('\n'))
    })
  contacts.command('rm')
    .description('remove a contact')
    .argument('<name>')
    .action(async (name: string, _opts, command: Command) => {
      await (await clientOf(command)).removeContact(name)
      console.log(`removed ${safe(name)}`)
    })

  const requests = program.command('requests')
    .description('message requests: strangers\' messages waiting for you to accept, decline or block them (`parley requests` lists them)')
  requests.command('ls', { isDefault: true })
    .description('list the message requests (the default)')
    .option('--json', 'as a JSON array of {peerId, messages, bytes, firstAt, lastAt, preview}')
    .action(async (opts, command: Command) => {
      const list = await (await clientOf(command)).requests()
      print(opts.json === true, list, () => requestsTable(list))
    })
  requests.command('accept')
    .description('accept a stranger\'s messages: they join your history and the stranger may write freely')
    .argument('<peer>', 'peer ID')
    .option('--name <name>', 'also add the peer as a contact with this name')
    .option('--json', 'print {"peerId", "accepted", "contact"?}')
    .action(async (peer: string, opts, command: Command) => {
      const result = await (await clientOf(command)).acceptRequest(peer, { name: opts.name })
      print(opts.json === true, result, () => `accepted ${count(result.accepted, 'message')} from ${result.peerId}${result.contact != null ? `; added contact ${safe(result.contact.name)}` : ''}`)
    })
  requests.command('decline')
    .description('decline a message request: its messages are deleted (the stranger may write again; `parley block` stops that)')
    .argument('<peer>', 'peer ID')
    .option('--json', 'print {"peerId", "deleted"}')
    .action(async (peer: string, opts, command: Command) => {
      const result = await (await clientOf(command)).declineRequest(peer)
      print(opts.json === true, result, () => `declined ${result.peerId}: deleted ${count(result.deleted, 'message')}`)
    })

  program.command('block')
    .description('block a peer: its waiting requests are deleted and what it sends later is refused (answered BLOCKED)')
    .argument('<peer>', 'peer ID or contact name')
    .option('--json', 'print {"peerId", "deleted"}')
    .action(async (peer: string, opts, command: Command) => {
      const result = await (await clientOf(command)).block(peer)
      print(opts.json === true, result, () => `blocked ${result.peerId}${result.deleted > 0 ? `; deleted ${count(result.deleted, 'waiting message')}` : ''}`)
    })
  program.command('unblock')
    .description('lift a block')
    .argument('<peer>', 'peer ID or contact name')
    .action(async (peer: string, _opts, command: Command) => {
      await (await clientOf(command)).unblock(peer)
      console.log(`unblocked ${safe(peer)}`)
    })
  program.command('blocked')
    .description('list blocked peers')
    .option('--json', 'as a JSON array of {peerId, since, name?}')
    .action(async (opts, command: Command) => {
      const list = await (await clientOf(command)).blocked()
      print(opts.json === true, list, () => list.length === 0
        ? '(nobody is blocked)'
        : list.map(b => `${b.peerId}  since ${date(b.since)}${b.name != null ? `  (${safe(b.name)})` : ''}`).join('\n'))
    })

  program.command('invite')
    .description('print a one-line invite (peer ID and addresses) for a friend\'s `contacts add`')
    .action(async (_opts, command: Command) => {
      console.log((await (await clientOf(command)).invite()).invite)
    })

  backupCommands(program)
}
