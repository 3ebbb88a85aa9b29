/** Making a group: a name and the contacts in it. */
import { useSignal } from '@preact/signals'
import { call } from '../api.js'
import { go, groupHref } from '../route.js'
import { contacts, refreshGroups } from '../state.js'

export function NewGroup () {
  const name = useSignal('')
  const chosen = useSignal<string[]>([])
  const error = useSignal('')
  const create = (e: Event): void => {
    e.preventDefault()
    error.value = ''
    call('POST /v1/groups', { body: { name: name.value.trim(), members: chosen.value } }).then(async group => {
      await refreshGroups()
      go(groupHref(group.id))
    }, err => { error.value = (err as Error).message })
  }
  const toggle = (peer: string, on: boolean): void => {
    chosen.value = on ? [...chosen.value, peer] : chosen.value.filter(p => p !== peer)
  }
  return (
    <section class='page' aria-labelledby='new-group-title'>
      <h2 id='new-group-title'>New group</h2>
      <form class='card' onSubmit={create}>
        <label>Group name <input required maxLength={128} value={name.value} onInput={e => { name.value = e.currentTarget.value }} /></label>
        <fieldset>
          <legend>Members</legend>
          {contacts.value.length === 0 && <p>Add contacts first: a group is made of your contacts.</p>}
          {contacts.value.map(c => (
            <label key={c.peerId} class='check'>
              <input type='checkbox' checked={chosen.value.includes(c.peerId)} onChange={e => { toggle(c.peerId, e.currentTarget.checked) }} /> {c.name}
            </label>
          ))}
        </fieldset>
        <button type='submit'>Create group</button>
        {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
      </form>
    </section>
  )
}
