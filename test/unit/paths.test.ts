import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { PathUpgrader, UPGRADE_MAX_FAILURES } from '../../node/network/paths.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { PathChange, PathUpgraderComponents } from '../../node/network/paths.js'
import type { AbortOptions, Connection, IdentifyResult, Libp2pEvents, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const WEBRTC_SIGNALING = '/webrtc-signaling/0.0.1'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** Lets every promise reaction already queued run: the stubs answer within microtasks. */
async function flush (): Promise<void> {
  await new Promise(resolve => { setImmediate(resolve) })
}

interface IceState { connectionState: string }

function fakeConnection (remotePeer: PeerId, id: string, remoteAddr: Multiaddr, direction: 'inbound' | 'outbound' = 'outbound', ice?: IceState): Connection {
  return {
    id,
    remotePeer,
    remoteAddr,
    direction,
    status: 'open',
    limits: undefined,
    abort: vi.fn(),
    ...(ice == null ? {} : { maConn: { peerConnection: ice } })
  } as unknown as Connection
}

/** A libp2p as the path upgrader sees it: a connection list the test changes, and its events. */
class FakeNetwork {
  readonly clock = new FakeClock()
  readonly events = new TypedEventEmitter<Libp2pEvents>()
  connections: Connection[] = []
  readonly dial = vi.fn(async (_addrs: Multiaddr[], _options?: AbortOptions): Promise<Connection> => { throw new Error('ICE failed') })
  readonly components: PathUpgraderComponents = {
    getConnections: (peer) => this.connections.filter(c => c.remotePeer.equals(peer)),
    dial: this.dial,
    peerStore: { get: (async () => ({ addresses: [] })) as unknown as PathUpgraderComponents['peerStore']['get'] },
    events: this.events,
    logger: defaultLogger(),
    clock: this.clock
  }

  open (connection: Connection): void {
    this.connections.push(connection)
    this.events.safeDispatchEvent('connection:open', { detail: connection })
  }

  close (connection: Connection): void {
    (connection as { status: string }).status = 'closed'
    this.connections = this.connections.filter(c => c !== connection)
    this.events.safeDispatchEvent('connection:close', { detail: connection })
  }

  identify (connection: Connection, listenAddrs: Multiaddr[], protocols = [WEBRTC_SIGNALING]): void {
    this.events.safeDispatchEvent('peer:identify', {
      detail: { peerId: connection.remotePeer, listenAddrs, protocols, connection } as unknown as IdentifyResult
    })
  }
}

describe('the path upgrader', async () => {
  const bob = await peer()
  const relay = await peer()
  const viaRelay = multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${relay}/p2p-circuit`)
  const relayedAddr = viaRelay.encapsulate(`/p2p/${bob}`)
  const webrtcAddr = viaRelay.encapsulate(`/webrtc/p2p/${bob}`)

  let upgrader: PathUpgrader | undefined
  afterEach(() => { upgrader?.stop() })

  function start (network: FakeNetwork): { changes: PathChange[] } {
    upgrader = new PathUpgrader(network.components)
    const changes: PathChange[] = []
    upgrader.addEventListener('path:change', (evt) => { changes.push(evt.detail) })
    upgrader.start()
    return { changes }
  }

  /** An outbound relayed connection to bob, identified as accepting WebRTC. */
  function relayedToBob (network: FakeNetwork, announced = [webrtcAddr]): Connection {
    const relayed = fakeConnection(bob, 'relayed', relayedAddr)
    network.open(relayed)
    network.identify(relayed, announced)
    return relayed
  }

  it('reports the path when a peer connects and when it goes', () => {
    const network = new FakeNetwork()
    const { changes } = start(network)
    const relayed = fakeConnection(bob, 'relayed', relayedAddr)
    network.open(relayed)
    expect(upgrader?.pathTo(bob)).toBe('relayed')
    network.close(relayed)
    expect(upgrader?.pathTo(bob)).toBeUndefined()
    expect(changes).toEqual([
      { peer: bob.toString(), path: 'relayed', transport: 'circuit-relay', remoteAddr: relayedAddr.toString() },
      { peer: bob.toString(), path: undefined, transport: undefined, remoteAddr: undefined }
    ])
  })

  it('dials WebRTC through the same relay when an outbound relayed connection is identified', () => {
    const network = new FakeNetwork()
    start(network)
    relayedToBob(network)
    expect(network.dial).toHaveBeenCalledTimes(1)
    expect(network.dial.mock.calls[0][0].map(a => a.toString())).toEqual([webrtcAddr.toString()])
  })

  it('leaves alone a peer that does not accept WebRTC, and inbound relayed connections', () => {
    const network = new FakeNetwork()
    start(network)
    relayedToBob(network, [])
    const inbound = fakeConnection(bob, 'inbound', relayedAddr, 'inbound')
    network.open(inbound)
    network.identify(inbound, [webrtcAddr])
    expect(network.dial).not.toHaveBeenCalled()
  })

  it('reports the direct path once the WebRTC connection is open and ICE connected', async () => {
    const network = new FakeNetwork()
    const { changes } = start(network)
    const ice = { connectionState: 'connecting' }
    const webrtc = fakeConnection(bob, 'webrtc', webrtcAddr, 'outbound', ice)
    network.dial.mockImplementationOnce(async () => { network.open(webrtc); return webrtc })
    const direct = new Promise<PathChange>(resolve => {
      upgrader?.addEventListener('path:change', (evt) => { if (evt.detail.path === 'direct') resolve(evt.detail) })
    })
    relayedToBob(network)
    // open, but not a path until ICE connects
    expect(changes.map(c => c.path)).toEqual(['relayed'])
    network.clock.advance(250)
    ice.connectionState = 'connected'
    network.clock.advance(250)
    expect(await direct).toEqual({ peer: bob.toString(), path: 'direct', transport: 'webrtc', remoteAddr: webrtcAddr.toString() })
    expect(upgrader?.pathTo(bob)).toBe('direct')
    await flush()
    expect(network.clock.pending).toBe(0)
  })

  it('closes a WebRTC connection whose ICE never connects', () => {
    const network = new FakeNetwork()
    start(network)
    const webrtc = fakeConnection(bob, 'webrtc', webrtcAddr, 'inbound', { connectionState: 'connecting' })
    network.open(webrtc)
    network.clock.advance(20_000)
    expect(webrtc.abort).not.toHaveBeenCalled()
    network.clock.advance(250)
    expect(webrtc.abort).toHaveBeenCalled()
  })

  it('tries a failed upgrade again with back-off, then gives up while the relayed connection lasts', async () => {
    const network = new FakeNetwork()
    start(network)
    const relayed = relayedToBob(network)
    await flush()
    const delays: number[] = []
    for (let attempt = 1; attempt < UPGRADE_MAX_FAILURES; attempt++) {
      expect(network.dial).toHaveBeenCalledTimes(attempt)
      // the retry timer is the only one left: the failed dial's timeout was cleared
      expect(network.clock.pending).toBe(1)
      const delay = (network.clock.nextAt ?? 0) - network.clock.now()
      delays.push(delay)
      network.clock.advance(delay - 1)
      await flush()
      expect(network.dial).toHaveBeenCalledTimes(attempt)
      network.clock.advance(1)
      await flush()
    }
    expect(delays).toEqual([2_000, 4_000, 8_000, 16_000])

    // the last failure leaves no timer, and nothing brings the doomed upgrade back
    expect(network.dial).toHaveBeenCalledTimes(UPGRADE_MAX_FAILURES)
    expect(network.clock.pending).toBe(0)
    network.identify(relayed, [webrtcAddr])
    network.clock.advance(3_600_000)
    await flush()
    expect(network.dial).toHaveBeenCalledTimes(UPGRADE_MAX_FAILURES)
    expect(upgrader?.pathTo(bob)).toBe('relayed')

    // a new connection to the peer starts over
    network.close(relayed)
    relayedToBob(network)
    await flush()
    expect(network.dial).toHaveBeenCalledTimes(UPGRADE_MAX_FAILURES + 1)
    expect((network.clock.nextAt ?? 0) - network.clock.now()).toBe(2_000)
  })

  it('counts an upgrade whose WebRTC connection opened but never connected ICE as a failure, not as a lost path', async () => {
    const network = new FakeNetwork()
    start(network)
    const webrtc = fakeConnection(bob, 'webrtc', webrtcAddr, 'outbound', { connectionState: 'connecting' })
    network.dial.mockImplementationOnce(async () => { network.open(webrtc); return webrtc })
    relayedToBob(network)
    await flush()
    expect(upgrader?.pathTo(bob)).toBe('relayed')

    network.clock.advance(20_250)
    expect(webrtc.abort).toHaveBeenCalled()
    network.close(webrtc)
    // the back-off's first delay, not the quick retry after a lost direct path
    expect(network.clock.pending).toBe(1)
    expect((network.clock.nextAt ?? 0) - network.clock.now()).toBe(2_000)
  })

  it('gives up after repeated WebRTC connections that never connect ICE', async () => {
    const network = new FakeNetwork()
    start(network)
    const opened: Connection[] = []
    network.dial.mockImplementation(async () => {
      const webrtc = fakeConnection(bob, `webrtc-${opened.length}`, webrtcAddr, 'outbound', { connectionState: 'connecting' })
      opened.push(webrtc)
      network.open(webrtc)
      return webrtc
    })
    relayedToBob(network)
    await flush()
    for (let attempt = 1; attempt <= UPGRADE_MAX_FAILURES; attempt++) {
      expect(opened).toHaveLength(attempt)
      network.clock.advance(20_250)
      network.close(opened[attempt - 1])
      network.clock.advance((network.clock.nextAt ?? network.clock.now()) - network.clock.now())
      await flush()
    }
    expect(opened).toHaveLength(UPGRADE_MAX_FAILURES)
    expect(network.clock.pending).toBe(0)
  })

  it('starts the count over once ICE connects', async () => {
    const network = new FakeNetwork()
    start(network)
    relayedToBob(network)
    await flush()
    for (let attempt = 1; attempt < UPGRADE_MAX_FAILURES - 1; attempt++) {
      network.clock.advance((network.clock.nextAt ?? 0) - network.clock.now())
      await flush()
    }
    const webrtc = fakeConnection(bob, 'webrtc', webrtcAddr, 'outbound', { connectionState: 'connected' })
    network.dial.mockImplementationOnce(async () => { network.open(webrtc); return webrtc })
    network.clock.advance((network.clock.nextAt ?? 0) - network.clock.now())
    await flush()
    expect(upgrader?.pathTo(bob)).toBe('direct')

    // the direct path is lost: the retries that follow get the whole allowance again
    network.close(webrtc)
    network.clock.advance(1_000)
    await flush()
    const before = network.dial.mock.calls.length
    for (let failure = 1; failure < UPGRADE_MAX_FAILURES; failure++) {
      expect(network.clock.pending).toBe(1)
      network.clock.advance((network.clock.nextAt ?? 0) - network.clock.now())
      await flush()
    }
    expect(network.dial.mock.calls.length - before).toBe(UPGRADE_MAX_FAILURES - 1)
    expect(network.clock.pending).toBe(0)
  })

  it('gives up a WebRTC dial after 30 s and counts it as a failure', async () => {
    const network = new FakeNetwork()
    start(network)
    let signal: AbortSignal | undefined
    network.dial.mockImplementationOnce(async (_addrs, options) => new Promise((resolve, reject) => {
      signal = options?.signal
      signal?.addEventListener('abort', () => { reject(signal?.reason) })
    }))
    relayedToBob(network)
    network.clock.advance(30_000)
    expect(signal?.reason).toEqual(expect.objectContaining({ name: 'TimeoutError' }))
    await flush()
    expect((network.clock.nextAt ?? 0) - network.clock.now()).toBe(2_000)
  })

  it('forgets a peer when its last connection closes: no retry left, the back-off starts over', async () => {
    const network = new FakeNetwork()
    start(network)
    const first = relayedToBob(network)
    await flush()
    network.clock.advance(2_000)
    await flush()
    expect(network.dial).toHaveBeenCalledTimes(2)
    expect((network.clock.nextAt ?? 0) - network.clock.now()).toBe(4_000)

    network.close(first)
    expect(network.clock.pending).toBe(0)

    relayedToBob(network)
    await flush()
    expect(network.dial).toHaveBeenCalledTimes(3)
    expect((network.clock.nextAt ?? 0) - network.clock.now()).toBe(2_000)
  })

  it('keeps nothing of a peer whose connection closed while an upgrade was under way', async () => {
    const network = new FakeNetwork()
    start(network)
    const failure = Promise.withResolvers<Connection>()
    network.dial.mockImplementationOnce(async () => failure.promise)
    const relayed = relayedToBob(network)
    network.close(relayed)
    failure.reject(new Error('ICE failed'))
    await flush()
    expect(network.clock.pending).toBe(0)

    // that failure was not counted: a new connection's back-off starts at the first delay
    relayedToBob(network)
    await flush()
    expect((network.clock.nextAt ?? 0) - network.clock.now()).toBe(2_000)
  })

  it('tries to get the direct path back when the WebRTC connection closes and the relayed one stays', async () => {
    const network = new FakeNetwork()
    start(network)
    const webrtc = fakeConnection(bob, 'webrtc', webrtcAddr, 'outbound', { connectionState: 'connected' })
    network.dial.mockImplementationOnce(async () => { network.open(webrtc); return webrtc })
    relayedToBob(network)
    await flush()
    expect(upgrader?.pathTo(bob)).toBe('direct')

    network.close(webrtc)
    expect(upgrader?.pathTo(bob)).toBe('relayed')
    network.clock.advance(999)
    await flush()
    expect(network.dial).toHaveBeenCalledTimes(1)
    network.clock.advance(1)
    await flush()
    expect(network.dial).toHaveBeenCalledTimes(2)
  })

  it('stop() aborts the upgrade under way, cancels every timer and stops listening', async () => {
    const network = new FakeNetwork()
    const { changes } = start(network)
    relayedToBob(network)
    await flush()
    expect(network.clock.pending).toBe(1)

    let signal: AbortSignal | undefined
    network.dial.mockImplementationOnce(async (_addrs, options) => new Promise((resolve, reject) => {
      signal = options?.signal
      signal?.addEventListener('abort', () => { reject(signal?.reason) })
    }))
    network.clock.advance(2_000)
    await flush()
    expect(signal?.aborted).toBe(false)

    upgrader?.stop()
    expect(signal?.aborted).toBe(true)
    await flush()
    expect(network.clock.pending).toBe(0)

    const seen = changes.length
    network.open(fakeConnection(bob, 'later', relayedAddr))
    expect(changes.length).toBe(seen)
  })
})
