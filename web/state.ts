/**
 * What the app knows of the daemon, as signals every screen reads: contacts,
 * conversations, groups, message requests, paths, outgoing messages' states.
 * Loaded from the API at start and kept current by its event stream
 * (`/v1/events`, Server-Sent Events with the session cookie).
 */
import { computed, signal } from '@preact/signals'
import type { ApiEvents } from '../daemon/api/contract.js'
import type { GroupConversation, GroupInfo } from '../node/group/types.js'
import type { ContactInfo, Conversation, MessageRequest, OutboundStatus } from '../node/types.js'
import { call, loggedOut } from './api.js'

export type Path = 'direct' | 'relayed'

export const selfId = signal('')
export const contacts = signal<ContactInfo[]>([])
export const conversations = signal<Conversation[]>([])
export const groups = signal<GroupInfo[]>([])
export const requests = signal<MessageRequest[]>([])
/** Each connected peer's best path now; a peer not in it is not connected. */
export const paths = signal<Record<string, Path>>({})
/** The latest state of each outgoing message, and of each member's copy (carrier) of a group message, seen in this page. */
export const outgoing = signal<Record<string, { status: OutboundStatus, reason?: string }>>({})
/** The groups as an inbox: each one's last message and unread count (the daemon keeps the read marks). */
export const groupConversations = signal<GroupConversation[]>([])
/** What the live region announces: the latest message that arrived. */
export const announcement = signal('')
/** Whether the event stream is up. */
export const live = signal(false)

/** Contact names by peer ID (the first by name, as the daemon lists them). */
export const names = computed(() => {
  const byPeer: Record<string, string> = {}
  for (const c of contacts.value) byPeer[c.peerId] ??= c.name
  return byPeer
})

/** A short form of a peer ID, for peers without a contact name. */
export function shortPeer (peer: string): string {
  return peer.length > 14 ? `${peer.slice(0, 6)}…${peer.slice(-6)}` : peer
}

/** What to call a peer: "me", its contact name, or its shortened peer ID. */
export function nameOf (peer: string): string {
  if (peer === selfId.value) return 'me'
  return names.value[peer] ?? shortPeer(peer)
}

type Listener = { [E in keyof ApiEvents]?: (data: ApiEvents[E]) => void }
const listeners = new Set<Listener>()

/** Lets a screen hear events while it is shown (the conversation it shows gets its new messages). */
export function listen (listener: Listener): () => void {
  listeners.add(listener)
  return () => { listeners.delete(listener) }
}

/** The group or conversation the user looks at now: its arrivals are read, not counted. */
export const viewing = signal<{ kind: 'peer' | 'group', id: string } | null>(null)

/** Marks everything that arrived in a group read (the daemon keeps the mark, so every browser agrees). */
export async function markGroupRead (groupId: string): Promise<void> {
  if (document.hidden) return
  await call('POST /v1/groups/:group/read', { params: { group: groupId } })
  await refreshGroupConversations()
}

export async function refreshGroupConversations (): Promise<void> {
  groupConversations.value = await call('GET /v1/group-conversations')
}

export async function refreshConversations (): Promise<void> {
  conversations.value = await call('GET /v1/conversations')
}

export async function refreshContacts (): Promise<void> {
  contacts.value = await call('GET /v1/contacts')
}

export async function refreshRequests (): Promise<void> {
  requests.value = await call('GET /v1/requests')
}

export async function refreshGroups (): Promise<void> {
  const [list] = await Promise.all([call('GET /v1/groups'), refreshGroupConversations()])
  groups.value = list
}

export async function refreshPaths (): Promise<void> {
  const next: Record<string, Path> = {}
  for (const p of await call('GET /v1/peers')) {
    // a direct connection wins over a relayed one to the same peer
    if (next[p.peerId] !== 'direct') next[p.peerId] = p.path
  }
  paths.value = next
}

/** Everything the lists show, read again (at start, and after the event stream missed some). */
export async function refreshAll (): Promise<void> {
  selfId.value = (await call('GET /v1/id')).peerId
  await Promise.all([refreshContacts(), refreshConversations(), refreshRequests(), refreshGroups(), refreshPaths()])
}

/** Coalesces the conversation list's refreshes: a burst of messages reads it once. */
let conversationsDue: Promise<void> | null = null
function refreshConversationsSoon (): void {
  conversationsDue ??= Promise.resolve().then(async () => {
    conversationsDue = null
    await Promise.all([refreshConversations(), refreshRequests()])
  }).catch(() => {})
}

let groupConversationsDue: Promise<void> | null = null
function refreshGroupConversationsSoon (): void {
  groupConversationsDue ??= Promise.resolve().then(async () => {
    groupConversationsDue = null
    await refreshGroupConversations()
  }).catch(() => {})
}

function emit<E extends keyof ApiEvents> (event: E, data: ApiEvents[E]): void {
  for (const l of listeners) (l[event] as ((d: ApiEvents[E]) => void) | undefined)?.(data)
}

const handlers: { [E in keyof ApiEvents]?: (data: ApiEvents[E]) => void } = {
  message (m) {
    refreshConversationsSoon()
    const look = viewing.value
    if (look?.kind !== 'peer' || look.id !== m.from || document.hidden) {
      announcement.value = `New message from ${nameOf(m.from)}: ${m.body.slice(0, 140)}`
    }
  },
  status (s) {
    outgoing.value = { ...outgoing.value, [s.id]: { status: s.status, reason: s.reason } }
    if (s.status === 'delivered' || s.status === 'failed' || s.status === 'stored') refreshConversationsSoon()
  },
  'group-status' (s) {
    // keyed by carrier: each member's copy of a group message
    outgoing.value = { ...outgoing.value, [s.carrier]: { status: s.status, reason: s.reason } }
  },
  path (p) {
    const next = { ...paths.value }
    if (p.path == null) delete next[p.peer]
    else next[p.peer] = p.path
    paths.value = next
  },
  'group-message' (m) {
    const look = viewing.value
    if (look?.kind === 'group' && look.id === m.groupId && !document.hidden) {
      markGroupRead(m.groupId).catch(() => {})
    } else {
      const group = groups.value.find(g => g.id === m.groupId)
      announcement.value = `New message in ${group?.name ?? 'a group'} from ${nameOf(m.from)}: ${m.body.slice(0, 140)}`
    }
    refreshGroupConversationsSoon()
  },
  'group-change' () {
    refreshGroups().catch(() => {})
  },
  overflow () {
    // the stream ends after this: connect() reconnects and reads everything again
  }
}

let source: EventSource | null = null

/** Opens the event stream; on its loss, reads everything again once it is back. */
export function connect (): void {
  source?.close()
  const events = new EventSource('/v1/events')
  source = events
  events.addEventListener('ready', () => {
    live.value = true
    refreshAll().catch(() => {})
  })
  for (const name of Object.keys(handlers) as Array<keyof ApiEvents>) {
    events.addEventListener(name, (e: MessageEvent<string>) => {
      let data: unknown
      try {
        data = JSON.parse(e.data)
      } catch {
        return
      }
      ;(handlers[name] as ((d: unknown) => void) | undefined)?.(data)
      emit(name, data as never)
    })
  }
  events.addEventListener('error', () => {
    live.value = false
    if (events.readyState !== EventSource.CLOSED) return
    // closed for good (refused, or the daemon went): learn whether the session
    // is gone (401 sets loggedOut), else try again in a while
    call('GET /v1/id').then(() => { setTimeout(connect, 2000) }, () => {
      if (!loggedOut.value) setTimeout(connect, 5000)
    })
  })
}
