import { networkInterfaces } from 'node:os'
import { IpNet } from '@chainsafe/netmask'
import { isLinkLocalIp, isLoopback, isPrivate, reliableTransportsFirst } from '@libp2p/utils'
import { CODE_IP4, CODE_IP6, CODE_P2P_CIRCUIT, CODE_WEBRTC } from '@multiformats/multiaddr'
import type { Address } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

type Family = 'ip4' | 'ip6'

interface OwnNetworks {
  /** The subnets of this machine's interfaces, IPv4 and IPv6 (link-local ones left out: they need a zone to dial). */
  subnets: IpNet[]
  /** The families this machine has a routable address in (not loopback, not link-local). */
  families: Set<Family>
}

function ownNetworks (): OwnNetworks {
  const subnets: IpNet[] = []
  const families = new Set<Family>()
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      const address = a.address.replace(/%.*$/, '')
      if (isLinkLocalIp(address)) continue
      const [, prefix] = a.cidr?.split('/') ?? []
      if (prefix != null) subnets.push(new IpNet(address, Number(prefix)))
      if (!a.internal) families.add(a.family === 'IPv6' ? 'ip6' : 'ip4')
    }
  }
  return { subnets, families }
}

let cached: { at: number, own: OwnNetworks } | undefined

function own (): OwnNetworks {
  if (cached == null || Date.now() - cached.at > 30_000) cached = { at: Date.now(), own: ownNetworks() }
  return cached.own
}

function ipOf (ma: Multiaddr): { family: Family, ip: string } | undefined {
  const first = ma.getComponents()[0]
  if (first?.value == null) return undefined
  if (first.code === CODE_IP4) return { family: 'ip4', ip: first.value }
  if (first.code === CODE_IP6) return { family: 'ip6', ip: first.value.replace(/%.*$/, '') }
  return undefined
}

function onOwnSubnet (ip: string): boolean {
  try {
    return own().subnets.some(net => net.contains(ip))
  } catch {
    return false
  }
}

/**
 * Whether this machine cannot reach `family` at all: it has routable addresses,
 * none of them in that family (an IPv4-only host and a peer's IPv6 address, an
 * IPv6-only one and an IPv4 address). A machine with none (loopback only)
 * counts as reaching both.
 */
function unreachableFamily (family: Family): boolean {
  const { families } = own()
  return families.size > 0 && !families.has(family)
}

/**
 * How early an address is dialled. libp2p dials a peer's addresses one at a
 * time, each with its own timeout; a NAT silently drops packets to addresses
 * that are not reachable, so every dead address costs seconds before the one
 * that works. parley's order: the same machine or LAN (IPv4 or IPv6 subnet),
 * then public direct addresses, then relay circuits (which work behind any
 * NAT, so the first message goes at once), then other private addresses
 * (another LAN's, mostly unreachable) and addresses of a family this machine
 * has no address in, and WebRTC last: its ICE takes seconds, and the path
 * upgrader opens it in the background anyway.
 */
function rank (ma: Multiaddr): number {
  const codes = ma.getComponents().map(c => c.code)
  if (codes.includes(CODE_WEBRTC)) return 4
  if (codes.includes(CODE_P2P_CIRCUIT)) return 2
  const ip = ipOf(ma)
  if (ip == null) return 3
  if (isLoopback(ma) || onOwnSubnet(ip.ip)) return 0
  if (unreachableFamily(ip.family)) return 3
  return isPrivate(ma) ? 3 : 1
}

/** A compare function for libp2p's `connectionManager.addressSorter`. */
export function parleyAddressSorter (a: Address, b: Address): -1 | 0 | 1 {
  return Math.sign(rank(a.multiaddr) - rank(b.multiaddr)) as -1 | 0 | 1 ||
    Math.sign(Number(b.isCertified) - Number(a.isCertified)) as -1 | 0 | 1 ||
    reliableTransportsFirst(a.multiaddr, b.multiaddr)
}
