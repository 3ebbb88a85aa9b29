/**
 * The file commands: `send-file` (with a progress bar on a terminal, plain
 * lines otherwise), `files`, `accept`, `refuse`; and the lines `chat` prints
 * for offers and transfers. Everything a peer chose (a file name, a reason)
 * goes through terminalSafe before it is printed.
 */
import { resolve } from 'node:path'
import { bytes, peerLabel, terminalSafe } from './format.js'
import type { ApiClient } from './client.js'
import type { ApiEvent } from '../daemon/api/contract.js'
import type { FileInfo, FileProgress } from '../node/files/transfers.js'
import type { Command } from 'commander'

const FINAL = new Set(['complete', 'failed', 'refused', 'cancelled'])

function safe (text: unknown): string {
  return terminalSafe(String(text ?? ''), { indent: false })
}

/** `45% 12.3 MiB of 50 MiB, 8.1 MiB/s`. */
export function progressText (p: Pick<FileProgress, 'bytes' | 'size' | 'rate'>): string {
  const percent = p.size === 0 ? 100 : Math.floor(p.bytes * 100 / p.size)
  return `${percent}% ${bytes(p.bytes)} of ${bytes(p.size)}${p.rate > 0 ? `, ${bytes(p.rate)}/s` : ''}`
}

