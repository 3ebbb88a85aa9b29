/**
 * A hostile review of "a message alone in its peer's outbox goes on the wire
 * before its COMMIT" (DeliveryEngine.queue / sendAtOnce, Store.enqueue's
 * beforeCommit, ImService.sendAtOnce, OutboundChannel.sendNow): each test
 * states a rule the change must keep (one frame a message an attempt, seq
 * order on a stream, statuses queued -> sending -> delivered/failed, no
 * unhandled rejection, no state left stale) and attacks it.
 */
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { defaultLogger } from '@libp2p/logger'
import { streamPair } from '@libp2p/utils'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { idFromString, idToString } from '../../node/message-id.js'
import { DeliveryEngine } from '../../node/outbox/delivery.js'
import { Store } from '../../node/store/index.js'
import { Ack, PROTOCOL } from '../../protocols/im/index.js'
import { useTempDirs } from '../fixtures/dirs.js'
import { until } from '../fixtures/wait.js'
import { CONNECTION, PEER, StubIm, WAIT, WatchedClock } from './delivery-helpers.js'
import { StreamFrames, fakeConnection, hex, link, makePeer, outboundMessage, startService, streamClosed, writeRawFrame } from './im-helpers.js'
import type { DeliveryComponents } from '../../node/outbox/delivery.js'
import type { NewOutbound } from '../../node/store/index.js'
import type { StatusChange } from '../../node/types.js'
import type { Acknowledgement, ImInit, OutboundMessage } from '../../protocols/im/index.js'
import type { ServiceUnderTest } from './im-helpers.js'
import type { AbortOptions, Connection, Stream } from '@libp2p/interface'

function messageId (n: number): string {
  return idToString(new Uint8Array(16).map((_, i) => i === 15 ? n % 256 : i === 14 ? Math.floor(n / 256) : 0))
}

const cleanup: Array<() => void | Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

/** The shared stub, with a `sendAtOnce` that takes every message (a stream with room) and notes its seq. */
class AtOnceIm extends StubIm {
  readonly atOnce: number[] = []
  override sendAtOnce = (connection: Connection, message: OutboundMessage, options?: AbortOptions): Promise<Acknowledgement> | undefined => {
    this.atOnce.push(message.seq)
    return this.send(connection, message, options)
  }
}

function engineSetup () {
  const clock = new WatchedClock()
  const store = new Store()
  const im = new AtOnceIm()
  const router = { openConnection: () => CONNECTION, connect: async () => CONNECTION }
  const engine = new DeliveryEngine({ store, router, im, logger: defaultLogger(), clock, random: () => 0.5 } as unknown as DeliveryComponents, { initialDelay: 1_000, maxDelay: 60_000 })
  const changes: StatusChange[] = []
  engine.addEventListener('message:status', evt => { changes.push(evt.detail) })
  cleanup.push(() => { engine.stop(); store.close() })
  let next = 1
  const message = (): NewOutbound => {
    const n = next++
    return { peer: PEER, id: messageId(n), body: `m${n}`, contentType: 'text/plain', sentAt: clock.now() }
  }
  return {
    clock,
    store,
    im,
    engine,
    changes,
    message,
    queue: (): string => engine.queue(message()).id,
    statuses: (id: string): string[] => changes.filter(c => c.id === id).map(c => c.status),
    reported: async (ids: string[], status: StatusChange['status']): Promise<void> => {
      await until(() => ids.every(id => changes.some(c => c.id === id && c.status === status)), { on: [engine, 'message:status'], what: `${ids.length} messages ${status}`, timeout: WAIT })
    }
  }
}

/** Calls `fn` once, when the first message is reported queued (a user's status listener, in the same tick as `queue`). */
function onFirstQueued (t: ReturnType<typeof engineSetup>, fn: (change: StatusChange) => void): void {
  let done = false
  t.engine.addEventListener('message:status', evt => {
    if (done || evt.detail.status !== 'queued') return
    done = true
    fn(evt.detail)
  })
}

