import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { reserved, until, useNetwork } from '../fixtures/network.js'
import type { ParleyNode } from '../../index.js'

/** The abort listeners the WebRTC transport keeps on its lifetime signal (js-libp2p #3567). */
function webrtcShutdownListeners (node: ParleyNode): number {
  const transports: any[] = (node.libp2p as any).components.transportManager.getTransports()
  const webrtc = transports.find(t => t[Symbol.toStringTag] === '@libp2p/webrtc')
  return getEventListeners(webrtc.shutdownController.signal, 'abort').length
}

async function eventually (check: () => boolean): Promise<void> {
  while (!check()) await new Promise(resolve => setTimeout(resolve, 50))
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

    for (let round = 1; round <= 3; round++) {
      await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })
      await alice.send(bob.peerId, `round ${round}`)
      await until(() => alice.pathTo(bob.peerId) === 'direct', alice, 'path:change')
      // the transport registers its listener right after the connection opens
      await until(() => webrtcShutdownListeners(alice) === baseline + 1, alice.libp2p, 'peer:identify')
      await alice.libp2p.hangUp(bob.peerId)
      await until(() => alice.pathTo(bob.peerId) == null, alice, 'path:change')
      // the listener goes when the peer connection closes, which no event reports: poll
      await eventually(() => webrtcShutdownListeners(alice) === baseline)
    }
    expect(webrtcShutdownListeners(alice)).toBe(baseline)
    // the answering side closes its peer connections once it sees them closed or
    // failed, which libdatachannel may take its ICE timeout to notice
    await eventually(() => webrtcShutdownListeners(bob) === bobBaseline)
  })
})