/** A bar of `width` cells for a terminal: `[#########.........]`. */
export function progressBar (p: Pick<FileProgress, 'bytes' | 'size'>, width = 30): string {
  const filled = p.size === 0 ? width : Math.min(width, Math.floor(p.bytes * width / p.size))
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

/** One line about a transfer: what `chat` and `send-file` print when its status changes. */
export function fileStatusLine (f: FileInfo, names: ReadonlyMap<string, string> = new Map()): string {
  const who = peerLabel(f.peerId, names)
  const what = `${safe(f.name)} (${bytes(f.size)})`
  const reason = f.reason == null ? '' : `: ${safe(f.reason)}`
  if (f.direction === 'in') {
    switch (f.status) {
      case 'pending': return `${who} offers ${what}${reason} — accept it with \`parley accept ${f.id}\``
      case 'complete': return `received ${what} from ${who}: ${safe(f.path)}`
      default: return `${what} from ${who}: ${f.status}${reason}`
    }
  }
  return `${what} to ${who}: ${f.status}${reason}`
}

/** The transfers as a table. */
export function filesTable (list: FileInfo[], names: ReadonlyMap<string, string>): string {
  if (list.length === 0) return '(no files)'
  const rows = list.map(f => [
    f.id,
    f.direction === 'in' ? 'from' : 'to',
    peerLabel(f.peerId, names),
    safe(f.name).slice(0, 40),
    bytes(f.size),
    f.status,
    FINAL.has(f.status) || f.size === 0 ? safe(f.reason ?? (f.status === 'complete' && f.path != null ? f.path : '')) : `${Math.floor(f.bytes * 100 / f.size)}%${f.reason == null ? '' : ` ${safe(f.reason)}`}`
  ])
  const header = ['ID', 'DIR', 'PEER', 'NAME', 'SIZE', 'STATUS', 'PROGRESS / PATH / REASON']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join('  ')
  return [line(header), ...rows.map(line)].join('\n')
}

/** Prints a transfer's progress until it ends: a redrawn bar on a terminal, a line every 10% otherwise. */
async function follow (client: ApiClient, id: string, out: NodeJS.WriteStream, signal: AbortSignal): Promise<FileInfo | undefined> {
  const tty = out.isTTY
  let lastTenth = -1
  const current = (await client.call('GET /v1/files/:id', { params: { id } })).body
  if (FINAL.has(current.status)) return current
  for await (const event of client.events(signal) as AsyncGenerator<ApiEvent>) {
    if (event.event === 'file-progress' && event.data.id === id) {
      if (tty) out.write(`\r${progressBar(event.data)} ${progressText(event.data)}\u001b[K`)
      else {
        const tenth = event.data.size === 0 ? 10 : Math.floor(event.data.bytes * 10 / event.data.size)
        if (tenth !== lastTenth) {
          lastTenth = tenth
          out.write(`${progressText(event.data)}\n`)
        }
      }
    } else if (event.event === 'file-status' && event.data.id === id) {
      if (tty) out.write('\r\u001b[K')
      out.write(`${fileStatusLine(event.data)}\n`)
      if (FINAL.has(event.data.status)) return event.data
    }
  }
  return undefined
}

export function fileCommands (program: Command, clientOf: (command: Command) => Promise<ApiClient>): void {
  program.command('send-file')
    .description('offer a file to a peer; it fetches it straight from this node (never through a mailbox)')
    .argument('<peer>', 'peer ID or contact name')
    .argument('<path>', 'the file')
    .option('--name <name>', 'the name the recipient sees (default: the file\'s)')
    .option('--type <type>', 'its media type, e.g. image/jpeg (default application/octet-stream)')
    .option('--copy', 'send a copy made now, so the file may change or go meanwhile (otherwise a change fails the transfer)')
    .option('--no-wait', 'return once offered instead of following the transfer')
    .option('--json', 'print {id, status} (and the final file as JSON when waiting)')
    .addHelpText('after', '\nThe offer is a message: it reaches an offline peer through its mailbox. The file itself waits on this node\nuntil the peer fetches it (this node must be running then). Ctrl-C stops following; the offer stands.\nSee transfers with `parley files`; withdraw one with `parley refuse <id>`.')
    .action(async (peer: string, path: string, opts, command: Command) => {
      const client = await clientOf(command)
      const sent = (await client.call('POST /v1/files', { params: {}, body: { to: peer, path: resolve(path), name: opts.name, type: opts.type, copy: opts.copy === true ? true : undefined } })).body
      if (opts.json === true && opts.wait === false) {
        console.log(JSON.stringify(sent))
        return
      }
      if (opts.json !== true) console.log(`offered ${sent.id} to ${safe(peer)}: ${sent.status}`)
      if (opts.wait === false) return
      const controller = new AbortController()
      const stop = (): void => { controller.abort() }
      process.once('SIGINT', stop)
      try {
        const end = await follow(client, sent.id, process.stdout, controller.signal)
        if (opts.json === true) console.log(JSON.stringify(end ?? sent))
        if (end != null && end.status !== 'complete') process.exitCode = 1
      } finally {
        process.off('SIGINT', stop)
      }
    })

  program.command('files')
    .description('files offered to and by this node: direction, peer, name, size, status, progress')
    .option('--in', 'only those offered to this node')
    .option('--out', 'only those this node offered')
    .option('--limit <n>', 'at most this many (the latest)', (v: string) => Number(v), 100)
    .option('--json', 'as a JSON array of {id, peerId, direction, name, type, size, sha256, status, reason?, bytes, path?, ...}')
    .action(async (opts, command: Command) => {
      const client = await clientOf(command)
      const direction = opts.in === true ? 'in' : opts.out === true ? 'out' : undefined
      const [list, contacts] = await Promise.all([(await client.call('GET /v1/files', { params: {}, query: { direction, limit: opts.limit } })).body, client.contacts()])
      if (opts.json === true) console.log(JSON.stringify(list))
      else console.log(filesTable(list, new Map(contacts.map(c => [c.peerId, c.name]))))
    })

  program.command('accept')
    .description('accept a file offered to this node: it is fetched now')
    .argument('<id>', 'the file\'s id (see `parley files --in`)')
    .option('--json', 'print the file as it now is')
    .action(async (id: string, opts, command: Command) => {
      const file = (await (await clientOf(command)).call('POST /v1/files/:id/accept', { params: { id } })).body
      console.log(opts.json === true ? JSON.stringify(file) : `accepted ${safe(file.name)} (${bytes(file.size)}): ${file.status}`)
    })

  program.command('refuse')
    .description('refuse a file offered to this node (or stop fetching it), or withdraw one this node offered')
    .argument('<id>', 'the file\'s id (see `parley files`)')
    .option('--json', 'print the file as it now is')
    .action(async (id: string, opts, command: Command) => {
      const file = (await (await clientOf(command)).call('DELETE /v1/files/:id', { params: { id } })).body
      console.log(opts.json === true ? JSON.stringify(file) : `${safe(file.name)}: ${file.status}`)
    })
}
