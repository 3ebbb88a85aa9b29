/**
 * How the sender's OutboundChannel hands frames to the stream: the frames of
 * sends that go out together share stream writes (one yamux frame and one
 * Noise message each, in one buffer), whether the sends were started in one go
 * or woken one ack at a time when the window was full.
 */
import { multiaddrConnectionPair, streamPair } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import * as lp from 'it-length-prefixed'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'
import { Ack, Frame, MAX_UNACKED } from '../../protocols/im/index.js'
import { StreamFrames, fakeConnection, makePeer, outboundMessage, startService, yamuxFrameTypes } from './im-helpers.js'
import type { Acknowledgement, ChatMessage, OutboundMessage } from '../../protocols/im/index.js'
import type { ServiceUnderTest } from './im-helpers.js'
import type { Connection, MultiaddrConnection, Stream, StreamMuxer } from '@libp2p/interface'

const running: ServiceUnderTest[] = []

afterEach(async () => {
  for (const s of running.splice(0)) await s.service.stop()
})

/**
 * A sender whose one outbound stream counts the frames in each `send` (and
 * the buffers they came in: `buffers`), that stream, and the receiving end of it.
 */
async function countingSender (): Promise<{ sender: ServiceUnderTest, connection: Connection, writes: number[], buffers: number[], outbound: Promise<Stream>, receiver: Promise<Stream> }> {
  const sender = await startService({ store: async () => 'stored' as const })
  running.push(sender)
  const writes: number[] = []
  const buffers: number[] = []
  const receiver = Promise.withResolvers<Stream>()
  const sending = Promise.withResolvers<Stream>()
  const connection = fakeConnection({
    remotePeer: await makePeer(),
    newStream: async () => {
      const [outbound, inbound] = await streamPair()
      const send = outbound.send.bind(outbound)
      outbound.send = (data) => {
        writes.push([...lp.decode([data])].length)
        buffers.push(data instanceof Uint8Array ? 1 : [...data].length)
        return send(data)
      }
      receiver.resolve(inbound)
      sending.resolve(outbound)
      return outbound
    }
  })
  return { sender, connection, writes, buffers, outbound: sending.promise, receiver: receiver.promise }
}

let seq = 0
function messages (n: number): OutboundMessage[] {
  return Array.from({ length: n }, () => outboundMessage({ seq: ++seq, body: 'x'.repeat(200) }))
}

async function readMessages (frames: StreamFrames, n: number): Promise<ChatMessage[]> {
  const read: ChatMessage[] = []
  while (read.length < n) read.push((await frames.expectFrame()).message!)
  return read
}

/** Acks every message in one stream write, as a receiver does when they settle together. */
function ackAll (inbound: Stream, read: ChatMessage[]): void {
  const out = new Uint8ArrayList()
  for (const m of read) out.append(lp.encode.single(Frame.encode({ ack: { id: m.id, status: Ack.Status.OK } })))
  inbound.send(out)
}

