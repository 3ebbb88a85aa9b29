import { networkInterfaces } from 'node:os'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it, vi } from 'vitest'
import { parleyAddressSorter } from '../../node/network/address-sorter.js'
import type { NetworkInterfaceInfo } from 'node:os'

/**
 * This machine's interfaces, as the sorter sees them: a fixed set, so that
 * what is tested does not depend on where the tests run. Besides loopback,
 * two LANs whose addresses have a high first octet (198.18.0.0/15, a
 * benchmarking range some VMs use, and a home router's 192.168.1.0/24).
 */
const INTERFACES: Record<string, NetworkInterfaceInfo[]> = {
  lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
  eth0: [{ address: '198.18.0.5', netmask: '255.254.0.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '198.18.0.5/15' }],
  wlan0: [{ address: '192.168.1.20', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:02', internal: false, cidr: '192.168.1.20/24' }]
}

vi.mock('node:os', async (importOriginal) => ({ ...await importOriginal<typeof import('node:os')>(), networkInterfaces: () => INTERFACES }))

const PEER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const RELAY = '/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWQtZ2kU33tyb5i3seB3cbHXTZ6DTvAS85mYLcF8mrRxMF'

function sorted (addrs: string[]): string[] {
  return addrs.map(a => ({ multiaddr: multiaddr(a), isCertified: false }))
    .sort(parleyAddressSorter)
    .map(a => a.multiaddr.toString())
}

describe('dial order', () => {
  it('puts this LAN first, then public, relay circuits, other private addresses, and WebRTC last', () => {
    // an address on one of this machine's own IPv4 subnets, whatever they are here
    const own = Object.values(networkInterfaces()).flat().find(a => a?.family === 'IPv4' && !a.internal)
    const lan = own == null ? '/ip4/127.0.0.1/tcp/1' : `/ip4/${own.address}/tcp/1`
    const addrs = [
      `${RELAY}/p2p-circuit/webrtc/p2p/${PEER}`,
      '/ip4/10.99.99.99/tcp/1',
      `${RELAY}/p2p-circuit/p2p/${PEER}`,
      '/ip4/8.8.4.4/tcp/1',
      lan
    ]
    expect(sorted(addrs)).toEqual([
      lan,
      '/ip4/8.8.4.4/tcp/1',
      `${RELAY}/p2p-circuit/p2p/${PEER}`,
      '/ip4/10.99.99.99/tcp/1',
      `${RELAY}/p2p-circuit/webrtc/p2p/${PEER}`
    ])
  })

  it('recognises its own subnet for addresses with a high first octet (198.18.x, 192.168.x)', () => {
    const high = Object.values(networkInterfaces()).flat().filter(a => a?.family === 'IPv4' && !a.internal && Number(a.address.split('.')[0]) >= 128)
    expect(high.length).toBeGreaterThan(0)
    for (const own of high) {
      const neighbour = own!.address.replace(/\.\d+$/, '.250')
      expect(sorted([`${RELAY}/p2p-circuit/p2p/${PEER}`, `/ip4/${neighbour}/tcp/1`])[0]).toBe(`/ip4/${neighbour}/tcp/1`)
    }
  })
})
