import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { MAX_RELAYS, reservationKeeper } from '../../node/network/reservations.js'
import { FakeClock } from '../fixtures/fake-clock.js'
import type { ReservationKeeper, ReservationKeeperInit } from '../../node/network/reservations.js'
import type { Libp2pEvents, PeerId, Startable } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** Lets every promise reaction already queued run: the stubs answer within microtasks. */
async function flush (): Promise<void> {
  await new Promise(resolve => { setImmediate(resolve) })
}

/**
 * A transport manager as the keeper sees it: it listens on a relay's circuit
 * address (a reservation) only while that relay is up.
 */
class FakeTransports {
  readonly up = new Set<string>()
  readonly addrs: Multiaddr[] = [multiaddr('/ip4/127.0.0.1/tcp/4001')]
  readonly listen = vi.fn(async (addrs: Multiaddr[]) => {
    for (const addr of addrs) {
      const relay = addr.getComponents().findLast(c => c.name === 'p2p')?.value ?? ''
      if (this.up.has(relay)) this.reserve(addr)
    }
  })

  getAddrs = (): Multiaddr[] => this.addrs

  reserve (circuit: Multiaddr): void {
    this.addrs.push(circuit)
  }

  /** The relay dropped the reservation (restart, network loss). */
  drop (relay: PeerId): void {
    const i = this.addrs.findIndex(a => a.toString().includes(`/p2p/${relay}/p2p-circuit`))
    if (i >= 0) this.addrs.splice(i, 1)
  }

  /** The relays listened on, in order. */
  listenedOn (): string[] {
    return this.listen.mock.calls.map(([addrs]) => addrs.map(a => a.toString()).join(' '))
  }
}