describe('/im/1.0.0 outbound channel: stream writes', () => {
  it('writes a window started together on an open stream in a few writes of about 4 KiB', async () => {
    const { sender, connection, writes, buffers, receiver } = await countingSender()
    const first = messages(1).map(async m => sender.service.send(connection, m))
    const inbound = await receiver
    const frames = new StreamFrames(inbound)
    ackAll(inbound, await readMessages(frames, 1))
    await Promise.all(first)
    writes.length = 0

    const window = messages(MAX_UNACKED).map(async m => sender.service.send(connection, m))
    const read = await readMessages(frames, MAX_UNACKED)
    ackAll(inbound, read)
    await Promise.all(window)

    expect(writes.reduce((a, b) => a + b, 0)).toBe(MAX_UNACKED)
    // 64 frames of about 220 bytes: 4 writes of at most 4 KiB
    expect(writes.length).toBeLessThanOrEqual(5)
    // each one buffer: Noise runs a cipher update, and TCP a socket write, per buffer of a list
    expect(buffers.every(n => n === 1)).toBe(true)
  })

  it('writes the senders a burst of acks wakes from a full window together, not one frame a write', async () => {
    const { sender, connection, writes, receiver } = await countingSender()
    const window = messages(MAX_UNACKED).map(async m => sender.service.send(connection, m))
    const inbound = await receiver
    const frames = new StreamFrames(inbound)
    const read = await readMessages(frames, MAX_UNACKED)
    // the window is full: these wait for slots
    const waiting: Array<Promise<Acknowledgement>> = messages(MAX_UNACKED).map(async m => sender.service.send(connection, m))
    writes.length = 0

    ackAll(inbound, read)
    await Promise.all(window)
    const next = await readMessages(frames, MAX_UNACKED)
    ackAll(inbound, next)
    await Promise.all(waiting)

    expect(writes.reduce((a, b) => a + b, 0)).toBe(MAX_UNACKED)
    expect(writes.length).toBeLessThanOrEqual(6)
  })
})

describe('/im/1.0.0 outbound channel: a message sent at once', () => {
  /** An open channel on the counting sender: one message sent and acknowledged. */
  async function openChannel (): Promise<Awaited<ReturnType<typeof countingSender>> & { inbound: Stream, frames: StreamFrames }> {
    const counting = await countingSender()
    const first = counting.sender.service.send(counting.connection, messages(1)[0])
    const inbound = await counting.receiver
    const frames = new StreamFrames(inbound)
    ackAll(inbound, await readMessages(frames, 1))
    await first
    counting.writes.length = 0
    return { ...counting, inbound, frames }
  }

  it('needs an open stream; on one, hands the frame to it within the call and resolves with the ack, its path and connection', async () => {
    const { sender, connection, writes } = await countingSender()
    expect(sender.service.sendAtOnce(connection, messages(1)[0])).toBeUndefined()
    expect(writes).toEqual([])

    const open = await openChannel()
    const [message] = messages(1)
    const acked = open.sender.service.sendAtOnce(open.connection, message)
    // written before the call returned: no turn of the event loop in between, in one buffer
    expect(open.writes).toEqual([1])
    expect(open.buffers.at(-1)).toBe(1)
    const [read] = await readMessages(open.frames, 1)
    expect(read.seq).toBe(BigInt(message.seq))
    ackAll(open.inbound, [read])
    expect(await acked).toMatchObject({ id: message.id, status: Ack.Status.OK, path: 'direct', connection: open.connection })
  })

  it('sends nothing at once that would overtake a message not written yet (a send on its way, a send waiting for room) or overfill the window', async () => {
    const { sender, connection, writes, outbound, inbound, frames } = await openChannel()
    const [earlier, later] = messages(2)
    const sending = sender.service.send(connection, earlier)
    expect(sender.service.sendAtOnce(connection, later)).toBeUndefined()
    const [read] = await readMessages(frames, 1)
    expect(read.id).toEqual(earlier.id)
    ackAll(inbound, [read])
    await sending

    const window = messages(MAX_UNACKED).map(async m => sender.service.send(connection, m))
    const inFlight = await readMessages(frames, MAX_UNACKED)
    expect(sender.service.sendAtOnce(connection, messages(1)[0])).toBeUndefined()
    // one more waits for room: the ack that makes some wakes it, and it goes
    // first; asked right after that ack is read (the channel's own listener
    // first), before the woken send could take its slot
    const waiting = sender.service.send(connection, messages(1)[0])
    const afterAck: unknown[] = []
    ;(await outbound).addEventListener('message', () => { afterAck.push(sender.service.sendAtOnce(connection, messages(1)[0])) }, { once: true })
    ackAll(inbound, inFlight.slice(0, 1))
    await window[0]
    expect(afterAck).toEqual([undefined])
    ackAll(inbound, inFlight.slice(1))
    ackAll(inbound, await readMessages(frames, 1))
    await Promise.all([...window, waiting])
    expect(writes.reduce((a, b) => a + b, 0)).toBe(1 + MAX_UNACKED + 1)
  })
})

