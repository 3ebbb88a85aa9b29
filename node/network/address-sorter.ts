import { networkInterfaces } from 'node:os'
import { isLoopback, isPrivate, reliableTransportsFirst } from '@libp2p/utils'
import { CODE_IP4, CODE_IP6, CODE_P2P_CIRCUIT, CODE_WEBRTC } from '@multiformats/multiaddr'
import type { Address } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** IPv4 subnets of this machine's interfaces, as [network, mask] pairs. */
function ownSubnets (): Array<[number, number]> {
  const subnets: Array<[number, number]> = []
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family !== 'IPv4') continue
      const mask = ipv4ToInt(a.netmask)
      subnets.push([(ipv4ToInt(a.address) & mask) >>> 0, mask])
    }
  }
  return subnets
}

function ipv4ToInt (ip: string): number {
  return ip.split('.').reduce((n, octet) => ((n << 8) | Number(octet)) >>> 0, 0)
}

let cached: { at: number, subnets: Array<[number, number]> } | undefined

function onOwnSubnet (ma: Multiaddr): boolean {
  const ip4 = ma.getComponents().find(c => c.code === CODE_IP4)?.value
  if (ip4 == null) return false
  if (cached == null || Date.now() - cached.at > 30_000) cached = { at: Date.now(), subnets: ownSubnets() }
  const n = ipv4ToInt(ip4)
  return cached.subnets.some(([network, mask]) => ((n & mask) >>> 0) === network)
}

/**
 * How early an address is dialled. libp2p dials a peer's addresses one at a
 * time, each with its own timeout; a NAT silently drops packets to addresses
 * that are not reachable, so every dead address costs seconds before the one
 * that works. parley's order: the same machine or LAN, then public direct
 * addresses, then relay circuits (which work behind any NAT, so the first
 * message goes at once), then other private addresses (another LAN's, mostly
 * unreachable), and WebRTC last: its ICE takes seconds, and the path upgrader
 * opens it in the background anyway.
 */
function rank (ma: Multiaddr): number {
  const codes = ma.getComponents().map(c => c.code)
  if (codes.includes(CODE_WEBRTC)) return 4
  if (codes.includes(CODE_P2P_CIRCUIT)) return 2
  if (!codes.includes(CODE_IP4) && !codes.includes(CODE_IP6)) return 3
  if (isLoopback(ma) || onOwnSubnet(ma)) return 0
  return isPrivate(ma) ? 3 : 1
}

/** A compare function for libp2p's `connectionManager.addressSorter`. */
export function parleyAddressSorter (a: Address, b: Address): -1 | 0 | 1 {
  return Math.sign(rank(a.multiaddr) - rank(b.multiaddr)) as -1 | 0 | 1 ||
    Math.sign(Number(b.isCertified) - Number(a.isCertified)) as -1 | 0 | 1 ||
    reliableTransportsFirst(a.multiaddr, b.multiaddr)
}
