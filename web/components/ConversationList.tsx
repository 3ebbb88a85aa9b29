/**
 * The inbox: one-to-one conversations, groups and strangers' message
 * requests, the latest first, each with its unread count and last message;
 * then the contacts without a conversation yet.
 * Each entry is a link named after the contact or group alone (what follows
 * describes it), so "bob" finds bob's conversation by role and name.
 */
import { groupHref, peerHref, route } from '../route.js'
import { contacts, conversations, groupConversations, groups, nameOf, requests } from '../state.js'

interface Entry {
  key: string
  href: string
  name: string
  preview: string
  at: number
  unread: number
  kind: 'contact' | 'group' | 'request'
}

const when = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' })

export function ConversationList () {
  const entries: Entry[] = []
  const seen = new Set<string>()
  for (const c of conversations.value) {
    seen.add(c.peerId)
    const prefix = c.last.direction === 'out' ? 'You: ' : ''
    entries.push({ key: c.peerId, href: peerHref(c.peerId), name: c.name ?? nameOf(c.peerId), preview: prefix + c.last.preview, at: c.last.at, unread: c.unread, kind: c.request ? 'request' : 'contact' })
  }
  for (const r of requests.value) {
    if (seen.has(r.peerId)) continue
    entries.push({ key: r.peerId, href: peerHref(r.peerId), name: nameOf(r.peerId), preview: r.preview, at: r.lastAt, unread: r.messages, kind: 'request' })
  }
  for (const g of groupConversations.value) {
    const members = groups.value.find(info => info.id === g.groupId)?.members.length
    const last = g.last
    entries.push({
      key: g.groupId,
      href: groupHref(g.groupId),
      name: g.name,
      preview: last == null ? (members == null ? '' : `${members} members`) : `${nameOf(last.from) === 'me' ? 'You' : nameOf(last.from)}: ${last.preview}`,
      at: last?.at ?? 0,
      unread: g.unread,
      kind: 'group'
    })
  }
  // contacts not written to yet, last: the way to start a conversation
  for (const c of contacts.value) {
    if (seen.has(c.peerId)) continue
    seen.add(c.peerId)
    entries.push({ key: c.peerId, href: peerHref(c.peerId), name: c.name, preview: 'No messages yet', at: 0, unread: 0, kind: 'contact' })
  }
  entries.sort((a, b) => b.at - a.at)
  const current = route.value
  const currentKey = current.screen === 'peer' ? current.peer : current.screen === 'group' ? current.group : null
  return (
    <nav class='conversation-list' aria-label='Conversations'>
      <h2 class='sr-only'>Conversations</h2>
      {entries.length === 0
        ? <p class='empty'>No conversations yet. <a href='#/contacts'>Add a contact</a> from their invite link, or give them <a href='#/invite'>yours</a>.</p>
        : (
          <ul>
            {entries.map(e => (
              <li key={e.key} class={`${e.kind}${e.key === currentKey ? ' current' : ''}`}>
                <a href={e.href} aria-current={e.key === currentKey ? 'page' : undefined} aria-describedby={`about-${e.key}`}>{e.name}</a>
                <span id={`about-${e.key}`} class='about'>
                  {e.kind === 'request' && <span class='tag'>request</span>}
                  {e.kind === 'group' && <span class='tag'>group</span>}
                  {e.unread > 0 && <span class='unread'>{e.unread} unread</span>}
                  <span class='preview'>{e.preview}</span>
                  {e.at > 0 && <time class='at' dateTime={new Date(e.at).toISOString()}>{when.format(e.at)}</time>}
                </span>
              </li>
            ))}
          </ul>
          )}
    </nav>
  )
}
