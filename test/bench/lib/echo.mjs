// Baselines: a length-prefixed echo on a raw libp2p stream (framed with the
// same it-length-prefixed / it-pipe code /im uses), and a plain TCP echo.
import { mkdtempSync, rmSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import { buildModule } from './build.mjs'

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
  for (const durable of [false, true]) {
    for (const indexed of [false, true]) {
      await libp2p.handle(storeEchoProtocol(durable, indexed), storeEchoHandler(durable, indexed), { runOnLimitedConnection: true, maxInboundStreams: 1024, maxOutboundStreams: 1024, force: true })
    }
  }
  for (const durable of [false, true]) {
    await libp2p.handle(parleyStoreEchoProtocol(durable), parleyStoreEchoHandler(durable), { runOnLimitedConnection: true, maxInboundStreams: 1024, maxOutboundStreams: 1024, force: true })
  }
}

/*
 * The least a store-and-acknowledge messenger does per message, as a baseline
 * for parley's send → ack: the echo above, but the recipient first inserts the
 * frame as a row (one autocommit INSERT into a table with only a primary key)
 * and answers with an 8-byte ack instead of the frame; the sender inserts its
 * row before the frame leaves and marks it acknowledged when the ack arrives
 * (one UPDATE by primary key). No parsing, no checks, no ordering, no dedup,
 * no events. `durable`: the recipient's database is a file in WAL mode with
 * synchronous=FULL (its commit is on disk before the ack, as parley's is) and
 * the sender's a file with synchronous=OFF; otherwise both are in memory.
 * `senderSync` (durable only): the sender's row is made durable too, as
 * parley's `send()` does it: committed without waiting for the disk
 * (synchronous=NORMAL), the frame put on the wire, the WAL fdatasync'd on
 * libuv's thread pool meanwhile, and the round trip ends once both the ack is
 * in and that sync is done. What the whole contract costs at least, on the
 * disk this machine has.
 *
 * `indexed`: the least a messenger's store writes instead of one row, on
 * each side: the row (appended), found again by its conversation and its
 * 16-byte random id (a unique index: what deduplicates a copy), in its
 * conversation's history order (an index), and the conversation's state
 * updated (a row of its own), in one transaction. Four b-trees a message,
 * where the plain least writes one. As parley's `send()`, its sender puts the
 * frame on the wire before it writes its rows, and marks a message
 * acknowledged in the transaction of the next.
 */
const storeEchoProtocol = (durable, indexed = false) => `/parley-bench/store-echo/${durable ? 'disk' : 'memory'}${indexed ? '-indexed' : ''}/1.0.0`

// any peer IDs: the stores only key rows by them
const SENDER = '12D3KooWLrs9kAH5Yi6HJKPCC1KMbbyJD2KdLrrkbPb9pHkcRPFW'
const RECIPIENT = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

/**
 * A fresh database for one stream: in memory, or a file removed again by
 * `remove()`. `db.store(body)` writes a message (see above): its row id;
 * `db.acked(id)` marks one acknowledged.
 */
