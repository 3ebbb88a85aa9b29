import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { parleyAddressSorter } from '../../node/network/address-sorter.js'
import type { NetworkInterfaceInfo } from 'node:os'

const lo: NetworkInterfaceInfo[] = [
  { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' },
  { address: '::1', netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 'IPv6', mac: '00:00:00:00:00:00', internal: true, cidr: '::1/128', scopeid: 0 }
]
const v4: NetworkInterfaceInfo = { address: '192.168.1.20', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '192.168.1.20/24' }
const v6Global: NetworkInterfaceInfo = { address: '2001:db8:1:2::20', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: '2001:db8:1:2::20/64', scopeid: 0 }
const v6Ula: NetworkInterfaceInfo = { address: 'fd12:3456:789a:1::20', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fd12:3456:789a:1::20/64', scopeid: 0 }
const v6LinkLocal: NetworkInterfaceInfo = { address: 'fe80::1:20', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1:20/64', scopeid: 2 }

/** This machine's interfaces as the sorter sees them; each test sets its own. */
let interfaces: Record<string, NetworkInterfaceInfo[]> = {}

vi.mock('node:os', async (importOriginal) => ({ ...await importOriginal<typeof import('node:os')>(), networkInterfaces: () => interfaces }))

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const RELAY = '/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWQtZ2kU33tyb5i3seB3cbHXTZ6DTvAS85mYLcF8mrRxMF'
const CIRCUIT = `${RELAY}/p2p-circuit/p2p/${PEER}`

/** The sorter reads the interfaces at most every 30 s: each machine below is a new half-minute. */
function machine (ifaces: Record<string, NetworkInterfaceInfo[]>): void {
  interfaces = ifaces
  vi.setSystemTime(Date.now() + 31_000)
}

function sorted (addrs: string[]): string[] {
  return addrs.map(a => ({ multiaddr: multiaddr(a), isCertified: false }))
    .sort(parleyAddressSorter)
    .map(a => a.multiaddr.toString())
}

describe('dial order with IPv6', () => {
  beforeAll(() => { vi.useFakeTimers({ toFake: ['Date'] }) })
  afterAll(() => { vi.useRealTimers() })

  it('dials a neighbour on its own IPv6 subnet first, global or unique-local, like an IPv4 one', () => {
    machine({ lo, eth0: [v4, v6Global, v6Ula, v6LinkLocal] })
    expect(sorted([CIRCUIT, '/ip6/2001:db8:1:2::31/tcp/1', '/ip6/2a00:1450:4001::1/tcp/1'])).toEqual([
      '/ip6/2001:db8:1:2::31/tcp/1', '/ip6/2a00:1450:4001::1/tcp/1', CIRCUIT
    ])
    expect(sorted([CIRCUIT, '/ip6/fd12:3456:789a:1::31/tcp/1'])).toEqual(['/ip6/fd12:3456:789a:1::31/tcp/1', CIRCUIT])
  })

  it('keeps another network\'s unique-local and link-local addresses after the relay', () => {
    machine({ lo, eth0: [v4, v6Global, v6Ula, v6LinkLocal] })
    // link-local: the same fe80::/64 on every link, and not dialable without a zone
    expect(sorted(['/ip6/fe80::1:31/tcp/1', '/ip6/fd99::31/tcp/1', CIRCUIT])[0]).toBe(CIRCUIT)
  })

  it('ranks a public IPv6 address like a public IPv4 one on a dual-stack machine: before the relay', () => {
    machine({ lo, eth0: [v4, v6Global] })
    expect(sorted([CIRCUIT, '/ip6/2a00:1450:4001::1/tcp/1', '/ip4/8.8.4.4/tcp/1']).at(-1)).toBe(CIRCUIT)
  })

  it('on an IPv4-only machine (link-local IPv6 only) dials a peer\'s public IPv6 address after the relay', () => {
    machine({ lo, eth0: [v4, v6LinkLocal] })
    expect(sorted(['/ip6/2a00:1450:4001::1/tcp/1', CIRCUIT, '/ip4/8.8.4.4/tcp/1'])).toEqual([
      '/ip4/8.8.4.4/tcp/1', CIRCUIT, '/ip6/2a00:1450:4001::1/tcp/1'
    ])
  })

  it('on an IPv6-only machine dials a peer\'s public IPv4 address after the relay', () => {
    machine({ lo, eth0: [v6Global, v6LinkLocal] })
    expect(sorted(['/ip4/8.8.4.4/tcp/1', CIRCUIT, '/ip6/2a00:1450:4001::1/tcp/1'])).toEqual([
      '/ip6/2a00:1450:4001::1/tcp/1', CIRCUIT, '/ip4/8.8.4.4/tcp/1'
    ])
  })

  it('with loopback only (no routable address) treats both families as reachable', () => {
    machine({ lo })
    expect(sorted([CIRCUIT, '/ip6/2a00:1450:4001::1/tcp/1', '/ip4/8.8.4.4/tcp/1']).at(-1)).toBe(CIRCUIT)
    expect(sorted(['/ip6/::1/tcp/1', CIRCUIT])[0]).toBe('/ip6/::1/tcp/1')
  })
})
