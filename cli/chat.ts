import { createInterface } from 'node:readline'
import { contentTypeNote, historyLine, shortPeer, terminalSafe, tick } from './format.js'
import type { ApiClient } from './client.js'

/**
 * `parley chat <peer>`: the conversation so far, then a prompt. Typed lines are
 * sent; incoming lines appear above the prompt; each sent line gets a tick when
 * the peer acknowledges it, and the header says whether the path is direct or
 * relayed.
 */
export async function runChat (client: ApiClient, peer: string): Promise<void> {
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
  // opening a conversation reads it; then each message shown is read as it comes (see `markRead`)
  const markRead = (upTo: string): void => {
    client.markRead(peer, { upTo }).catch((err: Error) => { say(`-- could not mark read: ${terminalSafe(err.message, { indent: false })}`) })
  }
  const last = history.at(-1)
  if (last != null) markRead(last.id)
  setPrompt()
  rl.prompt()

  const controller = new AbortController()
  const mine = new Map<string, string>()
  const events = (async () => {
    // the daemon drops an event stream that falls behind (a suspended
    // terminal): say so and take a new one
    for (let overflowed = true; overflowed && !controller.signal.aborted;) {
      overflowed = false
      for await (const { event, data } of client.events(controller.signal)) {
        if (event === 'message' && data.from === peerId) {
          say(`${name}${data.request === true ? ' (request)' : ''}: ${terminalSafe(data.body)}${contentTypeNote(data.contentType)} (${terminalSafe(data.path, { indent: false })})`)
          markRead(data.id)
        } else if (event === 'status' && mine.has(data.id) && (data.status === 'delivered' || data.status === 'failed')) {
          const reason = data.status === 'failed' && data.reason != null ? ` ${terminalSafe(data.reason, { indent: false })}` : ''
          say(`  ${tick(data.status)} ${data.status}${data.path != null ? ` (${data.path})` : ''}${reason}: ${mine.get(data.id) ?? ''}`)
          mine.delete(data.id)
        } else if (event === 'path' && data.peer === peerId) {
          path = terminalSafe(data.path ?? 'not connected', { indent: false })
          setPrompt()
          say(`-- path to ${name} is now ${path}${data.transport != null ? ` (${terminalSafe(data.transport, { indent: false })})` : ''}`)
        } else if (event === 'overflow') {
          overflowed = true
          say('-- this chat fell behind and missed some events (see `parley history`); reconnecting')
        }
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
