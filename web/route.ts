/**
 * Hash routing (`#/c/<peer>`, `#/g/<group>`, `#/contacts`…): the daemon
 * serves one page and only the files that exist, so the screen is chosen
 * by the fragment, which never reaches the server.
 */
import { signal } from '@preact/signals'

export type Route =
  | { screen: 'home' }
  | { screen: 'peer', peer: string }
  | { screen: 'group', group: string }
  | { screen: 'contacts' }
  | { screen: 'new-group' }
  | { screen: 'invite' }
  | { screen: 'status' }

export function parseRoute (hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').map(part => {
    try {
      return decodeURIComponent(part)
    } catch {
      return ''
    }
  })
  switch (parts[0]) {
    case 'c': return parts[1] ? { screen: 'peer', peer: parts[1] } : { screen: 'home' }
    case 'g': return parts[1] ? { screen: 'group', group: parts[1] } : { screen: 'home' }
    case 'contacts': return { screen: 'contacts' }
    case 'new-group': return { screen: 'new-group' }
    case 'invite': return { screen: 'invite' }
    case 'status': return { screen: 'status' }
    default: return { screen: 'home' }
  }
}

export const route = signal<Route>(parseRoute(location.hash))
addEventListener('hashchange', () => { route.value = parseRoute(location.hash) })

export const peerHref = (peer: string): string => `#/c/${encodeURIComponent(peer)}`
export const groupHref = (group: string): string => `#/g/${encodeURIComponent(group)}`

export function go (href: string): void {
  location.hash = href
}