describe('the reservation keeper', async () => {
  const relayA = await peer()
  const relayB = await peer()
  const addrA = multiaddr(`/ip4/127.0.0.1/tcp/5001/p2p/${relayA}`)
  const addrB = multiaddr(`/ip4/127.0.0.1/tcp/5002/p2p/${relayB}`)
  const circuitA = addrA.encapsulate('/p2p-circuit')
  const circuitB = addrB.encapsulate('/p2p-circuit')

  let keeper: (ReservationKeeper & Startable) | undefined
  afterEach(async () => { await keeper?.stop() })

  async function start (init: Partial<ReservationKeeperInit> = {}): Promise<{ clock: FakeClock, transports: FakeTransports, events: TypedEventEmitter<Libp2pEvents> }> {
    const clock = new FakeClock()
    const transports = new FakeTransports()
    const events = new TypedEventEmitter<Libp2pEvents>()
    keeper = reservationKeeper({ relays: [addrA, addrB], clock, random: () => 0.5, ...init })({
      transportManager: transports,
      events,
      logger: defaultLogger()
    }) as ReservationKeeper & Startable
    await keeper.start()
    await keeper.afterStart?.()
    return { clock, transports, events }
  }

  it('reserves again on each configured relay without a reservation, at the periodic check', async () => {
    const { clock, transports } = await start()
    transports.up.add(relayA.toString()).add(relayB.toString())
    clock.advance(4_999)
    expect(transports.listen).not.toHaveBeenCalled()
    clock.advance(1)
    await flush()
    expect(transports.listenedOn()).toEqual([circuitA.toString(), circuitB.toString()])
    expect(keeper?.status()).toEqual([
      { relay: addrA.toString(), reserved: true, failures: 0 },
      { relay: addrB.toString(), reserved: true, failures: 0 }
    ])
  })

  it('reserves only where the reservation is missing, as soon as an event says something changed', async () => {
    const { transports, events } = await start()
    transports.reserve(circuitA)
    events.safeDispatchEvent('self:peer:update', { detail: {} as any })
    await flush()
    expect(transports.listenedOn()).toEqual([circuitB.toString()])
  })

  it('reports each relay as reserved or not, with the failed attempts since', async () => {
    const { transports, events } = await start()
    transports.up.add(relayA.toString())
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    expect(keeper?.status()).toEqual([
      { relay: addrA.toString(), reserved: true, failures: 0 },
      { relay: addrB.toString(), reserved: false, failures: 1 }
    ])
  })

  it('backs off after failures: the delay doubles up to maxDelay, with equal jitter', async () => {
    const random = vi.fn(() => 0.5)
    const { clock, transports, events } = await start({ relays: [addrB], checkInterval: 3_600_000, initialDelay: 1_000, maxDelay: 8_000, random })
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    const delays: number[] = []
    for (let attempt = 1; attempt <= 6; attempt++) {
      expect(transports.listen).toHaveBeenCalledTimes(attempt)
      expect(keeper?.status()[0].failures).toBe(attempt)
      const delay = (clock.nextAt ?? 0) - clock.now()
      delays.push(delay)
      clock.advance(delay - 1)
      // an event during the back-off does not bring the attempt forward
      events.safeDispatchEvent('connection:open', { detail: {} as any })
      await flush()
      expect(transports.listen).toHaveBeenCalledTimes(attempt)
      clock.advance(1)
      await flush()
    }
    // delay d = min(8000, 1000·2^(n-1)), waited d/2 + random·d/2
    expect(delays).toEqual([750, 1_500, 3_000, 6_000, 6_000, 6_000])
  })

  it('reserves at once when a direct connection to the relay opens during the back-off: the relay is back', async () => {
    const { clock, transports, events } = await start({ relays: [addrB], checkInterval: 3_600_000, initialDelay: 1_000, maxDelay: 30_000 })
    // a long outage: the back-off has grown to 16 s
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    for (let attempt = 1; attempt < 5; attempt++) {
      clock.advance((clock.nextAt ?? 0) - clock.now())
      await flush()
    }
    expect(transports.listen).toHaveBeenCalledTimes(5)
    expect((clock.nextAt ?? 0) - clock.now()).toBe(12_000)

    transports.up.add(relayB.toString())
    // a connection to someone else, or to the relay through another relay, says nothing about the relay's own address
    events.safeDispatchEvent('connection:open', { detail: { remotePeer: relayA, remoteAddr: addrA } as any })
    events.safeDispatchEvent('connection:open', { detail: { remotePeer: relayB, remoteAddr: circuitA.encapsulate(`/p2p/${relayB}`) } as any })
    await flush()
    expect(transports.listen).toHaveBeenCalledTimes(5)

    // libp2p's reconnect queue (or the relay itself) connected: the relay is up again
    events.safeDispatchEvent('connection:open', { detail: { remotePeer: relayB, remoteAddr: addrB } as any })
    await flush()
    expect(transports.listen).toHaveBeenCalledTimes(6)
    expect(keeper?.status()).toEqual([{ relay: addrB.toString(), reserved: true, failures: 0 }])
    // the back-off's timer went with it: only the periodic check is left
    expect(clock.pending).toBe(1)
  })

  it('tries a relay that stays down at least every 10 s by default, so that one that came back is used soon', async () => {
    const { clock, events } = await start({ relays: [addrB], checkInterval: 3_600_000, random: () => 0.999 })
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    const delays: number[] = []
    for (let attempt = 1; attempt <= 8; attempt++) {
      const delay = (clock.nextAt ?? 0) - clock.now()
      delays.push(delay)
      clock.advance(delay)
      await flush()
    }
    expect(keeper?.status()[0].failures).toBe(9)
    expect(Math.max(...delays)).toBeLessThanOrEqual(10_000)
    expect(delays.at(-1)).toBeGreaterThan(9_000)
  })

  it('waits between half the delay and the whole of it', async () => {
    const low = await start({ relays: [addrB], checkInterval: 3_600_000, random: () => 0 })
    low.events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    expect((low.clock.nextAt ?? 0) - low.clock.now()).toBe(500)
    await keeper?.stop()

    const high = await start({ relays: [addrB], checkInterval: 3_600_000, random: () => 0.999 })
    high.events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    expect((high.clock.nextAt ?? 0) - high.clock.now()).toBeCloseTo(999.5)
  })

  it('forgets the failures once the reservation is back, and backs off from the start when it goes again', async () => {
    const { clock, transports, events } = await start({ relays: [addrB], checkInterval: 3_600_000 })
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    clock.advance(750)
    await flush()
    expect(keeper?.status()[0].failures).toBe(2)

    transports.up.add(relayB.toString())
    clock.advance(1_500)
    await flush()
    expect(keeper?.status()).toEqual([{ relay: addrB.toString(), reserved: true, failures: 0 }])
    // only the periodic check is left
    expect(clock.pending).toBe(1)

    transports.up.delete(relayB.toString())
    transports.drop(relayB)
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    expect(keeper?.status()[0].failures).toBe(1)
    expect((clock.nextAt ?? 0) - clock.now()).toBe(750)
  })

  it('counts a reservation that came back by itself as restored', async () => {
    const { clock, transports, events } = await start({ relays: [addrB], checkInterval: 3_600_000 })
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    expect(keeper?.status()[0].failures).toBe(1)
    transports.reserve(circuitB)
    events.safeDispatchEvent('self:peer:update', { detail: {} as any })
    expect(keeper?.status()).toEqual([{ relay: addrB.toString(), reserved: true, failures: 0 }])
    clock.advance(750)
    await flush()
    expect(transports.listen).toHaveBeenCalledTimes(1)
  })

  it('says a reservation is lost as soon as the circuit listener drops its address, without waiting for the peer record', async () => {
    const { transports, events } = await start({ relays: [addrA], checkInterval: 3_600_000 })
    transports.reserve(circuitA)
    events.safeDispatchEvent('self:peer:update', { detail: {} as any })
    const changes: boolean[] = []
    keeper?.addEventListener('change', (evt) => { changes.push(evt.detail[0].reserved) })
    // the relay went away: the circuit listener removes its address and says so
    // (libp2p's self:peer:update follows only later, debounced)
    transports.drop(relayA)
    events.safeDispatchEvent('transport:listening', { detail: {} as any })
    expect(changes).toEqual([false])
    await flush()
    // and it reserves again at once
    expect(transports.listenedOn()).toEqual([circuitA.toString()])
  })

  it('stop() cancels its timers and stops listening to events', async () => {
    const { clock, transports, events } = await start()
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    expect(clock.pending).toBeGreaterThan(1)
    await keeper?.stop()
    expect(clock.pending).toBe(0)
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    clock.advance(3_600_000)
    await flush()
    expect(transports.listen).toHaveBeenCalledTimes(2)
  })

  it('does nothing without configured relays', async () => {
    const { clock, transports, events } = await start({ relays: [] })
    expect(clock.pending).toBe(0)
    events.safeDispatchEvent('connection:close', { detail: {} as any })
    await flush()
    expect(transports.listen).not.toHaveBeenCalled()
    expect(keeper?.status()).toEqual([])
  })

  it('dials a relay before asking it for a reservation: one it cannot reach gets no listener, and its error is kept', async () => {
    const clock = new FakeClock()
    const transports = new FakeTransports()
    transports.up.add(relayB.toString())
    const dialled: string[] = []
    keeper = reservationKeeper({ relays: [addrA, addrB], clock, random: () => 0.5 })({
      transportManager: transports,
      connectionManager: {
        openConnection: vi.fn(async (target) => {
          dialled.push(target.toString())
          if (target.toString() === addrA.toString()) throw new Error('connection refused')
          return {} as any
        })
      },
      events: new TypedEventEmitter<Libp2pEvents>(),
      logger: defaultLogger()
    }) as ReservationKeeper & Startable
    await keeper.start()
    await keeper.afterStart?.()
    for (let attempt = 1; attempt <= 3; attempt++) {
      clock.advance(10_000)
      await flush()
    }
    expect(dialled.filter(d => d === addrA.toString()).length).toBeGreaterThanOrEqual(2)
    // relay A was never listened on, however often it was tried; relay B was, once
    expect(transports.listenedOn()).toEqual([circuitB.toString()])
    expect(keeper.lastError(addrA.toString())).toBe('connection refused')
    expect(keeper.status()).toEqual([
      { relay: addrA.toString(), reserved: false, failures: expect.any(Number) },
      { relay: addrB.toString(), reserved: true, failures: 0 }
    ])
  })

  describe('relays added and removed while it runs', () => {
    /** A keeper with a connection manager: a relay is dialled first (refused while down), and hanging up on one ends its reservation. */
    async function startLive (relays: Multiaddr[] = [], options: { keepCircuit?: boolean } = {}): Promise<{ clock: FakeClock, transports: FakeTransports, events: TypedEventEmitter<Libp2pEvents>, dialled: string[], closed: string[], merge: ReturnType<typeof vi.fn> }> {
      const clock = new FakeClock()
      const transports = new FakeTransports()
      const events = new TypedEventEmitter<Libp2pEvents>()
      const dialled: string[] = []
      const closed: string[] = []
      const merge = vi.fn(async () => ({}) as any)
      keeper = reservationKeeper({ relays, clock, random: () => 0.5 })({
        transportManager: transports,
        connectionManager: {
          openConnection: vi.fn(async (target) => {
            const addr = target as Multiaddr
            dialled.push(addr.toString())
            const relay = addr.getComponents().findLast(c => c.name === 'p2p')?.value ?? ''
            if (!transports.up.has(relay)) throw new Error('connection refused')
            return {} as any
          }),
          closeConnections: vi.fn(async (relay: PeerId) => {
            closed.push(relay.toString())
            // the relay transport drops the reservation, and its circuit address, with the connection
            if (options.keepCircuit !== true) transports.drop(relay)
            events.safeDispatchEvent('transport:listening', { detail: {} as any })
          })
        },
        peerStore: { merge },
        events,
        logger: defaultLogger()
      }) as ReservationKeeper & Startable
      await keeper.start()
      await keeper.afterStart?.()
      return { clock, transports, events, dialled, closed, merge }
    }

    it('reserves on an added relay at once, dialling it first, and keeps it from then on', async () => {
      const { clock, transports, dialled } = await startLive()
      expect(clock.pending).toBe(0)
      transports.up.add(relayA.toString())
      const status = await keeper?.addRelay(addrA)
      expect(status).toEqual({ relay: addrA.toString(), reserved: true, failures: 0 })
      expect(dialled).toEqual([addrA.toString()])
      expect(transports.listenedOn()).toEqual([circuitA.toString()])
      expect(keeper?.relays().map(String)).toEqual([addrA.toString()])
      // kept like a configured relay: the periodic check runs now, and a lost reservation is made again
      expect(clock.pending).toBe(1)
      transports.drop(relayA)
      clock.advance(5_000)
      await flush()
      expect(transports.listenedOn()).toEqual([circuitA.toString(), circuitA.toString()])
    })

    it('answers an added relay that cannot be reached with its error, and keeps trying it', async () => {
      const { clock, transports } = await startLive()
      const status = await keeper?.addRelay(addrB)
      expect(status).toEqual({ relay: addrB.toString(), reserved: false, failures: 1, lastError: 'connection refused' })
      expect(transports.listen).not.toHaveBeenCalled()
      transports.up.add(relayB.toString())
      clock.advance(750)
      await flush()
      expect(keeper?.status()).toEqual([{ relay: addrB.toString(), reserved: true, failures: 0 }])
    })

    it('tries at once a relay added again while it waits out its back-off', async () => {
      const { clock, transports, dialled } = await startLive()
      await keeper?.addRelay(addrB)
      expect(await keeper?.addRelay(addrB)).toMatchObject({ reserved: false, failures: 2 })
      expect(dialled).toEqual([addrB.toString(), addrB.toString()])
      transports.up.add(relayB.toString())
      expect(await keeper?.addRelay(addrB)).toEqual({ relay: addrB.toString(), reserved: true, failures: 0 })
      // the back-off's timer went with it: only the periodic check is left
      expect(clock.pending).toBe(1)
    })

    it('is idempotent: the same relay again changes nothing, the same relay at a new address takes it', async () => {
      const { transports, dialled } = await startLive([addrA])
      transports.up.add(relayA.toString())
      await keeper?.addRelay(addrA)
      expect(await keeper?.addRelay(addrA)).toEqual({ relay: addrA.toString(), reserved: true, failures: 0 })
      expect(transports.listenedOn()).toEqual([circuitA.toString()])
      const moved = multiaddr(`/ip4/127.0.0.1/tcp/6001/p2p/${relayA}`)
      transports.drop(relayA)
      await keeper?.addRelay(moved)
      expect(keeper?.relays().map(String)).toEqual([moved.toString()])
      expect(dialled.at(-1)).toBe(moved.toString())
    })

    it('refuses an address without the relay\'s peer ID, or through another relay, and more than MAX_RELAYS relays', async () => {
      await startLive()
      await expect(keeper?.addRelay(multiaddr('/ip4/127.0.0.1/tcp/5001'))).rejects.toMatchObject({ name: 'InvalidRelayAddressError' })
      await expect(keeper?.addRelay(circuitA.encapsulate(`/p2p/${relayB}`))).rejects.toMatchObject({ name: 'InvalidRelayAddressError' })
      for (let i = 0; i < MAX_RELAYS; i++) await keeper?.addRelay(multiaddr(`/ip4/127.0.0.1/tcp/${7000 + i}/p2p/${await peer()}`))
      await expect(keeper?.addRelay(addrA)).rejects.toMatchObject({ name: 'TooManyRelaysError' })
      expect(keeper?.relays()).toHaveLength(MAX_RELAYS)
      // an address change of a relay already kept is no new relay
      const kept = keeper?.relays()[0] as Multiaddr
      await expect(keeper?.addRelay(multiaddr(kept.toString().replace('/tcp/7000/', '/tcp/7100/')))).resolves.toMatchObject({ reserved: false })
    })

    it('refuses more configured relays than MAX_RELAYS at start', async () => {
      const many = await Promise.all(Array.from({ length: MAX_RELAYS + 1 }, async (_, i) => multiaddr(`/ip4/127.0.0.1/tcp/${7000 + i}/p2p/${await peer()}`)))
      expect(() => reservationKeeper({ relays: many })({ transportManager: new FakeTransports(), events: new TypedEventEmitter<Libp2pEvents>(), logger: defaultLogger() })).toThrow(/over the limit of 16/)
    })

    it('stops using a removed relay: untagged, hung up on, its circuit address gone, never tried again', async () => {
      const { clock, transports, closed, merge } = await startLive([addrA, addrB])
      transports.up.add(relayA.toString())
      clock.advance(5_000)
      await flush()
      expect(keeper?.status()).toEqual([
        { relay: addrA.toString(), reserved: true, failures: 0 },
        { relay: addrB.toString(), reserved: false, failures: 1 }
      ])
      const changes: string[] = []
      keeper?.addEventListener('change', (evt) => { changes.push(evt.detail.map(s => s.relay).join(' ')) })

      expect(await keeper?.removeRelay(relayA.toString())).toBe(true)
      expect(merge).toHaveBeenCalledWith(relayA, { tags: { 'keep-alive-circuit-relay': undefined } })
      expect(closed).toEqual([relayA.toString()])
      expect(transports.getAddrs().map(String)).not.toContain(circuitA.toString())
      expect(keeper?.status()).toEqual([{ relay: addrB.toString(), reserved: false, failures: 1 }])
      expect(changes).toEqual([addrB.toString()])

      // by its address as `status` lists it; a relay no longer kept is no error
      expect(await keeper?.removeRelay(addrB.toString())).toBe(true)
      expect(await keeper?.removeRelay(addrB.toString())).toBe(false)
      expect(await keeper?.removeRelay(relayA)).toBe(false)
      const listens = transports.listen.mock.calls.length
      clock.advance(3_600_000)
      await flush()
      expect(transports.listen).toHaveBeenCalledTimes(listens)
      expect(keeper?.status()).toEqual([])
      expect(clock.pending).toBe(0)
    })

    it('waits for the circuit address to go no longer than 5 s, nor past stop()', async () => {
      // a transport that keeps the circuit address after the hang-up
      const { clock, transports, events } = await startLive([addrA, addrB], { keepCircuit: true })
      transports.up.add(relayA.toString()).add(relayB.toString())
      clock.advance(5_000)
      await flush()
      let removedA = false
      keeper?.removeRelay(relayA).then(() => { removedA = true }, () => {})
      events.safeDispatchEvent('transport:listening', { detail: {} as any })
      await flush()
      expect(removedA).toBe(false)
      clock.advance(4_999)
      await flush()
      expect(removedA).toBe(false)
      clock.advance(1)
      await flush()
      expect(removedA).toBe(true)
      expect(keeper?.relays().map(String)).toEqual([addrB.toString()])

      let removedB = false
      keeper?.removeRelay(relayB).then(() => { removedB = true }, () => {})
      await flush()
      expect(removedB).toBe(false)
      await keeper?.stop()
      await flush()
      expect(removedB).toBe(true)
      expect(clock.pending).toBe(0)
    })

    it('lets an attempt under way end before hanging up, and does not try the removed relay again', async () => {
      const { clock, transports, closed } = await startLive()
      transports.up.add(relayA.toString())
      const { promise: dialling, resolve: answer } = Promise.withResolvers<void>()
      const slow = vi.fn(async () => { await dialling })
      transports.listen.mockImplementationOnce(async (addrs) => {
        await slow()
        transports.reserve(addrs[0])
      })
      const added = keeper?.addRelay(addrA)
      const removed = keeper?.removeRelay(relayA)
      await flush()
      expect(closed).toEqual([])
      answer()
      expect(await removed).toBe(true)
      await added
      expect(closed).toEqual([relayA.toString()])
      expect(transports.getAddrs().map(String)).not.toContain(circuitA.toString())
      clock.advance(3_600_000)
      await flush()
      expect(transports.listen).toHaveBeenCalledTimes(1)
    })
  })
})