describe('send at once: the engine, re-entered from a status listener and the clock', () => {
  it('sends a lone message once when a listener of its "queued" queues another message for the peer', async () => {
    const t = engineSetup()
    t.engine.start()
    let second = ''
    onFirstQueued(t, () => { second = t.queue() })
    const first = t.queue()
    // the second waits for the first's ack, as any message queued while one is on the wire
    expect(t.im.seqs).toEqual([1])
    t.im.ackAll()
    await until(() => t.im.pending.length === 1, { on: [t.im, 'send'], what: 'the second message sent', timeout: WAIT })
    t.im.ackAll()
    await t.reported([first, second], 'delivered')
    expect(t.im.atOnce).toEqual([1])
    // seq 1 went once, at once; seq 2 through the run after it
    expect(t.im.seqs).toEqual([1, 2])
  })

  it('sends a lone message once when a listener of its "queued" wakes the peer\'s outbox', async () => {
    const t = engineSetup()
    t.engine.start()
    onFirstQueued(t, change => { t.engine.wake(change.peer) })
    const id = t.queue()
    t.im.ackAll()
    await t.reported([id], 'delivered')
    expect(t.im.seqs).toEqual([1])
  })

  it('does not report cancelled a message whose frame already left (a listener of its "queued" cancels it), nor sending after failed', async () => {
    const t = engineSetup()
    t.engine.start()
    let outcome = ''
    onFirstQueued(t, change => { outcome = t.engine.cancel(change.id) })
    const id = t.queue()
    expect(t.im.atOnce).toEqual([1])
    t.im.ackAll()
    await until(() => t.im.pending.length === 0 && t.statuses(id).length >= 3, { on: [t.engine, 'message:status'], what: () => `statuses: ${t.statuses(id).join(', ')}`, timeout: WAIT })
    // the frame is on the wire: cancel can only say so
    expect(outcome).toBe('sending')
    expect(t.statuses(id)).toEqual(['queued', 'sending', 'delivered'])
  })

  it('stops cleanly when a listener of "queued" stops the engine: no round, nothing reported after, the ack\'s rejection handled', async () => {
    const t = engineSetup()
    t.engine.start()
    onFirstQueued(t, () => { t.engine.stop() })
    const id = t.queue()
    // the frame left before the stop; the stop's abort rejects its ack (handled, or vitest fails the run)
    expect(t.im.atOnce).toEqual([1])
    expect(t.im.pending).toEqual([])
    await new Promise(resolve => setImmediate(resolve))
    expect(t.statuses(id)).toEqual(['queued'])
    expect(t.im.seqs).toEqual([1])
    expect(t.store.outboxEntry(id)?.attempts).toBe(0)
  })

  it('takes the ack of a message sent at once even if the clock steps back before the run starts (a wall-clock adjustment)', async () => {
    const t = engineSetup()
    t.engine.start()
    const at = t.clock.now()
    const sendAtOnce = t.im.sendAtOnce
    t.im.sendAtOnce = (connection, message, options) => {
      const ack = sendAtOnce(connection, message, options)
      // NTP steps the clock back by 1 ms right after the frame left
      t.clock.now = () => at - 1
      return ack
    }
    const id = t.queue()
    expect(t.im.atOnce).toEqual([1])
    // on the wire: the engine must say so, and wait for that ack
    expect(t.statuses(id)).toEqual(['queued', 'sending'])
    t.im.ackAll()
    // the run that dropped that ack sets a timer for the message's next attempt
    await until(() => t.clock.pending > 0 || t.statuses(id).includes('delivered'), { on: [[t.clock.events, 'timer'], [t.engine, 'message:status']], what: 'the delivery or a retry timer', timeout: WAIT })
    expect(t.statuses(id)).toContain('delivered')
    expect(t.im.seqs).toEqual([1])
  })
})

describe('send at once: queue() inside an outer store transaction (the group fan-out)', () => {
  it('asks no send at once inside the transaction and sends the message once after it commits', async () => {
    const t = engineSetup()
    t.engine.start()
    const id = t.store.transaction(() => t.engine.queue(t.message()).id)
    expect(t.im.atOnce).toEqual([])
    t.im.ackAll()
    await t.reported([id], 'delivered')
    expect(t.im.seqs).toEqual([1])
    expect(t.statuses(id)).toEqual(['queued', 'sending', 'delivered'])
  })

  it('puts nothing on the wire, and reports nothing, for a message whose outer transaction rolls back', async () => {
    const t = engineSetup()
    t.engine.start()
    let id = ''
    expect(() => t.store.transaction(() => {
      id = t.engine.queue(t.message()).id
      throw new Error('a later carrier of the fan-out failed')
    })).toThrow('a later carrier')
    expect(t.store.outboxEntry(id)).toBeUndefined()
    // the message never existed: nothing of it may reach the recipient or the user
    expect(t.im.seqs).toEqual([])
    expect(t.statuses(id)).toEqual([])
  })
})

