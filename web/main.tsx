/**
 * parley's web app: the daemon serves it on its API port and the login link
 * of `parley open` gives it a session cookie. One page, hash-routed; state in
 * signals (state.ts) kept current by the daemon's event stream.
 */
import { render } from 'preact'
import { useSignal } from '@preact/signals'
import { useEffect } from 'preact/hooks'
import { loggedOut } from './api.js'
import { route } from './route.js'
import { announcement, connect, live, refreshAll } from './state.js'
import { Contacts } from './components/Contacts.js'
import { ConversationList } from './components/ConversationList.js'
import { GroupConversation } from './components/GroupConversation.js'
import { Invite } from './components/Invite.js'
import { NewGroup } from './components/NewGroup.js'
import { PeerConversation } from './components/PeerConversation.js'
import { Status } from './components/Status.js'

type Theme = 'auto' | 'light' | 'dark'
const THEME_KEY = 'parley.theme'

function applyTheme (theme: Theme): void {
  if (theme === 'auto') delete document.documentElement.dataset.theme
  else document.documentElement.dataset.theme = theme
}

function storedTheme (): Theme {
  const stored = localStorage.getItem(THEME_KEY)
  return stored === 'light' || stored === 'dark' ? stored : 'auto'
}

// before the first render, so that a page reloaded in the dark theme is never painted light first
applyTheme(storedTheme())

function ThemeChoice () {
  const theme = useSignal<Theme>(storedTheme())
  useEffect(() => { applyTheme(theme.value) }, [theme.value])
  return (
    <label class='theme'>
      <span class='sr-only'>Theme</span>
      <select
        aria-label='Theme' value={theme.value} onChange={e => {
          theme.value = e.currentTarget.value as Theme
          localStorage.setItem(THEME_KEY, theme.value)
        }}
      >
        <option value='auto'>Theme: system</option>
        <option value='light'>Theme: light</option>
        <option value='dark'>Theme: dark</option>
      </select>
    </label>
  )
}

function Main () {
  const r = route.value
  switch (r.screen) {
    case 'peer': return <PeerConversation key={r.peer} peer={r.peer} />
    case 'group': return <GroupConversation key={r.group} group={r.group} />
    case 'contacts': return <Contacts />
    case 'new-group': return <NewGroup />
    case 'invite': return <Invite />
    case 'status': return <Status />
    default: return <p class='placeholder'>Choose a conversation.</p>
  }
}

function App () {
  useEffect(() => {
    refreshAll().catch(() => {})
    connect()
  }, [])
  if (loggedOut.value) {
    return (
      <main class='logged-out'>
        <h1>parley</h1>
        <p role='alert'>Open the app with <code>parley open</code>: this page has no session (the daemon restarted, or the page was opened without its login link).</p>
      </main>
    )
  }
  const screen = route.value.screen
  return (
    <div class={`shell screen-${screen}`}>
      <header class='top'>
        <h1><a href='#/'>parley</a></h1>
        <nav aria-label='Main'>
          <a href='#/contacts' aria-current={screen === 'contacts' ? 'page' : undefined}>Contacts</a>
          <a href='#/new-group' aria-current={screen === 'new-group' ? 'page' : undefined}>New group</a>
          <a href='#/invite' aria-current={screen === 'invite' ? 'page' : undefined}>Invite</a>
          <a href='#/status' aria-current={screen === 'status' ? 'page' : undefined}>Status</a>
        </nav>
        <span class={`live ${live.value ? 'on' : 'off'}`}>{live.value ? 'live' : 'connecting…'}</span>
        <ThemeChoice />
      </header>
      <ConversationList />
      <main>
        <Main />
      </main>
      <div class='sr-only' aria-live='polite' role='status'>{announcement.value}</div>
    </div>
  )
}

const root = document.getElementById('app')
if (root != null) render(<App />, root)
