import { isLinkLocal, isLoopback, isPrivate } from '@libp2p/utils'
import { CODE_DNS, CODE_DNS4, CODE_DNS6, CODE_DNSADDR, CODE_IP4, CODE_IP6, CODE_P2P_CIRCUIT, multiaddr } from '@multiformats/multiaddr'
import type { RelayReservationStatus } from './network/reservations.js'
import type { Reachability } from './types.js'

/** What to tell a user who has no relay. */
export const ADD_RELAY_HINT = 'add one with `parley relays add <relay link>` (a relay\'s operator gives you the link)'

/** An address other machines on the internet could dial: a public IP or a DNS name, not a relay circuit. */
export function isPublicAddress (addr: string): boolean {
  let ma
  try {
    ma = multiaddr(addr)
  } catch {
    return false
  }
  const codes = ma.getComponents().map(c => c.code)
  if (codes.includes(CODE_P2P_CIRCUIT)) return false
  const dns = ma.getComponents().find(c => [CODE_DNS, CODE_DNS4, CODE_DNS6, CODE_DNSADDR].includes(c.code))
  if (dns != null) return dns.value !== 'localhost' && dns.value?.endsWith('.local') !== true
  if (!codes.includes(CODE_IP4) && !codes.includes(CODE_IP6)) return false
  return !isLoopback(ma) && !isPrivate(ma) && !isLinkLocal(ma)
}

/**
 * Whether this node can be reached from outside its LAN, and why not: through
 * a relay when it holds at least one reservation, else at a public address
 * when it has one (announced, or confirmed by AutoNAT: libp2p lists only
 * those), else only on its LAN. Pure: from the reservation keeper's statuses
 * (with each relay's last error) and the node's current addresses.
 */
export function computeReachability (relays: Array<RelayReservationStatus & { lastError?: string }>, addrs: string[]): Reachability {
  const reserved = relays.filter(r => r.reserved)
  const reasons: string[] = []
  for (const r of relays) {
    if (r.reserved) continue
    reasons.push(r.failures === 0
      ? `relay ${r.relay}: reserving (no answer yet)`
      : `relay ${r.relay}: not reserved${r.lastError != null ? ` (${r.lastError})` : ''}`)
  }
  if (reserved.length > 0) return { reachable: true, via: 'relay', relay: reserved[0].relay, reasons }
  const publicAddr = addrs.find(isPublicAddress)
  if (publicAddr != null) return { reachable: true, via: 'public address', address: publicAddr, reasons }
  if (relays.length === 0) reasons.push(`no relay configured: ${ADD_RELAY_HINT}`)
  reasons.push('no public address announced or confirmed')
  return { reachable: false, via: 'lan only', reasons }
}