describe('/im/1.0.0 outbound channel: the muxer\'s window updates', () => {
  /**
   * A sender on one end of a yamux session over an in-memory connection, the
   * recipient's muxer on the other; `written`: what the sender's muxer wrote.
   */
  async function yamuxLink (): Promise<{ sender: ServiceUnderTest, connection: Connection, inbound: Promise<Stream>, written: Array<Uint8Array | Uint8ArrayList>, outboundConnection: MultiaddrConnection, client: StreamMuxer, server: StreamMuxer }> {
    const muxers = yamux({ enableKeepAlive: false })()
    const [outboundConnection, inboundConnection] = multiaddrConnectionPair()
    const written: Array<Uint8Array | Uint8ArrayList> = []
    const send = outboundConnection.send.bind(outboundConnection)
    outboundConnection.send = (data) => {
      written.push(data)
      return send(data)
    }
    const client = muxers.createStreamMuxer(outboundConnection)
    const server = muxers.createStreamMuxer(inboundConnection)
    const inbound = new Promise<Stream>(resolve => { server.addEventListener('stream', evt => { resolve(evt.detail) }, { once: true }) })
    const sender = await startService({ store: async () => 'stored' as const })
    running.push(sender)
    const connection = fakeConnection({ remotePeer: await makePeer(), newStream: async () => client.createStream() })
    return { sender, connection, inbound, written, outboundConnection, client, server }
  }

  it('on yamux, writes the window update an ack\'s chunk calls for after the send it resolves, in the next turn, and reads on', async () => {
    const { sender, connection, inbound, written, client, server } = await yamuxLink()
    try {
      for (const message of messages(2)) {
        let typesWhenResolved: number[] | undefined
        const sent = sender.service.send(connection, message).then(() => { typesWhenResolved = yamuxFrameTypes(written) })
        const stream = await inbound
        const [read] = await readMessages(new StreamFrames(stream), 1)
        const before = yamuxFrameTypes(written)
        ackAll(stream, [read])
        await sent
        // resolved with no window update written since the ack came
        expect(typesWhenResolved).toEqual(before)
        await new Promise(resolve => setImmediate(resolve))
        expect(yamuxFrameTypes(written).slice(before.length)).toEqual([1])
      }
    } finally {
      client.abort(new Error('test over'))
      server.abort(new Error('test over'))
    }
  })

  it('on yamux, fails the channel quietly when the connection is gone before the held window update can go', async () => {
    const { sender, connection, inbound, outboundConnection, server } = await yamuxLink()
    const [first, second] = messages(2)
    const sent = sender.service.send(connection, first)
    const stream = await inbound
    ackAll(stream, await readMessages(new StreamFrames(stream), 1))
    await sent
    // in the same turn as the ack's read: the channel still holds its window update
    await outboundConnection.close()
    await new Promise(resolve => setImmediate(resolve))
    await expect(sender.service.send(connection, second)).rejects.toThrow()
    server.abort(new Error('test over'))
  })
})

describe('/im/1.0.0 outbound channel: a stream closed as it opens', () => {
  it('fails the send as a stream that ended, and leaves nothing to send at once on', async () => {
    const sender = await startService({ store: async () => 'stored' as const })
    running.push(sender)
    const connection = fakeConnection({
      remotePeer: await makePeer(),
      newStream: async () => {
        const [outbound] = await streamPair()
        outbound.abort(new Error('reset as it opened'))
        return outbound
      }
    })
    await expect(sender.service.send(connection, messages(1)[0])).rejects.toThrow(/closed the stream|reset as it opened/)
    expect(sender.service.sendAtOnce(connection, messages(1)[0])).toBeUndefined()
  })
})