/** A real sender ImService and a real receiver, linked by in-memory streams, under a real engine and store. */
async function wired (opts: { protocol?: string, file?: string, receiverStore?: ImInit['store'] } = {}) {
  const received: Array<{ seq: number, id: string }> = []
  const events = new EventTarget()
  const receiver = await startService({
    store: opts.receiverStore ?? ((message) => {
      received.push({ seq: message.seq, id: hex(message.id) })
      events.dispatchEvent(new Event('received'))
      return 'stored'
    })
  })
  const sender = await startService({ store: async () => 'stored' as const })
  const senderPeer = await makePeer()
  const receiverPeer = await makePeer()
  const net = link({ senderPeer, receiverPeer, protocol: opts.protocol, onInbound: receiver.handle })
  const clock = new WatchedClock()
  const store = new Store(opts.file)
  const router = { openConnection: () => net.senderConnection, connect: async () => net.senderConnection }
  const engine = new DeliveryEngine({ store, router, im: sender.service, logger: defaultLogger(), clock, random: () => 0.5 } as unknown as DeliveryComponents, { initialDelay: 1_000, maxDelay: 60_000 })
  const changes: StatusChange[] = []
  engine.addEventListener('message:status', evt => { changes.push(evt.detail) })
  cleanup.push(async () => {
    engine.stop()
    await sender.service.stop()
    await receiver.service.stop()
    store.close()
  })
  const peer = receiverPeer.toString()
  let n = 0
  const message = (extra: Partial<NewOutbound> = {}): NewOutbound => ({ peer, id: messageId(++n), body: `m${n}`, contentType: 'text/plain', sentAt: clock.now(), ...extra })
  const statuses = (id: string): string[] => changes.filter(c => c.id === id).map(c => c.status)
  const reported = async (id: string, status: StatusChange['status'], times = 1): Promise<void> => {
    await until(() => statuses(id).filter(s => s === status).length >= times, { on: [engine, 'message:status'], what: () => `${id} ${status} x${times} (${statuses(id).join(', ')})`, timeout: WAIT })
  }
  engine.start()
  return { sender, receiver, net, engine, store, clock, changes, received, events, peer, message, statuses, reported }
}