function storeDatabase (durable, synchronous, indexed, peer, root = tmpdir()) {
  const dir = durable ? mkdtempSync(join(root, 'parley-store-echo-')) : undefined
  const db = new DatabaseSync(dir == null ? ':memory:' : join(dir, 'm.db'))
  if (durable) db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}`)
  if (indexed) {
    db.exec(`CREATE TABLE m (id INTEGER PRIMARY KEY, peer TEXT NOT NULL, message BLOB NOT NULL, position INTEGER NOT NULL, body BLOB NOT NULL, acked INTEGER NOT NULL DEFAULT 0);
      CREATE UNIQUE INDEX m_by_id ON m (peer, message);
      CREATE INDEX m_history ON m (peer, position);
      CREATE TABLE c (peer TEXT PRIMARY KEY, last INTEGER NOT NULL) WITHOUT ROWID`)
    db.prepare('INSERT INTO c (peer, last) VALUES (?, 0)').run(peer)
    const insert = db.prepare('INSERT INTO m (peer, message, position, body) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING')
    const conversation = db.prepare('UPDATE c SET last = ? WHERE peer = ?')
    const mark = db.prepare('UPDATE m SET acked = 1 WHERE id = ?')
    const [begin, commit, rollback] = ['BEGIN', 'COMMIT', 'ROLLBACK'].map(sql => db.prepare(sql))
    let position = 0
    let acked
    db.store = (body) => {
      begin.run()
      try {
        if (acked != null) mark.run(acked)
        acked = undefined
        position++
        const { lastInsertRowid } = insert.run(peer, randomBytes(16), position, body)
        conversation.run(position, peer)
        commit.run()
        return lastInsertRowid
      } catch (err) {
        rollback.run()
        throw err
      }
    }
    // written with the next message, as parley defers its delivered mark
    db.acked = (id) => { acked = id }
  } else {
    db.exec('CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB NOT NULL, acked INTEGER NOT NULL DEFAULT 0)')
    const insert = db.prepare('INSERT INTO m (body) VALUES (?)')
    const mark = db.prepare('UPDATE m SET acked = 1 WHERE id = ?')
    db.store = (body) => insert.run(body).lastInsertRowid
    db.acked = (id) => { mark.run(id) }
  }
  db.wal = dir == null ? undefined : join(dir, 'm.db-wal')
  db.remove = () => {
    db.close()
    if (dir != null) rmSync(dir, { recursive: true, force: true })
  }
  return db
}

function storeEchoHandler (durable, indexed) {
  return async (stream) => {
    const db = storeDatabase(durable, 'FULL', indexed, SENDER)
    try {
      await pipe(stream, (source) => lp.decode(source, { maxDataLength: MAX_FRAME }), async (frames) => {
        for await (const buf of frames) {
          const lastInsertRowid = db.store(buf.subarray())
          const ack = new Uint8Array(8)
          new DataView(ack.buffer).setBigUint64(0, BigInt(lastInsertRowid))
          if (!stream.send(lp.encode.single(ack))) await stream.onDrain()
        }
      })
      await stream.close()
    } catch (err) {
      stream.abort(err)
    } finally {
      db.remove()
    }
  }
}

/**
 * Opens one store-and-ack stream on `connection` (see above; `durable`,
 * `senderSync`, `indexed` as there): round-trip times in ms. `senderRoot`:
 * where the sender's database goes (a tmpfs takes its fsync off this
 * machine's one disk, as on two users' machines).
 */
export async function openStoreEcho (connection, { durable, senderSync = false, indexed = false, senderRoot = undefined }) {
  const db = storeDatabase(durable, senderSync ? 'NORMAL' : 'OFF', indexed, RECIPIENT, senderRoot)
  // the WAL exists from the table's creation on
  const wal = durable && senderSync ? await open(db.wal, 'r') : undefined
  const stream = await connection.newStream(storeEchoProtocol(durable, indexed), { runOnLimitedConnection: true })
  const frames = lp.decode(stream, { maxDataLength: MAX_FRAME })[Symbol.asyncIterator]()
  return {
    stream,
    async roundTrip (payload) {
      const start = performance.now()
      // the least writes its row before its frame; the messenger after it, as parley's send() does
      const rowFirst = indexed ? undefined : db.store(payload)
      const sent = stream.send(lp.encode.single(payload))
      const rowId = rowFirst ?? db.store(payload)
      if (!sent) await stream.onDrain()
      const synced = wal?.datasync()
      const { done } = await frames.next()
      if (done) throw new Error('store-echo stream ended')
      await synced
      db.acked(rowId)
      return performance.now() - start
    },
    async close () {
      try { await stream.close() } catch (err) { stream.abort(err) } finally {
        await wal?.close()
        db.remove()
      }
    }
  }
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

/*
 * The least store-and-ack again, but each side keeps its rows in parley's own
 * message store (node/store, on disk), as a node does: the sender's
 * `Store.enqueue` (its frame put on the wire before its commit, the WAL
 * synced while the frame travels, as `send()` does) and `Store.record` on
 * the ack (deferred to the next commit); the recipient's `Store.receive`
 * (durable: its fsync before the ack). The frame is the message id, its seq and the body,
 * read without a codec: no protobuf, checks, policy, events or outbox
 * rounds. What parley's store costs a round trip, apart from the rest of
 * parley. `durable` false: both stores in memory.
 */
const parleyStoreEchoProtocol = (durable) => `/parley-bench/store-echo/parley-${durable ? 'disk' : 'memory'}/1.0.0`
const ID_CHARS = 36

/** A fresh parley store, in memory or in a directory of its own, removed again by `remove()`. */
async function parleyStoreIn (durable) {
  const { Store } = await import(buildModule('./node/store/index.js'))
  const dir = durable ? mkdtempSync(join(tmpdir(), 'parley-store-echo-')) : undefined
  const store = new Store(dir == null ? undefined : join(dir, 'messages.db'))
  store.remove = () => {
    store.close()
    if (dir != null) rmSync(dir, { recursive: true, force: true })
  }
  return store
}

function parleyStoreEchoHandler (durable) {
  return async (stream) => {
    const store = await parleyStoreIn(durable)
    const text = new TextDecoder()
    try {
      await pipe(stream, (source) => lp.decode(source, { maxDataLength: MAX_FRAME }), async (frames) => {
        for await (const list of frames) {
          const buf = list.subarray()
          const now = Date.now()
          const seq = new DataView(buf.buffer, buf.byteOffset).getUint32(ID_CHARS)
          store.receive({ peer: SENDER, id: text.decode(buf.subarray(0, ID_CHARS)), seq, body: text.decode(buf.subarray(ID_CHARS + 4)), contentType: 'text/plain', sentAt: now, receivedAt: now, path: 'direct' })
          if (!stream.send(lp.encode.single(buf.subarray(0, ID_CHARS)))) await stream.onDrain()
        }
      })
      await stream.close()
    } catch (err) {
      stream.abort(err)
    } finally {
      store.remove()
    }
  }
}

/** Opens one stream of the store-and-ack on parley's store (see above): round-trip times in ms. */
export async function openParleyStoreEcho (connection, durable) {
  const store = await parleyStoreIn(durable)
  const stream = await connection.newStream(parleyStoreEchoProtocol(durable), { runOnLimitedConnection: true })
  const frames = lp.decode(stream, { maxDataLength: MAX_FRAME })[Symbol.asyncIterator]()
  const encoder = new TextEncoder()
  const decoder = new TextDecoder()
  return {
    stream,
    async roundTrip (payload) {
      const start = performance.now()
      let sent
      const entry = store.enqueue({ peer: RECIPIENT, id: randomUUID(), body: decoder.decode(payload), contentType: 'text/plain', sentAt: Date.now() }, {
        durable: false,
        beforeCommit: (entry) => {
          const frame = new Uint8Array(ID_CHARS + 4 + payload.byteLength)
          encoder.encodeInto(entry.id, frame)
          new DataView(frame.buffer).setUint32(ID_CHARS, entry.seq)
          frame.set(payload, ID_CHARS + 4)
          sent = stream.send(lp.encode.single(frame))
        }
      })
      if (!sent) await stream.onDrain()
      const synced = store.sync()
      const { done } = await frames.next()
      if (done) throw new Error('store-echo stream ended')
      await synced
      // deferred to the next commit, as a node's delivery engine does
      store.record({ at: Date.now(), delivered: [{ id: entry.id, path: 'direct' }], retried: [], failed: [] }, { durable: false, defer: true })
      return performance.now() - start
    },
    async close () {
      try { await stream.close() } catch (err) { stream.abort(err) } finally {
        store.remove()
      }
    }
  }
}
