import { Command, InvalidArgumentError } from 'commander'
import { collect, stopOnSignals } from '../common/cli.js'
import { ApiClient, ApiError } from './client.js'
import { runChat } from './chat.js'
import { groupCommands, groupTarget, runGroupChat } from './group.js'
import { reportReachability } from './relays.js'
import { backupCommands } from './backup.js'
import { fileCommands } from './files.js'
import { defaultDataDir } from '../daemon/config.js'
import { checkBodySize, readBody } from './body-input.js'
import { bytes, clock, contactNames, contentTypeNote, conversationsTable, count, date, historyLine, outboxTable, peerLabel, mailboxLines, reachabilityLines, terminalSafe } from './format.js'
import { isBlankMessage, peerKind, timeArgument } from './input.js'
import { liveEvents } from './live-events.js'
import { MAX_BODY_BYTES } from '../protocols/im/constants.js'
import type { HistoryEntry, MessageRequest } from '../node/types.js'

/** `parley send` exits 0 when delivered or stored in the recipient's mailbox, 1 on an error, and this when the message is still queued after --wait. */
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

/** ` --data-dir <dir>` when the command was given one, so that a command printed for the user runs against the same node. */
function dataDirFlag (command: Command): string {
  const { dataDir } = command.optsWithGlobals() as { dataDir?: string }
  if (dataDir == null) return ''
  return ` --data-dir ${/^[\w@%+=:,./-]+$/.test(dataDir) ? dataDir : `'${dataDir.replaceAll("'", "'\\''")}'`}`
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

/**
 * Opening a conversation reads it, as in most messengers: `history` and
 * `chat` move the read mark up to the last message they show (unless
 * `--keep-unread`). Only what was shown: a message arriving meanwhile stays unread.
 */
async function markShownRead (client: ApiClient, peer: string, shown: HistoryEntry[], keepUnread: boolean): Promise<void> {
  const last = shown.at(-1)
  if (keepUnread || last == null) return
  await client.markRead(peer, { upTo: last.id })
}

/** A help text's examples section, one command a line. */
function examples (...lines: string[]): string {
  return `\nExamples:\n${lines.map(l => `  ${l}`).join('\n')}`
}

const SEND_STDIN_HELP = `
A long message (up to ${MAX_BODY_BYTES} bytes of UTF-8) can come from stdin; one trailing newline is dropped:
  parley send bob - < letter.txt
  echo "hello" | parley send bob`

/**
 * The body of \`parley send\`: the argument, or stdin for \`-\` or for no
 * argument when stdin is not a terminal (a pipe or a file), read with a bound.
 */
async function bodyOf (argument: string | undefined): Promise<string> {
  if (argument != null && argument !== '-') {
    checkBodySize(argument)
    return argument
  }
  if (argument == null && process.stdin.isTTY) {
    throw new Error('no message given: pass it as an argument, or pipe it in (`parley send <peer> - < file`)')
  }
  const body = await readBody(process.stdin)
  if (body === '') throw new Error('the message on stdin is empty; nothing was sent')
  return body
}

/** The user-facing commands that talk to a running daemon, plus `init` and `node` that run one. */
export function nodeCommands (program: Command): void {
  program.option('--data-dir <dir>', 'the node\'s data dir (env PARLEY_HOME; default ~/.local/share/parley)')
  // --data-dir goes before or after the command: every command's --help lists it
  program.configureHelp({ showGlobalOptions: true })

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
    .option('--mailbox <multiaddr>', 'relay that keeps your mailbox while you are offline, repeatable (env PARLEY_MAILBOXES); default: your relays', collect)
    .option('--bootstrap <multiaddr>', 'DHT bootstrap peer, repeatable (env PARLEY_BOOTSTRAP); default: the relays', collect)
    .option('--ice-servers <json>', 'STUN/TURN servers for WebRTC, a JSON array of RTCIceServer (env PARLEY_ICE_SERVERS)')
    .option('--ice-bind-address <ip>', 'local IP address WebRTC uses, the only one it offers peers (env PARLEY_ICE_BIND_ADDRESS); default: every interface')
    .option('--api-port <n>', 'port of the local API on 127.0.0.1, 0 for any (env PARLEY_API_PORT)')
    .addHelpText('after', '\nSettings: defaults < <data dir>/config.json < PARLEY_* environment < flags.')
    .addHelpText('after', examples(
      'parley node --relay /dns4/relay.example.org/tcp/4001/p2p/12D3KooW…',
      'parley --data-dir /tmp/alice node --listen /ip4/0.0.0.0/tcp/4002',
      'PARLEY_HOME=/tmp/bob parley node --api-port 7070'))
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
      // no login link here: logs outlive two minutes, and `parley open` makes a fresh one
      console.log(`web app: run \`parley${dataDirFlag(command)} open\` to open it in your browser`)
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
      await reportReachability(node, dataDir, flags.relay)
      node.addEventListener('message', (evt) => {
        console.log(`[${clock(evt.detail.receivedAt)}] message from ${evt.detail.from}${evt.detail.request === true ? ' (request)' : ''} (${evt.detail.path})`)
      })
      node.addEventListener('path:change', (evt) => {
        const { peer, path, transport } = evt.detail
        console.log(path == null ? `${peer}: disconnected` : `${peer}: path now ${path} (${transport ?? 'unknown'})`)
      })
    })

  program.command('open')
    .description('open the web app in your browser, logged in with a one-time link')
    .option('--print-url', 'print the one-time login URL instead (scripts, SSH port forwarding); it works once, for 2 minutes')
    .addHelpText('after', examples(
      'parley open',
      'parley open --print-url',
      'PARLEY_BROWSER=firefox parley open'))
    .action(async (opts, command: Command) => {
      const { url } = await (await clientOf(command)).loginLink()
      if (opts.printUrl === true) {
        console.log(url)
        return
      }
      const { openInBrowser } = await import('./browser.js')
      const failure = await openInBrowser(url)
      if (failure == null) {
        console.log('opened the web app in your browser')
        return
      }
      console.error(`could not open a browser: ${failure}; open this link in one within 2 minutes (it works once):`)
      console.log(url)
    })

  program.command('id')
    .description('print this node\'s peer ID and addresses')
    .option('--json', 'as JSON: {"peerId", "addrs"}')
    .action(async (opts, command: Command) => {
      const id = await (await clientOf(command)).id()
      print(opts.json === true, id, () => [safe(id.peerId), ...id.addrs.map(a => `  ${safe(a)}`)].join('\n'))
    })

  program.command('send')
    .description('send a message; exit 0 when delivered (or stored in the recipient\'s mailbox while they are offline), 2 when still queued after --wait, 1 on error')
    .argument('<peer>', 'peer ID or contact name')
    .argument('[text]', 'the message; `-` (or none, with stdin not a terminal) reads it from stdin')
    .option('--wait <seconds>', 'how long to wait for the recipient\'s ack', nonNegativeNumber, 30)
    .option('--json', 'print {"id","status","path"}; an error as {"error":{"name","message"}}')
    .addHelpText('after', examples(
      'parley send bob "hello"              # bob: a contact name',
      'parley send 12D3KooW… "hi" --wait 0  # queue it and return at once',
      'parley send bob "ok?" --json         # {"id":"…","status":"delivered","path":"direct"}'))
    .addHelpText('after', SEND_STDIN_HELP)
    .action(async (peer: string, argument: string | undefined, opts, command: Command) => {
      const text = await bodyOf(argument)
      // the rule chat follows too: a message of only whitespace is not one
      if (isBlankMessage(text)) throw Object.assign(new Error('the message is empty (only whitespace): nothing sent'), { name: 'EmptyMessageError' })
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
        : body.status === 'stored'
          ? `stored ${body.id}: the recipient is offline; it waits sealed in their mailbox, and turns delivered when they fetch it`
          : `queued ${body.id}: not acknowledged within ${opts.wait as number} s; the daemon keeps trying`)
      if (body.status !== 'delivered' && body.status !== 'stored') process.exitCode = EXIT_QUEUED
    })

  program.command('outbox')
    .description('messages not yet delivered: recipient, status, attempts, next attempt, age, last error')
    .option('--json', 'as a JSON array of {id, to, name?, status, attempts, nextAttemptAt, lastError?, sentAt, ...}')
    .addHelpText('after', '\nA message not delivered within the node\'s messageExpiry (7 days unless configured) fails on its own.')
    .action(async (opts, command: Command) => {
      const client = await clientOf(command)
      const [items, contacts] = await Promise.all([client.outbox(), client.contacts()])
      const names = new Map(contacts.map(c => [c.peerId, c.name]))
      const named = items.map(m => names.has(m.to) ? { ...m, name: names.get(m.to) } : m)
      print(opts.json === true, named, () => outboxTable(items, names, Date.now()))
    })

  program.command('cancel')
    .description('take a message waiting in the outbox back: it fails as "cancelled by the sender"')
    .argument('<id>', 'the message id (see `parley outbox`)')
    .option('--json', 'print the message as it now is')
    .addHelpText('after', '\nA message on the wire right now cannot be cancelled (the recipient may already have it); nor one delivered or failed.')
    .action(async (id: string, opts, command: Command) => {
      const message = await (await clientOf(command)).cancel(id)
      print(opts.json === true, message, () => `cancelled ${safe(message.id)} to ${safe(message.to)}`)
    })

  program.command('history')
    .description('the conversation with a peer, oldest first; marks it read up to the last message shown')
    .argument('<peer>', 'peer ID or contact name')
    .option('--limit <n>', 'at most this many (the newest)', positiveInt, 50)
    .option('--before <time>', 'only messages created before this: an ISO date or time, or ms since 1970', timeArgument)
    .option('--before-id <id>', 'only messages before this one in the history (an id from --json): the page before it')
    .option('--json', 'as a JSON array')
    .option('--keep-unread', 'leave the read mark where it is (history, with --json too, marks read otherwise)')
    .addHelpText('after', examples(
      'parley history bob',
      'parley history bob --limit 10 --before-id 0193a4c2-…  # page back from the oldest shown',
      'parley history bob --before 2026-12-01T12:00:00Z',
      'parley history 12D3KooW… --json --keep-unread'))
    .action(async (peer: string, opts, command: Command) => {
      const client = await clientOf(command)
      const entries = await client.history(peer, {
        limit: opts.limit,
        ...(opts.before != null ? { before: opts.before as number } : {}),
        ...(opts.beforeId != null ? { beforeId: opts.beforeId as string } : {})
      })
      // the user's own names for peers, fetched once
      const names = opts.json === true ? new Map<string, string>() : contactNames(await client.contacts())
      print(opts.json === true, entries, () => entries.length === 0 ? '(no messages yet)' : entries.map(m => historyLine(m, names)).join('\n'))
      await markShownRead(client, peer, entries, opts.keepUnread === true)
    })

  program.command('watch')
    .description('print incoming messages and events as they happen, peers by your contact names; a stranger\'s message is marked (request); marks nothing read')
    .option('--json', 'one JSON object a line: {"event", ...data}')
    .addHelpText('after', examples('parley watch', 'parley watch --json | jq -c \'select(.event == "message")\''))
    .addHelpText('after', '\nA watch that stops reading (a suspended terminal) is dropped by the daemon once over 1 MiB behind: it gets an\n"overflow" event and exits 1; what it missed is in `parley history`.\n' +
      'When the daemon stops, watch waits for it and goes on once it is back (with --json: {"event":"disconnected"} and\n{"event":"reconnected"} lines). It is live only: what arrived while it was reconnecting is in `parley history`.')
    .action(async (opts, command: Command) => {
      const client = await clientOf(command)
      // the user's own names for peers, as they were when the watch began
      const names = opts.json === true ? new Map<string, string>() : contactNames(await client.contacts())
      const controller = new AbortController()
      process.once('SIGINT', () => { controller.abort() })
      process.once('SIGTERM', () => { controller.abort() })
      for await (const { event, data } of liveEvents(dataDirOf(command), { client, connect: ApiClient.forDataDir, signal: controller.signal })) {
        // across a daemon restart: said once each way, then the stream goes on
        if (event === 'disconnected' || event === 'reconnected') {
          print(opts.json === true, { event, ...data }, () => event === 'disconnected'
            ? `-- ${data.message}`
            : '-- reconnected (watch is live only: what arrived before this line is in `parley history`)')
          continue
        }
        if (opts.json === true) {
          console.log(JSON.stringify({ event, ...data }))
        } else if (event === 'ready') {
          console.log(`watching ${safe(data.peerId)} (Ctrl-C to stop)`)
        } else if (event === 'message') {
          console.log(`[${clock(data.receivedAt)}] ${peerLabel(data.from, names, peerId => peerId)}${data.request === true ? ' (request)' : ''} (${safe(data.path)}): ${terminalSafe(data.body)}${contentTypeNote(data.contentType)}`)
        } else if (event === 'status') {
          console.log(`[${clock(Date.now())}] message ${safe(data.id)} to ${peerLabel(data.peer, names)}: ${safe(data.status)}${data.path != null ? ` (${safe(data.path)})` : ''}${data.status === 'failed' && data.reason != null ? `: ${safe(data.reason)}` : ''}`)
        } else if (event === 'path') {
          console.log(`[${clock(Date.now())}] ${peerLabel(data.peer, names, peerId => peerId)}: ${data.path == null ? 'disconnected' : `path now ${safe(data.path)}`}`)
        }
        if (event === 'overflow') {
          console.error(`parley: ${safe(data.message)}`)
          process.exitCode = 1
          break
        }
      }
    })

  program.command('chat')
    .description('an interactive chat with a peer or a group: history, live messages, delivery ticks and the path')
    .argument('<peer>', 'peer ID or contact name, or a group\'s name or ID (a contact\'s name wins over a group\'s)')
    .addHelpText('after', examples('parley chat bob', 'parley --data-dir /tmp/alice chat 12D3KooW…', 'parley chat family  # a group'))
    .action(async (peer: string, _opts, command: Command) => {
      const client = await clientOf(command)
      const group = await groupTarget(client, peer)
      if (group != null) await runGroupChat(client, group, dataDirOf(command))
      else await runChat(client, peer, dataDirOf(command))
    })

  // ---- the inbox: conversations and read marks ----
  program.command('conversations')
    .alias('ls')
    .description('your conversations, the latest first: name, unread messages, when, the last message')
    .option('--json', 'as a JSON array of {peerId, name?, last: {id, direction, preview, contentType, at, status}, unread, request}')
    .addHelpText('after', '\nUnread counts leave out message requests (see `parley requests`). `history` and `chat` mark a conversation read,\n`parley read` does it without showing it, and sending to a peer marks its conversation read.')
    .action(async (opts, command: Command) => {
      const list = await (await clientOf(command)).conversations()
      print(opts.json === true, list, () => conversationsTable(list))
    })
  program.command('read')
    .description('mark the conversation with a peer read (everything so far, or up to a message)')
    .argument('<peer>', 'peer ID or contact name')
    .option('--up-to <id>', 'only up to this message (its id, as `history --json` shows it)')
    .option('--json', 'print {"peerId", "unread"}')
    .action(async (peer: string, opts, command: Command) => {
      const result = await (await clientOf(command)).markRead(peer, { upTo: opts.upTo })
      print(opts.json === true, result, () => `marked read: ${safe(peer)}${result.unread > 0 ? ` (${count(result.unread, 'message')} after it still unread)` : ''}`)
    })

  program.command('peers')
    .description('connected peers and how each is reached')
    .option('--json', 'as a JSON array of {peerId, path, transport, remoteAddr, rtt, relay}')
    .addHelpText('after', '\nA relay this node is configured with is shown as "relay", not as a path to a person. A WebRTC\nconnection shows where its data goes (the ICE pair), not the relay that signalled it.')
    .action(async (opts, command: Command) => {
      const peers = await (await clientOf(command)).peers()
      print(opts.json === true, peers, () => peers.length === 0
        ? '(no connected peers)'
        : peers.map(p => `${safe(p.peerId)}  ${safe(peerKind(p))}  ${safe(p.transport)}  ${p.rtt != null ? `${Number(p.rtt)} ms` : ''}\n    ${safe(p.remoteAddr)}`).join('\n'))
    })

  program.command('status')
    .description('reachability, relay reservations, mailboxes, DHT peers, outbox size, storage, message requests')
    .option('--json', 'as JSON')
    .action(async (opts, command: Command) => {
      const s = await (await clientOf(command)).status()
      print(opts.json === true, s, () => [
        ...(s.storage.full ? ['STORAGE FULL: the message store is at its limit; incoming messages are refused and sending fails until room is made'] : []),
        `peer ID: ${s.peerId}`,
        ...reachabilityLines(s.reachability),
        `reachable at: ${s.addrs.length === 0 ? '(nowhere yet)' : ''}`,
        ...s.addrs.map(a => `  ${safe(a)}`),
        `relays: ${s.relays.length === 0 ? '(none configured)' : ''}`,
        ...s.relays.map(r => `  ${r.reserved ? 'reserved' : 'NOT reserved'}  ${safe(r.relay)}`),
        `connections: ${s.connections}   DHT peers: ${s.dhtPeers}   outbox: ${s.outbox}`,
        `storage: ${bytes(s.storage.usedBytes)} of ${bytes(s.storage.limitBytes)} (${Math.floor(100 * s.storage.usedBytes / Math.max(1, s.storage.limitBytes))}%)${s.storage.full ? ' FULL' : ''}`,
        `message requests: ${s.requests}${s.requests > 0 ? ' (see `parley requests`)' : ''}   blocked: ${s.blocked}`,
        ...mailboxLines(s.mailboxes)
      ].join('\n'))
    })

  const contacts = program.command('contacts').description('names for peers')
  contacts.command('add')
    .description('add a contact from a peer ID or an invite (then `send <name>` works without a DHT lookup); it also accepts the peer\'s message request')
    .argument('<name>')
    .argument('<peer>', 'peer ID or invite (parley:…)')
    .option('--replace', 'if the name is another peer\'s contact, point it at this peer instead')
    .addHelpText('after', examples('parley contacts add bob parley:eyJwIjoi…   # an invite from `parley invite`', 'parley contacts add carol 12D3KooW…'))
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
  groupCommands(program, { clientOf, dataDirOf })
  fileCommands(program, clientOf)
}
