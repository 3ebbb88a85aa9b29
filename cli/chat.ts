import { createInterface } from 'node:readline'
import { contentTypeNote, historyLine, shortPeer, terminalSafe, tick } from './format.js'
import { liveEvents } from './live-events.js'
import { ApiClient } from './client.js'
import { fileStatusLine, progressText } from './files.js'
import { FILE_OFFER_TYPE } from '../node/files/content-type.js'

/**
 * `parley chat <peer>`: the conversation so far, then a prompt. Typed lines are
 * sent; incoming lines appear above the prompt; each sent line gets a tick when
 * the peer acknowledges it, and the header says whether the path is direct or
 * relayed.
 */
export async function runChat (client: ApiClient, peer: string, dataDir: string): Promise<void> {
  const history = await client.history(peer, { limit: 20 })
  const contacts = await client.contacts()
  const peerId = contacts.find(c => c.name === peer)?.peerId ?? peer
  // names and everything from the peer are made terminal-safe before they are printed
  const name = terminalSafe(contacts.find(c => c.peerId === peerId)?.name ?? shortPeer(peerId), { indent: false })
  const peers = await client.peers()
  let path: string = peers.find(p => p.peerId === peerId)?.path ?? 'not connected'

  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY })
  const setPrompt = (): void => { rl.setPrompt(`[${name} · ${path}] > `) }
  const say = (line: string): void => {
    // print above the prompt without eating what the user is typing
    process.stdout.write('\r\x1b[K' + line + '\n')
    rl.prompt(true)
  }

  console.log(`chat with ${name} (${terminalSafe(peerId, { indent: false })}); Ctrl-D or /quit to leave`)
  for (const m of history) console.log(historyLine(m, new Map([[peerId, name]])))
  // opening a conversation reads it; then each message shown is read as it comes
  const markRead = (upTo: string): void => {
    client.markRead(peer, { upTo }).catch((err: Error) => { say(`-- could not mark read: ${terminalSafe(err.message, { indent: false })}`) })
  }
  const last = history.at(-1)
  if (last != null) markRead(last.id)
  setPrompt()
  rl.prompt()

  const controller = new AbortController()
  const quarters = new Map<string, number>()
  const mine = new Map<string, string>()
  // what has been shown from the peer, so that catching up after a reconnect shows nothing twice
  const shown = new Set(history.map(m => m.id))
  const showIncoming = (m: { id: string, body: string, contentType?: string, request?: boolean, path?: string }): void => {
    if (shown.has(m.id)) return
    shown.add(m.id)
    // an offer's body is for clients that know nothing of files: its file-offer event says it better
    if (m.contentType === FILE_OFFER_TYPE) {
      markRead(m.id)
      return
    }
    say(`${name}${m.request === true ? ' (request)' : ''}: ${terminalSafe(m.body)}${contentTypeNote(m.contentType)}${m.path != null ? ` (${terminalSafe(m.path, { indent: false })})` : ''}`)
    markRead(m.id)
  }
  const showOutcome = (id: string, status: string, path: string | undefined, reason: string | undefined): void => {
    if (!mine.has(id) || (status !== 'delivered' && status !== 'failed' && status !== 'stored')) return
    const why = status === 'failed' && reason != null ? ` ${terminalSafe(reason, { indent: false })}` : ''
    const note = status === 'stored' ? ' in their mailbox (they are offline)' : ''
    say(`  ${tick(status)} ${status}${note}${path != null && status !== 'stored' ? ` (${path})` : ''}${why}: ${mine.get(id) ?? ''}`)
    // a stored message is still followed: its delivery is news too
    if (status !== 'stored') mine.delete(id)
  }
  /** After a reconnect (a daemon restart, or an overflow): what the stream missed, from the history. */
  const catchUp = async (): Promise<void> => {
    for (const m of await client.history(peer, { limit: 100 })) {
      if (m.direction === 'in') showIncoming(m)
      else showOutcome(m.id, m.status, undefined, undefined)
    }
  }
  const events = (async () => {
    // the stream is taken again when it drops: the daemon dropped a reader that
    // fell behind (a suspended terminal), or stopped and is started again
    for await (const live of liveEvents(dataDir, { client, connect: ApiClient.forDataDir, signal: controller.signal })) {
      const { event, data } = live
      if (live.event === 'reconnected') {
        client = live.client
        say('-- reconnected')
        await catchUp()
      } else if (event === 'disconnected') {
        say(`-- ${data.message}`)
      } else if (event === 'message' && data.from === peerId) {
        showIncoming(data)
      } else if (event === 'status') {
        showOutcome(data.id, data.status, data.path ?? undefined, data.reason ?? undefined)
      } else if (event === 'path' && data.peer === peerId) {
        path = terminalSafe(data.path ?? 'not connected', { indent: false })
        setPrompt()
        say(`-- path to ${name} is now ${path}${data.transport != null ? ` (${terminalSafe(data.transport, { indent: false })})` : ''}`)
      } else if ((event === 'file-offer' || event === 'file-status') && data.peerId === peerId) {
        say(`-- ${fileStatusLine(data, new Map([[peerId, name]]))}`)
      } else if (event === 'file-progress') {
        // a line when it starts and each quarter of the way, not more: the prompt stays usable
        const quarter = data.size === 0 ? 4 : Math.floor(data.bytes * 4 / data.size)
        const shownQuarter = quarters.get(data.id)
        if ((shownQuarter == null || quarter > shownQuarter) && quarter < 4) {
          quarters.set(data.id, quarter)
          say(`-- ${data.direction === 'in' ? 'receiving' : 'sending'} ${data.id.slice(0, 8)}…: ${progressText(data)}`)
        }
      } else if (event === 'overflow') {
        say('-- this chat fell behind and missed some events; reconnecting')
      }
    }
  })().catch((err: Error) => { say(`-- ${terminalSafe(err.message, { indent: false })}`) })

  for await (const line of rl) {
    const text = line.trim()
    if (text === '/quit') break
    if (text === '') {
      rl.prompt()
      continue
    }
    try {
      const { body } = await client.send({ to: peer, body: text })
      const shown = terminalSafe(text, { indent: false })
      mine.set(body.id, shown.length > 30 ? `${shown.slice(0, 30)}…` : shown)
      say(`me: ${shown} ${tick(body.status)}`)
    } catch (err: any) {
      say(`-- not sent: ${terminalSafe(String(err.message), { indent: false })}`)
    }
  }
  controller.abort()
  rl.close()
  await events
}
