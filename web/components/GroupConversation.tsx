/**
 * A group: its messages (paged back by Lamport time), what arrives live, the
 * state of what this page sent (each member's copy: delivered, stored in its
 * mailbox, or still on its way, from the `group-status` events), and its membership.
 */
import { useSignal } from '@preact/signals'
import { useEffect } from 'preact/hooks'
import type { GroupMessage } from '../../node/group/types.js'
import { call } from '../api.js'
import { contacts, groups, listen, markGroupRead, nameOf, outgoing, refreshGroupConversations, refreshGroups, selfId, viewing } from '../state.js'
import { Composer } from './Composer.js'
import type { Line } from './MessageList.js'
import { MessageList } from './MessageList.js'

const PAGE = 50

/** One sent message's state across its members' copies (their carriers' ids). */
function groupState (carriers: string[], states: typeof outgoing.value): Line['state'] {
  if (carriers.length === 0) return { label: 'delivered', detail: '(no other member)' }
  const now = carriers.map(id => states[id] ?? { status: 'sending' as const })
  const failed = now.find(s => s.status === 'failed')
  if (failed != null) return { label: 'failed', reason: failed.reason }
  const delivered = now.filter(s => s.status === 'delivered').length
  const detail = `to ${delivered} of ${now.length}`
  // queued: not reachable now; the outbox keeps trying and leaves it in the member's mailbox
  if (delivered === now.length) return { label: 'delivered', detail: now.length > 1 ? `to all ${now.length}` : undefined }
  if (now.every(s => s.status === 'delivered' || s.status === 'stored')) return { label: 'stored', detail: `(delivered ${detail})` }
  return { label: 'sending', detail: delivered > 0 ? `(delivered ${detail})` : undefined }
}

