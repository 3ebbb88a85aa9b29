import { createInterface } from 'node:readline'
import { historyLine, shortPeer, tick } from './format.js'
import type { ApiClient } from './api/client.js'
import type { HistoryEntry } from './node.js'

/**
 * `parley chat <peer>`: the conversation so far, then a prompt. Typed lines are
 * sent; incoming lines appear above the prompt; each sent line gets a tick when
 * the peer acknowledges it, and the header says whether the path is direct or
 * relayed.
 */
export async function runChat (client: ApiClient, peer: string): Promise<void> {
  const history: HistoryEntry[] = await client.get(`/v1/history/${encodeURIComponent(peer)}?limit=20`)
  const contacts: Array<{ name: string, peerId: string }> = await client.get('/v1/contacts')
  const peerId = contacts.find(c => c.name === peer)?.peerId ?? peer
  const name = contacts.find(c => c.peerId === peerId)?.name ?? shortPeer(peerId)
  const peers: Array<{ peerId: string, path: string }> = await client.get('/v1/peers')
  let path = peers.find(p => p.peerId === peerId)?.path ?? 'not connected'

  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY })
  const setPrompt = (): void => { rl.setPrompt(`[${name} · ${path}] > `) }
  const say = (line: string): void => {
    // print above the prompt without eating what the user is typing
    process.stdout.write('\r\x1b[K' + line + '\n')
    rl.prompt(true)
  }

  console.log(`chat with ${name} (${peerId}); Ctrl-D or /quit to leave`)
  for (const m of history) console.log(historyLine(m, new Map([[peerId, name]])))
  setPrompt()
  rl.prompt()

  const controller = new AbortController()
  const mine = new Map<string, string>()
  const events = (async () => {
    for await (const { event, data } of client.events(controller.signal)) {
      if (event === 'message' && data.from === peerId) {
        say(`${name}: ${data.body as string} (${data.path as string})`)
      } else if (event === 'status' && mine.has(data.id) && (data.status === 'delivered' || data.status === 'failed')) {
        say(`  ${tick(data.status)} ${data.status as string}${data.path != null ? ` (${data.path as string})` : ''}: ${mine.get(data.id) ?? ''}`)
        mine.delete(data.id)
      } else if (event === 'path' && data.peer === peerId) {
        path = data.path ?? 'not connected'
        setPrompt()
        say(`-- path to ${name} is now ${path}${data.transport != null ? ` (${data.transport as string})` : ''}`)
      }
    }
  })().catch((err: Error) => { say(`-- ${err.message}`) })

  for await (const line of rl) {
    const text = line.trim()
    if (text === '/quit') break
    if (text === '') {
      rl.prompt()
      continue
    }
    try {
      const { body } = await client.request('POST', '/v1/messages', { to: peer, body: text })
      mine.set(body.id, text.length > 30 ? `${text.slice(0, 30)}…` : text)
      say(`me: ${text} ${tick(body.status)}`)
    } catch (err: any) {
      say(`-- not sent: ${err.message as string}`)
    }
  }
  controller.abort()
  rl.close()
  await events
}
