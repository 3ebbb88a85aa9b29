import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { reserved, useNetwork } from '../fixtures/network.js'
import { until } from '../fixtures/wait.js'
import type { ParleyNode } from '../../index.js'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The abort listeners the WebRTC transport keeps on its lifetime signal (js-libp2p #3567). */
function webrtcShutdownListeners (node: ParleyNode): number {
  const transports: any[] = (node.libp2p as any).components.transportManager.getTransports()
  const webrtc = transports.find(t => t[Symbol.toStringTag] === '@libp2p/webrtc')
  return getEventListeners(webrtc.shutdownController.signal, 'abort').length
}

/**
 * Dials a WebRTC address, again when an attempt fails: on a loaded machine the
 * signalling over the relay, or ICE, can outlast libp2p's own dial timeout, and
 * this test is about what a connection leaves behind, not about dialling.
 */
async function dialWebRTC (node: ParleyNode, addr: Multiaddr): Promise<Connection> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await node.libp2p.dial(addr, { signal: AbortSignal.timeout(60_000) })
    } catch (err) {
      if (attempt === 3) throw err
    }
  }
}

describe('WebRTC connections', () => {
  const net = useNetwork()

  it('leave nothing behind in the transport when they close (js-libp2p #3567)', async () => {
    const relay = await net.relay()
    const config = { listen: ['/webrtc'], relays: relay.multiaddrs }
    const alice = await net.node(config)
    const bob = await net.node(config)
    await Promise.all([reserved(alice), reserved(bob)])
    const baseline = webrtcShutdownListeners(alice)
    const bobBaseline = webrtcShutdownListeners(bob)

    // WebRTC straight away (not through the path upgrader): this test is about
    // what a WebRTC connection leaves behind, whoever opened it
    const webrtcAddr = bob.multiaddrs.find(a => a.toString().includes('/p2p-circuit/webrtc'))
    expect(webrtcAddr).toBeDefined()
    const connection = await dialWebRTC(alice, webrtcAddr!)
    expect(connection.remoteAddr.toString()).toContain('/webrtc')
    // the transport registers its listener right after the connection opens
    await until(() => webrtcShutdownListeners(alice) === baseline + 1, { every: 50, what: 'alice\'s transport to register its listener' })
    await alice.libp2p.hangUp(bob.peerId)
    // the listener goes when the peer connection closes, which no event reports:
    // poll. Without the guard it stays for the life of the transport.
    await until(() => webrtcShutdownListeners(alice) === baseline, { every: 50, what: () => `alice's transport to drop its listener (${webrtcShutdownListeners(alice) - baseline} left)` })
    // the answering side closes its peer connection once it sees it closed or
    // failed, which libdatachannel may take its ICE timeout to notice
    await until(() => webrtcShutdownListeners(bob) === bobBaseline, { every: 50, what: () => `bob's transport to drop its listener (${webrtcShutdownListeners(bob) - bobBaseline} left)` })
  })
})