export function GroupConversation ({ group: groupId }: { group: string }) {
  const messages = useSignal<GroupMessage[]>([])
  const carriers = useSignal<Record<string, string[]>>({})
  const hasMore = useSignal(false)
  const error = useSignal('')
  const group = groups.value.find(g => g.id === groupId || g.name === groupId)
  const id = group?.id ?? groupId

  const seen = (): void => { markGroupRead(id).catch(() => {}) }

  useEffect(() => {
    let stopped = false
    viewing.value = { kind: 'group', id }
    messages.value = []
    error.value = ''
    call('GET /v1/groups/:group/history', { params: { group: id }, query: { limit: PAGE } }).then(page => {
      if (stopped) return
      messages.value = page
      hasMore.value = page.length === PAGE
      seen()
    }).catch(err => { if (!stopped) error.value = (err as Error).message })
    const unlisten = listen({
      'group-message' (m) {
        if (m.groupId !== id || messages.value.some(x => x.id === m.id && x.from === m.from)) return
        messages.value = [...messages.value, m].sort((a, b) => a.lamport - b.lamport || (a.from < b.from ? -1 : a.from > b.from ? 1 : a.seq - b.seq))
      }
    })
    const onVisible = (): void => { seen() }
    document.addEventListener('visibilitychange', onVisible)
    return () => {
      stopped = true
      unlisten()
      document.removeEventListener('visibilitychange', onVisible)
      if (viewing.value?.id === id) viewing.value = null
    }
  }, [id])

  const loadOlder = async (): Promise<void> => {
    const first = messages.value[0]
    if (first == null) return
    const page = await call('GET /v1/groups/:group/history', { params: { group: id }, query: { limit: PAGE, before: first.lamport } })
    messages.value = [...page, ...messages.value]
    hasMore.value = page.length === PAGE
  }

  /** Sent at once (202): each member's copy (carrier) then reports its state on the event stream (`group-status`). */
  const send = async (body: string): Promise<void> => {
    const sent = await call('POST /v1/groups/:group/messages', { params: { group: id }, body: { body } })
    const ids = 'carriers' in sent ? sent.carriers.map(c => c.id) : sent.recipients.map(r => r.id)
    carriers.value = { ...carriers.value, [sent.id]: ids }
    const mine: GroupMessage = { groupId: id, id: sent.id, from: selfId.value, seq: sent.seq, lamport: sent.lamport, body, contentType: 'text/plain', sentAt: Date.now(), receivedAt: Date.now() }
    messages.value = [...messages.value, mine]
    refreshGroupConversations().catch(() => {})
  }

  if (group == null) {
    return (
      <section class='conversation'>
        <a href='#/' class='back'>Back<span class='sr-only'> to conversations</span></a>
        <p role='alert'>No group {groupId} here (yet).</p>
      </section>
    )
  }
  const states = outgoing.value
  const lines: Line[] = messages.value.map(m => ({
    id: `${m.from}/${m.id}`,
    mine: m.from === selfId.value,
    author: m.from === selfId.value ? 'me' : nameOf(m.from),
    body: m.body,
    contentType: m.contentType,
    at: m.receivedAt,
    path: m.path,
    state: carriers.value[m.id] != null && m.from === selfId.value ? groupState(carriers.value[m.id], states) : undefined
  }))
  return (
    <section class='conversation' aria-labelledby='conversation-title'>
      <header class='conversation-head'>
        <a href='#/' class='back'>Back<span class='sr-only'> to conversations</span></a>
        <h2 id='conversation-title'>{group.name}</h2>
        <p class='path'>{group.members.length} members{group.member ? '' : ' · you are no longer a member'}</p>
      </header>
      <Members groupId={id} />
      {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
      <MessageList label={`Messages in ${group.name}`} lines={lines} hasMore={hasMore.value} loadOlder={loadOlder} />
      <Composer onSend={send} disabled={group.member ? undefined : 'You are no longer a member of this group'} />
    </section>
  )
}

/** The members, and (for admins) adding and removing them; leaving, for everyone. */
function Members ({ groupId }: { groupId: string }) {
  const add = useSignal('')
  const error = useSignal('')
  const group = groups.value.find(g => g.id === groupId)
  if (group == null) return null
  const admin = group.admins.includes(selfId.value) && group.member
  const act = async (action: () => Promise<unknown>): Promise<void> => {
    error.value = ''
    try {
      await action()
      await refreshGroups()
    } catch (err) {
      error.value = (err as Error).message
    }
  }
  const candidates = contacts.value.filter(c => !group.members.includes(c.peerId))
  const onAdd = (e: Event): void => {
    e.preventDefault()
    if (add.value === '') return
    act(() => call('POST /v1/groups/:group/members', { params: { group: groupId }, body: { peer: add.value } })).then(() => { add.value = '' }, () => {})
  }
  return (
    <details class='members'>
      <summary>Members ({group.members.length})</summary>
      <ul>
        {group.members.map(m => (
          <li key={m}>
            <span>{nameOf(m)}{group.admins.includes(m) ? ' (admin)' : ''}</span>
            {admin && m !== selfId.value && (
              <button type='button' onClick={() => { act(() => call('DELETE /v1/groups/:group/members/:peer', { params: { group: groupId, peer: m } })).catch(() => {}) }}>
                Remove<span class='sr-only'> {nameOf(m)}</span>
              </button>
            )}
          </li>
        ))}
      </ul>
      {admin && candidates.length > 0 && (
        <form onSubmit={onAdd} class='inline'>
          <label>
            Add a contact
            <select value={add.value} onChange={e => { add.value = e.currentTarget.value }}>
              <option value=''>choose…</option>
              {candidates.map(c => <option key={c.peerId} value={c.peerId}>{c.name}</option>)}
            </select>
          </label>
          <button type='submit'>Add</button>
        </form>
      )}
      {group.member && <button type='button' class='danger' onClick={() => { act(() => call('POST /v1/groups/:group/leave', { params: { group: groupId } })).catch(() => {}) }}>Leave group</button>}
      {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
    </details>
  )
}