describe('send at once: the engine on a real /im channel', () => {
  const tempDir = useTempDirs()

  it('sends a lone message at once on the open stream, once an attempt, when the stream is reset before its ack; the retry opens a new stream', async () => {
    let refuseSeq2 = true
    const seen: number[] = []
    const events = new EventTarget()
    const w = await wired({
      receiverStore: (message) => {
        seen.push(message.seq)
        events.dispatchEvent(new Event('seen'))
        if (message.seq === 2 && refuseSeq2) {
          refuseSeq2 = false
          // the receiver's disk fails: no ack, and its end aborts the stream
          throw new Error('receiver store failed')
        }
        return 'stored'
      }
    })
    const atOnce = vi.spyOn(w.sender.service, 'sendAtOnce')
    const first = w.engine.queue(w.message()).id
    // no stream yet: the first goes through send(), which opens it
    expect(atOnce.mock.results.map(r => r.value)).toEqual([undefined])
    await w.reported(first, 'delivered')
    await until(() => w.store.outboxEntry(first) == null, { on: [w.engine, 'message:status'], timeout: WAIT })
    await new Promise(resolve => setImmediate(resolve))

    const second = w.engine.queue(w.message()).id
    expect(atOnce).toHaveBeenCalledTimes(2)
    expect(atOnce.mock.results[1].value).toBeInstanceOf(Promise)
    // the attempt fails with the stream: back to queued, for a retry
    await w.reported(second, 'queued', 2)
    expect(w.statuses(second)).toEqual(['queued', 'sending', 'queued'])
    // the ended channel is not kept for a send at once
    expect(w.sender.service.sendAtOnce(w.net.senderConnection, outboundMessage({ seq: 99 }))).toBeUndefined()

    // a connection opened (or the back-off passed): the retry goes through send(), on a new stream
    w.engine.wake(w.peer)
    await w.reported(second, 'delivered')
    expect(w.statuses(second)).toEqual(['queued', 'sending', 'queued', 'sending', 'delivered'])
    expect(seen).toEqual([1, 2, 2])
    expect(w.net.pairs.length).toBe(2)
  })

  it('never writes a group message on an /im/1.0.0 stream: not at once, not through send(); it fails INVALID and the next lone message still goes at once', async () => {
    const w = await wired({ protocol: PROTOCOL })
    const first = w.engine.queue(w.message()).id
    await w.reported(first, 'delivered')
    await until(() => w.store.outboxEntry(first) == null, { on: [w.engine, 'message:status'], timeout: WAIT })
    const atOnce = vi.spyOn(w.sender.service, 'sendAtOnce')

    const carrier = w.engine.queue(w.message({ body: '', group: new Uint8Array([1, 2, 3]) })).id
    expect(atOnce.mock.results.map(r => r.value)).toEqual([undefined])
    await w.reported(carrier, 'failed')
    expect(w.statuses(carrier)).toEqual(['queued', 'sending', 'failed'])

    // the failed carrier's run ends with the outbox empty: the next is alone, and the stream takes it
    await until(() => w.store.outboxEntry(carrier) == null, { on: [w.engine, 'message:status'], timeout: WAIT })
    await new Promise(resolve => setImmediate(resolve))
    const third = w.engine.queue(w.message()).id
    expect(atOnce.mock.results[1]?.value).toBeInstanceOf(Promise)
    await w.reported(third, 'delivered')
    expect(w.received.map(r => r.seq)).toEqual([1, 3])
  })

  it('throws to the caller when the commit fails after the frame left and leaves no round; the recipient may show that message, and the next takes its seq again, as after a crash there', async () => {
    const file = join(await tempDir(), 'store.db')
    const w = await wired({ file })
    const first = w.engine.queue(w.message()).id
    await w.reported(first, 'delivered')
    await until(() => w.store.outboxEntry(first) == null, { on: [w.engine, 'message:status'], timeout: WAIT })
    await new Promise(resolve => setImmediate(resolve))

    // the commit, after beforeCommit, fails (as on a full disk or an I/O
    // error): a deferred foreign key, checked at COMMIT, that the message's
    // row breaks
    const admin = new DatabaseSync(file)
    cleanup.push(() => { admin.close() })
    admin.exec(`CREATE TABLE fail_parent (id INTEGER PRIMARY KEY);
      CREATE TABLE fail_child (parent INTEGER REFERENCES fail_parent (id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER fail_commit AFTER INSERT ON messages BEGIN INSERT INTO fail_child VALUES (1); END`)
    const atOnce = vi.spyOn(w.sender.service, 'sendAtOnce')
    const phantom = w.message()
    expect(() => w.engine.queue(phantom)).toThrow('FOREIGN KEY constraint failed')
    expect(atOnce.mock.results[0]?.value).toBeInstanceOf(Promise)
    expect(w.store.getMessage(phantom.id)).toBeUndefined()
    expect(w.statuses(phantom.id)).toEqual([])
    admin.exec('DROP TRIGGER fail_commit')

    // no round was left running: the next message is alone and goes at once
    const next = w.engine.queue(w.message()).id
    expect(atOnce).toHaveBeenCalledTimes(2)
    expect(atOnce.mock.results[1]?.value).toBeInstanceOf(Promise)
    await w.reported(next, 'delivered')
    await until(() => w.received.length >= 3, { on: [w.events, 'received'], timeout: WAIT })
    // the recipient holds the message whose sender was told it failed (the
    // error is logged as such), and the next one under the same seq: each
    // shown, never taken for a repeat of the other (test/unit/store.test.ts)
    expect(w.received.map(r => r.id)).toContain(hex(idFromString(phantom.id)))
    expect(w.received.map(r => r.seq)).toEqual([1, 2, 2])
  })
})

let seqCounter = 1000
function msg (): OutboundMessage {
  return outboundMessage({ seq: ++seqCounter })
}

