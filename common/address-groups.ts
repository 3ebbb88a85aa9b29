/**
 * How per-address limits group remote addresses (the node's connection guard
 * and the relay's limits alike): by "IP", what one host controls, and by
 * "subnet", what one network or provider controls (the stand-in for
 * go-libp2p's per-ASN limit, without an ASN database).
 *
 * | | IP | subnet |
 * |---|---|---|
 * | IPv4 | the address | its /24 |
 * | IPv6 | its /64 (a host usually has a whole /64 to rotate through) | its /48 (a site) |
 *
 * An IPv4-mapped IPv6 address (`::ffff:198.51.100.7`, what a dual-stack socket
 * reports for an IPv4 client) counts as the IPv4 address it carries.
 */
import { isIPv4, isIPv6 } from 'node:net'
import { iPv4FromIPv6, IpNet, isIPv4mappedIPv6 } from '@chainsafe/netmask'
import { CODE_P2P_CIRCUIT } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface AddressGroups {
  /** The IPv4 address, or the IPv6 /64: `198.51.100.7`, `2001:0db8:0001:0002:0000:0000:0000:0000/64`. */
  ip: string
  /** The IPv4 /24 or the IPv6 /48: `198.51.100.0/24`, `2001:0db8:0001:0000:0000:0000:0000:0000/48`. */
  subnet: string
}

/** Groups of an IP address given as a string; undefined if it is not an IP address. */
export function groupsOfIp (address: string): AddressGroups | undefined {
  // a zone id (fe80::1%eth0) names an interface, not a host
  const ip = address.replace(/%.*$/, '')
  if (isIPv4(ip)) return { ip, subnet: new IpNet(ip, 24).toString() }
  if (!isIPv6(ip)) return undefined
  const bytes = new IpNet(ip, 128).network
  if (isIPv4mappedIPv6(bytes)) return groupsOfIp(Array.from(iPv4FromIPv6(bytes)).join('.'))
  return { ip: new IpNet(ip, 64).toString(), subnet: new IpNet(ip, 48).toString() }
}

/**
 * What the per-IP and per-subnet limits count a connection under, from its
 * remote address. Undefined for a relayed connection (its address is the
 * relay's) and for addresses that are not IP: those are not limited by address.
 */
export function addressGroups (addr: Multiaddr): AddressGroups | undefined {
  const components = addr.getComponents()
  if (components.some(c => c.code === CODE_P2P_CIRCUIT)) return undefined
  const first = components[0]
  if (first?.value == null || (first.name !== 'ip4' && first.name !== 'ip6')) return undefined
  return groupsOfIp(first.value)
}
