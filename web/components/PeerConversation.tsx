/**
 * A one-to-one conversation: its history (paged back by message id), what
 * arrives live, each outgoing message's state, the path to the peer right
 * now, and, for a stranger's message request, accept / decline / block.
 */
import { useSignal } from '@preact/signals'
import { useEffect } from 'preact/hooks'
import type { HistoryEntry } from '../../node/types.js'
import { call } from '../api.js'
import { go } from '../route.js'
import { conversations, listen, nameOf, outgoing, paths, refreshContacts, refreshConversations, refreshRequests, requests, shortPeer, viewing } from '../state.js'
import { Composer } from './Composer.js'
import type { Line } from './MessageList.js'
import { MessageList } from './MessageList.js'

const PAGE = 50

function toLine (entry: HistoryEntry, states: typeof outgoing.value): Line {
  const mine = entry.direction === 'out'
  let state: Line['state']
  if (mine) {
    const now = states[entry.id] ?? { status: entry.status === 'received' ? 'queued' : entry.status, reason: entry.reason }
    const label = now.status === 'queued' ? 'sending' : now.status
    state = { label, reason: label === 'failed' || label === 'sending' ? now.reason : undefined }
  }
  return { id: entry.id, mine, body: entry.body, contentType: entry.contentType, at: entry.receivedAt ?? entry.sentAt, state, path: entry.path }
}

async function markRead (peer: string): Promise<void> {
  if (document.hidden) return
  await call('POST /v1/conversations/:peer/read', { params: { peer } })
  await refreshConversations()
}

export function PeerConversation ({ peer }: { peer: string }) {
  const entries = useSignal<HistoryEntry[]>([])
  const hasMore = useSignal(false)
  const error = useSignal('')

  useEffect(() => {
    let stopped = false
    viewing.value = { kind: 'peer', id: peer }
    entries.value = []
    error.value = ''
    call('GET /v1/history/:peer', { params: { peer }, query: { limit: PAGE } }).then(page => {
      if (stopped) return
      entries.value = page
      hasMore.value = page.length === PAGE
      return markRead(peer)
    }).catch(err => { if (!stopped) error.value = (err as Error).message })
    const unlisten = listen({
      message (m) {
        if (m.from !== peer || entries.value.some(e => e.id === m.id)) return
        entries.value = [...entries.value, { id: m.id, from: m.from, to: '', direction: 'in', seq: m.seq, body: m.body, contentType: m.contentType, sentAt: m.sentAt, receivedAt: m.receivedAt, status: 'received', path: m.path, request: m.request }]
        markRead(peer).catch(() => {})
      }
    })
    const onVisible = (): void => { if (!document.hidden) markRead(peer).catch(() => {}) }
    document.addEventListener('visibilitychange', onVisible)
    return () => {
      stopped = true
      unlisten()
      document.removeEventListener('visibilitychange', onVisible)
      if (viewing.value?.id === peer) viewing.value = null
    }
  }, [peer])

  const loadOlder = async (): Promise<void> => {
    const first = entries.value[0]
    if (first == null) return
    const page = await call('GET /v1/history/:peer', { params: { peer }, query: { limit: PAGE, beforeId: first.id } })
    entries.value = [...page, ...entries.value]
    hasMore.value = page.length === PAGE
  }

  const send = async (body: string): Promise<void> => {
    const sent = await call('POST /v1/messages', { body: { to: peer, body } })
    if (!('id' in sent)) return
    const status = 'status' in sent && typeof sent.status === 'string' ? sent.status : 'sending'
    if (outgoing.value[sent.id] == null) outgoing.value = { ...outgoing.value, [sent.id]: { status: status as 'sending' } }
    entries.value = [...entries.value, { id: sent.id, from: '', to: peer, direction: 'out', seq: 0, body, contentType: 'text/plain', sentAt: Date.now(), status: 'sending' }]
    refreshConversations().catch(() => {})
  }

  const conversation = conversations.value.find(c => c.peerId === peer)
  const isRequest = conversation?.request === true || requests.value.some(r => r.peerId === peer)
  const path = paths.value[peer]
  const name = nameOf(peer)
  const states = outgoing.value
  return (
    <section class='conversation' aria-labelledby='conversation-title'>
      <header class='conversation-head'>
        <a href='#/' class='back'>Back<span class='sr-only'> to conversations</span></a>
        <h2 id='conversation-title'>{name}</h2>
        <p class='path'>{path == null ? 'not connected now' : `${path} now`}</p>
        <p class='peer-id' title={peer}>{shortPeer(peer)}</p>
      </header>
      {isRequest && <RequestBar peer={peer} />}
      {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
      <MessageList label={`Messages with ${name}`} lines={entries.value.map(e => toLine(e, states))} hasMore={hasMore.value} loadOlder={loadOlder} />
      <Composer onSend={send} />
    </section>
  )
}

/** A stranger wrote: let the user accept (optionally naming them), decline or block. */
function RequestBar ({ peer }: { peer: string }) {
  const name = useSignal('')
  const error = useSignal('')
  const done = async (action: () => Promise<unknown>, then?: string): Promise<void> => {
    error.value = ''
    try {
      await action()
      await Promise.all([refreshRequests(), refreshConversations(), refreshContacts()])
      if (then != null) go(then)
    } catch (err) {
      error.value = (err as Error).message
    }
  }
  const accept = (e: Event): void => {
    e.preventDefault()
    const body = name.value.trim() === '' ? undefined : { name: name.value.trim() }
    done(() => call('POST /v1/requests/:peer/accept', { params: { peer }, body })).catch(() => {})
  }
  return (
    <form class='request-bar' onSubmit={accept} aria-label='Message request'>
      <p>Someone you have not added wrote to you. Their messages wait here until you decide.</p>
      <label>Name them (optional) <input value={name.value} onInput={e => { name.value = e.currentTarget.value }} maxLength={64} /></label>
      <div class='actions'>
        <button type='submit'>Accept</button>
        <button type='button' onClick={() => { done(() => call('DELETE /v1/requests/:peer', { params: { peer } }), '#/').catch(() => {}) }}>Decline</button>
        <button type='button' class='danger' onClick={() => { done(() => call('POST /v1/blocked', { body: { peer } }), '#/').catch(() => {}) }}>Block</button>
      </div>
      {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
    </form>
  )
}