describe('send at once: the /im service\'s ready and starting bookkeeping', () => {
  const running: ServiceUnderTest[] = []
  afterEach(async () => {
    for (const s of running.splice(0)) await s.service.stop()
  })

  /** A sender whose connection's streams the test decides one at a time: a receiver that acks, a failure, or a wait for the abort. */
  async function controlled () {
    const receiver = await startService({ store: () => 'stored' })
    const sender = await startService({ store: async () => 'stored' as const, idleTimeout: 60_000 })
    running.push(sender, receiver)
    const outbounds: Stream[] = []
    const plan: Array<'fail' | 'hang'> = []
    const connection = fakeConnection({
      remotePeer: await makePeer(),
      newStream: async (protocol, options: AbortOptions = {}) => {
        const step = plan.shift()
        if (step === 'fail') throw new Error('cannot open a stream')
        if (step === 'hang') {
          await new Promise((resolve, reject) => { options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }) })
        }
        const [outbound, inbound] = await streamPair()
        Object.assign(outbound, { protocol: PROTOCOL })
        Object.assign(inbound, { protocol: PROTOCOL })
        outbounds.push(outbound)
        receiver.handle(inbound, fakeConnection({ remotePeer: await makePeer() })).catch(() => {})
        return outbound
      }
    })
    return { sender, receiver, connection, outbounds, plan }
  }

  it('does not leak a starting count when opening the stream fails or the send is aborted while it opens', async () => {
    const { sender, connection, plan } = await controlled()
    plan.push('fail', 'hang')
    await expect(sender.service.send(connection, msg())).rejects.toThrow('cannot open a stream')
    const controller = new AbortController()
    const hanging = sender.service.send(connection, msg(), { signal: controller.signal })
    controller.abort(new Error('gave up'))
    await expect(hanging).rejects.toThrow('gave up')
    // a stream opens now; the next message can go at once on it
    await sender.service.send(connection, msg())
    const atOnce = sender.service.sendAtOnce(connection, msg())
    expect(atOnce).toBeInstanceOf(Promise)
    expect(await atOnce).toMatchObject({ status: Ack.Status.OK })
  })

  it('keeps no ended channel for a send at once: not after the remote resets it, not after stop(); send() opens a new one that then takes messages at once', async () => {
    const { sender, connection, outbounds } = await controlled()
    await sender.service.send(connection, msg())
    const inFlight = sender.service.sendAtOnce(connection, msg())
    expect(inFlight).toBeInstanceOf(Promise)
    outbounds[0].abort(new Error('connection closed'))
    // the message on the wire fails with its stream
    await expect(inFlight).rejects.toThrow()
    await streamClosed(outbounds[0])
    expect(sender.service.sendAtOnce(connection, msg())).toBeUndefined()

    await sender.service.send(connection, msg())
    expect(outbounds.length).toBe(2)
    const again = sender.service.sendAtOnce(connection, msg())
    expect(again).toBeInstanceOf(Promise)
    await again

    await sender.service.stop()
    expect(sender.service.sendAtOnce(connection, msg())).toBeUndefined()
  })

  it('never lets a message sent at once overtake a send woken for a slot whose own signal aborts as it wakes: the slot passes on, and frames stay in seq order', async () => {
    const sender = await startService({ store: async () => 'stored' as const, maxUnacked: 1 })
    running.push(sender)
    const inbound = Promise.withResolvers<Stream>()
    const outbound = Promise.withResolvers<Stream>()
    const connection = fakeConnection({
      remotePeer: await makePeer(),
      newStream: async () => {
        const [out, inb] = await streamPair()
        Object.assign(out, { protocol: PROTOCOL })
        outbound.resolve(out)
        inbound.resolve(inb)
        return out
      }
    })
    const [m1, m2, m3, m4] = [msg(), msg(), msg(), msg()]
    const first = sender.service.send(connection, m1)
    const frames = new StreamFrames(await inbound.promise)
    const read: bigint[] = []
    const readOne = async (): Promise<{ id: Uint8Array<ArrayBuffer>, seq: bigint }> => {
      const frame = await frames.expectFrame()
      read.push(frame.message!.seq)
      return frame.message!
    }
    const ack = async (m: { id: Uint8Array<ArrayBuffer> }): Promise<void> => {
      writeRawFrame(await inbound.promise, { ack: { id: m.id, status: Ack.Status.OK } })
    }
    const r1 = await readOne()
    const controller = new AbortController()
    const second = sender.service.send(connection, m2, { signal: controller.signal })
    second.catch(() => {})
    const third = sender.service.send(connection, m3)
    // the window is full and two sends wait
    await new Promise(resolve => setImmediate(resolve))
    expect(sender.service.sendAtOnce(connection, m4)).toBeUndefined()

    // the ack wakes the second; its signal aborts in the same read, and a send at once is tried there
    const asked: unknown[] = []
    ;(await outbound.promise).addEventListener('message', () => {
      controller.abort(new Error('the caller gave up'))
      asked.push(sender.service.sendAtOnce(connection, m4))
    }, { once: true })
    await ack(r1)
    await first
    expect(asked).toEqual([undefined])
    // whichever of the second and the third got the slot goes next; never m4
    const r2 = await readOne()
    expect(r2.seq).not.toBe(BigInt(m4.seq))
    await ack(r2)
    if (r2.seq === BigInt(m2.seq)) {
      const r3 = await readOne()
      expect(r3.seq).toBe(BigInt(m3.seq))
      await ack(r3)
    }
    await third
    expect(read).toEqual([...read].sort((a, b) => (a < b ? -1 : 1)))
    expect(read).not.toContain(BigInt(m4.seq))
  })
})
