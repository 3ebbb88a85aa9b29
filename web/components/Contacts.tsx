/**
 * Contacts: add one from an invite link, rename, remove, block; and the
 * peers blocked so far, to unblock.
 */
import { useSignal } from '@preact/signals'
import { useEffect } from 'preact/hooks'
import type { BlockedPeer, ContactInfo } from '../../node/types.js'
import { call } from '../api.js'
import { peerHref } from '../route.js'
import { contacts, refreshContacts, refreshConversations, refreshRequests, shortPeer } from '../state.js'

export function Contacts () {
  const name = useSignal('')
  const invite = useSignal('')
  const error = useSignal('')
  const notice = useSignal('')
  const blocked = useSignal<BlockedPeer[]>([])
  const loadBlocked = async (): Promise<void> => { blocked.value = await call('GET /v1/blocked') }
  useEffect(() => { refreshContacts().catch(() => {}); loadBlocked().catch(() => {}) }, [])

  const act = async (what: string, action: () => Promise<unknown>): Promise<boolean> => {
    error.value = ''
    notice.value = ''
    try {
      await action()
      await Promise.all([refreshContacts(), refreshConversations(), refreshRequests(), loadBlocked()])
      notice.value = what
      return true
    } catch (err) {
      error.value = (err as Error).message
      return false
    }
  }
  const onAdd = (e: Event): void => {
    e.preventDefault()
    const n = name.value.trim()
    act(`Added ${n}.`, () => call('POST /v1/contacts', { body: { name: n, peer: invite.value.trim() } })).then(ok => {
      if (ok) { name.value = ''; invite.value = '' }
    }, () => {})
  }
  return (
    <section class='page' aria-labelledby='contacts-title'>
      <h2 id='contacts-title'>Contacts</h2>
      <form class='card' onSubmit={onAdd} aria-labelledby='add-title'>
        <h3 id='add-title'>Add a contact</h3>
        <label>Invite link <textarea rows={3} required value={invite.value} onInput={e => { invite.value = e.currentTarget.value }} placeholder='parley-invite:… (or a peer ID)' /></label>
        <label>Name <input required maxLength={64} value={name.value} onInput={e => { name.value = e.currentTarget.value }} /></label>
        <button type='submit'>Add contact</button>
      </form>
      <p role='status' class='notice'>{notice.value}</p>
      {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
      <ul class='contacts'>
        {contacts.value.map(c => <ContactRow key={c.name} contact={c} act={act} />)}
      </ul>
      {blocked.value.length > 0 && (
        <>
          <h3>Blocked</h3>
          <ul class='contacts'>
            {blocked.value.map(b => (
              <li key={b.peerId}>
                <span>{b.name ?? shortPeer(b.peerId)}</span>
                <button type='button' onClick={() => { act(`Unblocked ${b.name ?? shortPeer(b.peerId)}.`, () => call('DELETE /v1/blocked/:peer', { params: { peer: b.peerId } })).catch(() => {}) }}>
                  Unblock<span class='sr-only'> {b.name ?? b.peerId}</span>
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  )
}

function ContactRow ({ contact, act }: { contact: ContactInfo, act: (what: string, action: () => Promise<unknown>) => Promise<boolean> }) {
  const renaming = useSignal(false)
  const newName = useSignal(contact.name)
  const rename = async (): Promise<void> => {
    await call('PATCH /v1/contacts/:name', { params: { name: contact.name }, body: { name: newName.value.trim() } })
  }
  const onRename = (e: Event): void => {
    e.preventDefault()
    act(`Renamed ${contact.name} to ${newName.value.trim()}.`, rename).then(ok => { if (ok) renaming.value = false }, () => {})
  }
  return (
    <li>
      {renaming.value
        ? (
          <form class='inline' onSubmit={onRename}>
            <label>New name for {contact.name} <input required maxLength={64} value={newName.value} onInput={e => { newName.value = e.currentTarget.value }} /></label>
            <button type='submit'>Save</button>
            <button type='button' onClick={() => { renaming.value = false }}>Cancel</button>
          </form>
          )
        : (
          <>
            <a href={peerHref(contact.peerId)}>{contact.name}</a>
            <span class='peer-id' title={contact.peerId}>{shortPeer(contact.peerId)}</span>
            <span class='actions'>
              <button type='button' onClick={() => { renaming.value = true; newName.value = contact.name }}>Rename<span class='sr-only'> {contact.name}</span></button>
              <button type='button' onClick={() => { act(`Removed ${contact.name}.`, () => call('DELETE /v1/contacts/:name', { params: { name: contact.name } })).catch(() => {}) }}>Remove<span class='sr-only'> {contact.name}</span></button>
              <button type='button' class='danger' onClick={() => { act(`Blocked ${contact.name}.`, () => call('POST /v1/blocked', { body: { peer: contact.peerId } })).catch(() => {}) }}>Block<span class='sr-only'> {contact.name}</span></button>
            </span>
          </>
          )}
    </li>
  )
}
