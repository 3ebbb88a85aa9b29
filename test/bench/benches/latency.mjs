// 1. Latency: send → ack round trip of 200-byte messages between two parley
// node processes on a direct TCP loopback connection, next to libp2p ping, a
// length-prefixed echo on a raw libp2p stream, both on that same connection,
// and a plain TCP echo between the same two processes; the least a
// store-and-acknowledge messenger does, on the same connection (the echo plus
// a row written on each side: test/bench/lib/echo.mjs); and what one durable
// commit of the store costs on the same disk (the contract puts one on each
// side of a send; the sender's overlaps the round trip, so one is on the way
// to the ack), alone and with the other process committing at the same time
// (both stores are on one disk here, unlike two users' machines); and parley
// with the sender's store on tmpfs, which takes its fsync off that one disk.
// The rows run back to back; the "lone messages" rows take some of them again
// with each round trip after a millisecond of nothing sent, as a person's
// messages come, when both processes have gone idle in between.
import { rotate, summarize } from '../lib/stats.mjs'

export const title = 'Latency: send → ack, 200-byte messages, two processes, direct TCP loopback'

/** ms with nothing sent before each round trip of the lone-message rows. */
const LONE_GAP = 1

export async function run ({ spawn, tempDir, scale, log }) {
  const rounds = Math.max(2, Math.round(6 * scale))
  const count = 100
  const warmUp = 1000
  const size = 200
  const [a, b] = await Promise.all([spawn('latency-a'), spawn('latency-b')])
  const tcp = ['/ip4/127.0.0.1/tcp/0']
  // no relays, no bootstrap, no /webrtc: one direct TCP connection, nothing else
  const bob = await b.call('parley:start', { name: 'b', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [], echo: true })
  const alice = await a.call('parley:start', { name: 'a', dataDir: await tempDir(), listen: tcp, relays: [], bootstrap: [] })
  // alice is bob's contact: a stranger's messages would wait as a request past a quota
  await b.call('parley:addContact', { name: 'b', contact: 'alice', peer: alice.peerId })
  const tcpPort = await b.call('tcp:server')
  await a.call('dial', { name: 'a', peer: bob.peerId, addrs: bob.addrs })
  // diagnostic: the same two processes, nodes without a data dir (SQLite in memory: no fsync)
  const bobMem = await b.call('parley:start', { name: 'b-mem', listen: tcp, relays: [], bootstrap: [], echo: true })
  const aliceMem = await a.call('parley:start', { name: 'a-mem', listen: tcp, relays: [], bootstrap: [] })
  await b.call('parley:addContact', { name: 'b-mem', contact: 'alice', peer: aliceMem.peerId })
  await a.call('dial', { name: 'a-mem', peer: bobMem.peerId, addrs: bobMem.addrs })
  // diagnostic: a sender whose store is on tmpfs (its fsync waits for no disk), to
  // bob's store on the disk: the two fsyncs no longer share this machine's one
  // disk, as on two users' machines, each with its own (none where there is no /dev/shm)
  const tmpfsDir = await tempDir({ tmpfs: true })
  const aliceTmpfs = tmpfsDir == null ? undefined : await a.call('parley:start', { name: 'a-tmpfs', dataDir: tmpfsDir, listen: tcp, relays: [], bootstrap: [] })
  if (aliceTmpfs != null) {
    await b.call('parley:addContact', { name: 'b', contact: 'alice-tmpfs', peer: aliceTmpfs.peerId })
    await a.call('dial', { name: 'a-tmpfs', peer: bob.peerId, addrs: bob.addrs })
  }
  // an /im client that is not parley (lib/raw-im.mjs), a contact of the in-memory
  // node, sending one message at a time: the recipient's part of the round trip
  const [rawIm] = await a.call('raw:start', { prefix: 'lat-raw', count: 1 })
  await b.call('parley:addContact', { name: 'b-mem', contact: 'raw', peer: rawIm })
  const bobMemTcp = bobMem.addrs.filter(addr => addr.startsWith('/ip4/127.0.0.1/'))
  await a.call('raw:connect', { names: ['lat-raw0'], addrs: bobMemTcp })
  let rawSeq = 1
  const commitDirs = { b: await tempDir(), togetherA: await tempDir(), togetherB: await tempDir(), lone: await tempDir() }

  const methods = {
    parley: (n) => a.call('lat:parley', { name: 'a', peer: bob.peerId, count: n, size }),
    memory: (n) => a.call('lat:parley', { name: 'a-mem', peer: bobMem.peerId, count: n, size }),
    ...(aliceTmpfs == null ? {} : { senderTmpfs: (n) => a.call('lat:parley', { name: 'a-tmpfs', peer: bob.peerId, count: n, size }) }),
    ping: (n) => a.call('lat:ping', { name: 'a', peer: bob.peerId, count: n }),
    echo: (n) => a.call('lat:echo', { name: 'a', peer: bob.peerId, count: n, size }),
    tcp: (n) => a.call('lat:tcp', { port: tcpPort, count: n, size }),
    // the least a store-and-acknowledge messenger does, on the echo's connection
    storeEcho: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: true }),
    storeEchoMemory: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: false }),
    // the same with the sender's row made durable as parley's is (its sync overlapping the round trip)
    storeEchoSynced: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: true, senderSync: true }),
    // the same with what a messenger's store writes at least: the row, its id's and its history's indexes, its conversation
    storeEchoIndexed: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: true, indexed: true }),
    storeEchoIndexedSynced: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: true, senderSync: true, indexed: true }),
    storeEchoIndexedMemory: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: false, indexed: true }),
    // and with the sender's database on tmpfs, as parley's a-tmpfs node: the two-machine case
    ...(tmpfsDir == null ? {} : { storeEchoIndexedSenderTmpfs: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: true, senderSync: true, indexed: true, senderRoot: tmpfsDir }) }),
    // the same, each side's rows in parley's own store
    parleyStoreEcho: (n) => a.call('lat:parley-store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: true }),
    parleyStoreEchoMemory: (n) => a.call('lat:parley-store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: false }),
    rawIm: async (n) => {
      const run = await a.call('raw:send', { senders: [{ name: 'lat-raw0', from: rawSeq }], addrs: bobMemTcp, count: n, size, window: 1 })
      rawSeq += n
      if (run.statuses.OK !== n) throw new Error(`the raw client's messages were not all acknowledged OK: ${JSON.stringify(run.statuses)}`)
      return run.latencies
    },
    rawEcho: (n) => a.call('raw:echo', { name: 'lat-raw0', count: n, size }),
    // the disk's part: one durable SQLite commit, on the file system the stores are on
    // (each store kept from round to round, as the nodes' are: see store:commits)
    commit: (n) => b.call('store:commits', { dataDir: commitDirs.b, count: n }),
    // both processes committing at once, as the sender and recipient do during a send
    commitTogether: async (n) => {
      const [x, y] = await Promise.all([a.call('store:commits', { dataDir: commitDirs.togetherA, count: n }), b.call('store:commits', { dataDir: commitDirs.togetherB, count: n })])
      return [...x, ...y]
    }
  }
  // lone messages: each round trip (and commit) after LONE_GAP ms with nothing
  // sent, as a person's messages come, where the rows above run back to back.
  // A phase of their own, after those: interleaved, they slowed the rows above
  const loneMethods = {
    parleyLone: (n) => a.call('lat:parley', { name: 'a', peer: bob.peerId, count: n, size, gap: LONE_GAP }),
    memoryLone: (n) => a.call('lat:parley', { name: 'a-mem', peer: bobMem.peerId, count: n, size, gap: LONE_GAP }),
    echoLone: (n) => a.call('lat:echo', { name: 'a', peer: bob.peerId, count: n, size, gap: LONE_GAP }),
    commitLone: (n) => b.call('store:commits', { dataDir: commitDirs.lone, count: n, gap: LONE_GAP }),
    storeEchoIndexedSyncedLone: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: true, senderSync: true, indexed: true, gap: LONE_GAP }),
    storeEchoIndexedMemoryLone: (n) => a.call('lat:store-echo', { name: 'a', peer: bob.peerId, count: n, size, durable: false, indexed: true, gap: LONE_GAP })
  }
  const samples = Object.fromEntries([...Object.keys(methods), ...Object.keys(loneMethods)].map(k => [k, []]))
  for (const [phase, phaseMethods] of [['back to back', methods], ['lone messages', loneMethods]]) {
    // warm-up, not counted: V8 optimises the code of a message's path only after
    // it has run a while, and a node that has been up is in that state (the
    // first hundreds of messages cost more: BENCHMARKS.md, Latency)
    for (const m of Object.values(phaseMethods)) await m(warmUp)
    for (let r = 0; r < rounds; r++) {
      for (const name of rotate(Object.keys(phaseMethods), r)) samples[name].push(...await phaseMethods[name](count))
      log(`  ${phase}: round ${r + 1}/${rounds}`)
    }
  }
  await Promise.all([a.stop(), b.stop()])

  const s = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v)]))
  const ratio = s.parley.p50 / s.echo.p50
  // what the contract leaves at least: the recipient's commit before its ack
  // and the round trip (the sender's commit runs meanwhile)
  const floor = s.commit.p50 + s.echo.p50
  const floorTogether = s.commitTogether.p50 + s.echo.p50
  const floorLone = s.commitLone.p50 + s.echoLone.p50
  return {
    raw: { rounds, count, warmUp, size, summaries: s },
    rows: [
      { metric: 'send → ack RTT', parley: s.parley, baseline: { name: 'length-prefixed echo, raw libp2p stream, same connection', ...s.echo }, ratio, target: '≤ 1.5×', met: ratio <= 1.5 },
      { metric: 'send → ack RTT vs libp2p ping', parley: s.parley, baseline: { name: 'libp2p ping (32 bytes, one kept stream), same connection', ...s.ping }, ratio: s.parley.p50 / s.ping.p50 },
      { metric: 'send → ack RTT vs plain TCP echo', parley: s.parley, baseline: { name: 'plain TCP echo, same two processes', ...s.tcp }, ratio: s.parley.p50 / s.tcp.p50 },
      { metric: 'diagnostic: one durable SQLite commit (synchronous=FULL: an fsync of the WAL), same file system', parley: s.commit },
      { metric: 'diagnostic: two durable SQLite commits at once, one per process, same file system', parley: s.commitTogether },
      { metric: 'send → ack RTT vs the least the contract allows: 1 durable commit (the recipient\'s; the sender\'s overlaps) + the echo RTT', parley: s.parley, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.parley.p50 / floor, target: '≤ 1.25×', met: s.parley.p50 / floor <= 1.25 },
      { metric: 'diagnostic: send → ack RTT vs 1 commit made while the other process commits too (one disk for both sides here) + the echo RTT', parley: s.parley, baseline: { name: 'concurrent commit + echo', value: floorTogether, unit: 'ms' }, ratio: s.parley.p50 / floorTogether },
      ...(s.senderTmpfs == null ? [] : [{ metric: 'diagnostic: send → ack RTT with the sender\'s store on tmpfs, the recipient\'s on the disk as above: the recipient\'s fsync no longer shares the disk with the sender\'s, as on two users\' machines (each with its own disk; there the sender\'s fsync overlaps the round trip), vs 1 commit + echo', parley: s.senderTmpfs, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.senderTmpfs.p50 / floor }]),
      { metric: 'diagnostic: send → ack RTT with the stores in memory (no fsync; not a deployment setting)', parley: s.memory, baseline: { name: 'length-prefixed echo, raw libp2p stream', ...s.echo }, ratio: s.memory.p50 / s.echo.p50 },
      // the least any store-and-acknowledge messenger does (test/bench/lib/echo.mjs):
      // where the two targets sit between the bare echo and parley
      { metric: 'diagnostic: the least store-and-ack (the echo, plus one INSERT on each side before the frame leaves / the ack, one UPDATE on the ack; no parsing, checks, ordering or events), durable vs 1 commit + echo', parley: s.storeEcho, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.storeEcho.p50 / floor },
      { metric: 'diagnostic: the least store-and-ack with the sender\'s row made durable too, as parley\'s send() does (its WAL synced while the frame travels; the round trip ends on the ack and that sync): the whole contract on this one disk, vs 1 commit + echo', parley: s.storeEchoSynced, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.storeEchoSynced.p50 / floor },
      { metric: 'diagnostic: the same least store-and-ack, in memory, vs the echo', parley: s.storeEchoMemory, baseline: { name: 'length-prefixed echo, raw libp2p stream', ...s.echo }, ratio: s.storeEchoMemory.p50 / s.echo.p50 },
      // a messenger's store at least: four b-trees a message (the row, a unique index on its random id, its history order, its conversation) where the least writes one
      { metric: 'diagnostic: the least messenger\'s store-and-ack: the least store-and-ack, but each side\'s row found by its conversation and random 16-byte id (a unique index: the dedup), in its history\'s order (an index), and its conversation\'s state updated, in one transaction; durable vs 1 commit + echo', parley: s.storeEchoIndexed, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.storeEchoIndexed.p50 / floor },
      { metric: 'diagnostic: the least messenger\'s store-and-ack with the sender\'s rows made durable too (the whole contract on this one disk), vs 1 commit + echo', parley: s.storeEchoIndexedSynced, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.storeEchoIndexedSynced.p50 / floor },
      ...(s.storeEchoIndexedSenderTmpfs == null || s.senderTmpfs == null
        ? []
        : [
            { metric: 'diagnostic: the least messenger\'s store-and-ack with both rows durable, the sender\'s database on tmpfs (the two-machine case, as parley\'s row with its sender on tmpfs), vs 1 commit + echo', parley: s.storeEchoIndexedSenderTmpfs, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.storeEchoIndexedSenderTmpfs.p50 / floor },
            { metric: 'diagnostic: send → ack RTT vs the least messenger\'s store-and-ack, both with the sender\'s store on tmpfs (the two-machine case)', parley: s.senderTmpfs, baseline: { name: 'least messenger\'s store-and-ack, sender on tmpfs', ...s.storeEchoIndexedSenderTmpfs }, ratio: s.senderTmpfs.p50 / s.storeEchoIndexedSenderTmpfs.p50 }
          ]),
      { metric: 'diagnostic: the least messenger\'s store-and-ack in memory, vs the echo', parley: s.storeEchoIndexedMemory, baseline: { name: 'length-prefixed echo, raw libp2p stream', ...s.echo }, ratio: s.storeEchoIndexedMemory.p50 / s.echo.p50 },
      // parley's store alone: where between that least and parley the store's own writes put the round trip
      { metric: 'diagnostic: the same, each side\'s rows in parley\'s own message store (Store.enqueue with the frame sent before its commit and the WAL synced meanwhile, Store.receive durable, Store.record on the ack deferred to the next commit as a node\'s): parley\'s store without the rest of parley, vs 1 commit + echo', parley: s.parleyStoreEcho, baseline: { name: '1 commit + echo', value: floor, unit: 'ms' }, ratio: s.parleyStoreEcho.p50 / floor },
      { metric: 'diagnostic: the same on parley\'s store in memory, vs the echo', parley: s.parleyStoreEchoMemory, baseline: { name: 'length-prefixed echo, raw libp2p stream', ...s.echo }, ratio: s.parleyStoreEchoMemory.p50 / s.echo.p50 },
      // the in-memory measure: a client that is not parley, so only the recipient is parley's
      { metric: 'an /im client that is not parley → a parley node with its store in memory, one message at a time: write → ack vs the echo on the same connection', parley: s.rawIm, baseline: { name: 'length-prefixed echo, raw libp2p stream, same connection', ...s.rawEcho }, ratio: s.rawIm.p50 / s.rawEcho.p50, target: '≤ 1.5×', met: s.rawIm.p50 / s.rawEcho.p50 <= 1.5 },
      { metric: 'diagnostic: send → ack RTT vs the least store-and-ack, durable', parley: s.parley, baseline: { name: 'least store-and-ack, durable', ...s.storeEcho }, ratio: s.parley.p50 / s.storeEcho.p50 },
      { metric: 'diagnostic: send → ack RTT vs the least store-and-ack with both rows durable (the whole contract)', parley: s.parley, baseline: { name: 'least store-and-ack, both rows durable', ...s.storeEchoSynced }, ratio: s.parley.p50 / s.storeEchoSynced.p50 },
      { metric: 'diagnostic: send → ack RTT vs the least store-and-ack, both in memory', parley: s.memory, baseline: { name: 'least store-and-ack, in memory', ...s.storeEchoMemory }, ratio: s.memory.p50 / s.storeEchoMemory.p50 },
      { metric: 'diagnostic: send → ack RTT vs the least messenger\'s store-and-ack with both rows durable (the whole contract)', parley: s.parley, baseline: { name: 'least messenger\'s store-and-ack, both rows durable', ...s.storeEchoIndexedSynced }, ratio: s.parley.p50 / s.storeEchoIndexedSynced.p50 },
      // lone messages: every process has been idle a while, as when a person sends one
      { metric: `diagnostic: lone messages (each round trip after ${LONE_GAP} ms with nothing sent, as a person's messages come; every lone row measured so): the echo vs the echo back to back`, parley: s.echoLone, baseline: { name: 'the echo back to back', ...s.echo }, ratio: s.echoLone.p50 / s.echo.p50 },
      { metric: 'diagnostic: lone messages: send → ack RTT vs 1 durable commit (also after the gap) + the echo', parley: s.parleyLone, baseline: { name: '1 lone commit + lone echo', value: floorLone, unit: 'ms' }, ratio: s.parleyLone.p50 / floorLone },
      { metric: 'diagnostic: lone messages: the least messenger\'s store-and-ack with both rows durable (the whole contract), vs the same floor', parley: s.storeEchoIndexedSyncedLone, baseline: { name: '1 lone commit + lone echo', value: floorLone, unit: 'ms' }, ratio: s.storeEchoIndexedSyncedLone.p50 / floorLone },
      { metric: 'diagnostic: lone messages: send → ack RTT vs the least messenger\'s store-and-ack with both rows durable', parley: s.parleyLone, baseline: { name: 'lone least messenger\'s store-and-ack, both rows durable', ...s.storeEchoIndexedSyncedLone }, ratio: s.parleyLone.p50 / s.storeEchoIndexedSyncedLone.p50 },
      { metric: 'diagnostic: lone messages: send → ack RTT with the stores in memory, vs the lone echo', parley: s.memoryLone, baseline: { name: 'lone echo', ...s.echoLone }, ratio: s.memoryLone.p50 / s.echoLone.p50 },
      { metric: 'diagnostic: lone messages: the least messenger\'s store-and-ack in memory, vs the lone echo', parley: s.storeEchoIndexedMemoryLone, baseline: { name: 'lone echo', ...s.echoLone }, ratio: s.storeEchoIndexedMemoryLone.p50 / s.echoLone.p50 }
    ]
  }
}
