// Baselines: a length-prefixed echo on a raw libp2p stream (framed with the
// same it-length-prefixed / it-pipe code /im uses), and a plain TCP echo.
import { createServer, connect } from 'node:net'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'

export const ECHO_PROTOCOL = '/parley-bench/echo/1.0.0'
const MAX_FRAME = 65_536

/** Echoes every length-prefixed frame of a stream back, in order. */
export async function echoHandler (stream) {
  try {
    await pipe(stream, (source) => lp.decode(source, { maxDataLength: MAX_FRAME }), async (frames) => {
      for await (const buf of frames) {
        if (!stream.send(lp.encode.single(buf))) await stream.onDrain()
      }
    })
    await stream.close()
  } catch (err) {
    stream.abort(err)
  }
}

/** Serves the echo protocol on a libp2p node, on relayed connections too. */
export async function handleEcho (libp2p) {
  await libp2p.handle(ECHO_PROTOCOL, echoHandler, { runOnLimitedConnection: true, maxInboundStreams: 1024, maxOutboundStreams: 1024, force: true })
}

/** Opens one echo stream on `connection`, kept for many round trips. */
export async function openEcho (connection) {
  const stream = await connection.newStream(ECHO_PROTOCOL, { runOnLimitedConnection: true })
  const frames = lp.decode(stream, { maxDataLength: MAX_FRAME })[Symbol.asyncIterator]()
  const next = async () => {
    const { done, value } = await frames.next()
    if (done) throw new Error('echo stream ended')
    return value
  }
  return {
    stream,
    /** One frame out, its echo back: round-trip time in ms. */
    async roundTrip (payload) {
      const start = performance.now()
      if (!stream.send(lp.encode.single(payload))) await stream.onDrain()
      await next()
      return performance.now() - start
    },
    /** `count` frames with up to `window` unanswered at once: echoes per second. */
    async pipelined (payload, count, window) {
      let sent = 0
      let received = 0
      const write = async () => {
        while (sent < count && sent - received < window) {
          sent++
          if (!stream.send(lp.encode.single(payload))) await stream.onDrain()
        }
      }
      const start = performance.now()
      await write()
      while (received < count) {
        await next()
        received++
        await write()
      }
      return { count, seconds: (performance.now() - start) / 1000 }
    },
    async close () {
      try { await stream.close() } catch (err) { stream.abort(err) }
    }
  }
}

/** A TCP server on 127.0.0.1 that writes back whatever it reads. */
export async function tcpEchoServer () {
  const sockets = new Set()
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.pipe(socket)
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  return {
    port: server.address().port,
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

/** A client of `tcpEchoServer`: a kept connection, one message out and back at a time. */
export async function tcpEchoClient (port) {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true })
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  let want = 0
  let got = 0
  let done
  socket.on('data', (chunk) => {
    got += chunk.length
    if (got >= want && done != null) {
      const d = done
      done = undefined
      d()
    }
  })
  return {
    async roundTrip (payload) {
      const start = performance.now()
      got = 0
      want = payload.length
      const back = new Promise(resolve => { done = resolve })
      socket.write(payload)
      await back
      return performance.now() - start
    },
    close () { socket.destroy() }
  }
}
