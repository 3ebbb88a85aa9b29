/**
 * One host of the NAT lab: runs a parley node (`createNode` from the built
 * package) inside a network namespace and is driven over stdio.
 *
 *   node test/nat/agent.mjs '<NodeConfig as JSON>'
 *
 * stdin takes one JSON command per line:
 *   { "op": "send", "ref": "…", "to": "<peer id>", "body": "…", "timeout": 60000 }
 *   { "op": "status", "ref": "…", "peer": "<peer id, for pathTo>" }
 *   { "op": "stop" }
 * stdout carries only JSON lines, each an event with `t` (ms since the epoch):
 *   ready, addrs, published, message, msg-status, path, sent, send-failed, status,
 *   stopped, error
 * Logs (DEBUG=…) go to stderr.
 */
import { createInterface } from 'node:readline'
import { createNode } from '../../dist/index.js'

const config = JSON.parse(process.argv[2] ?? '{}')

// ICE/DTLS logs of libdatachannel and libjuice, when asked for (Verbose, Debug, Info, Warning)
if (process.env.PARLEY_NAT_RTC_LOG != null) {
  try {
    const { initLogger } = (await import('node-datachannel')).default
    initLogger(process.env.PARLEY_NAT_RTC_LOG, (level, message) => process.stderr.write(`${new Date().toISOString()} rtc:${level} ${message}\n`))
  } catch (err) {
    process.stderr.write(`no node-datachannel logger: ${err.message}\n`)
  }
}

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, t: Date.now(), ...fields }) + '\n')
}

function candidateType (candidate) {
  return /\btyp (\w+)/.exec(candidate ?? '')?.[1]
}

/**
 * What ICE chose for a WebRTC connection: node-datachannel's selected pair and
 * the candidate types each side offered. Reads libp2p internals (the
 * connection's multiaddr connection holds the RTCPeerConnection), so every
 * step is guarded.
 */
function iceInfo (connection) {
  const pc = connection.maConn?.peerConnection
  if (pc == null) return undefined
  const info = {}
  try {
    const pair = pc.selectedCandidatePair?.()
    if (pair != null) {
      const side = (c) => c == null ? undefined : { type: c.type, address: c.address, port: c.port, transport: c.transportType }
      info.selected = { local: side(pair.local), remote: side(pair.remote) }
    }
  } catch (err) {
    info.error = err.message
  }
  try {
    info.localCandidates = [...new Set((pc.ext_localCandidates ?? []).map(c => candidateType(c.candidate)).filter(Boolean))]
    info.remoteCandidates = [...new Set((pc.ext_remoteCandidates ?? []).map(c => candidateType(c.candidate)).filter(Boolean))]
  } catch {}
  return info
}

function connectionInfo (connection) {
  const names = connection.remoteAddr.getComponents().map(c => c.name)
  const transport = names.includes('webrtc')
    ? 'webrtc'
    : names.includes('p2p-circuit') ? 'circuit-relay' : names.includes('ws') ? 'websockets' : names.includes('tcp') ? 'tcp' : names.at(-1)
  return {
    peer: connection.remotePeer.toString(),
    remoteAddr: connection.remoteAddr.toString(),
    direction: connection.direction,
    status: connection.status,
    limited: connection.limits != null,
    transport,
    ice: transport === 'webrtc' ? iceInfo(connection) : undefined
  }
}

let node
try {
  node = await createNode(config)
} catch (err) {
  emit('error', { error: `${err.name}: ${err.message}` })
  process.exit(1)
}
const self = node.peerId.toString()
const circuitSuffix = `/p2p-circuit/p2p/${self}`
const circuits = () => node.multiaddrs.map(a => a.toString()).filter(a => a.endsWith(circuitSuffix))

emit('ready', { peerId: self, multiaddrs: node.multiaddrs.map(a => a.toString()) })

node.libp2p.addEventListener('self:peer:update', () => {
  emit('addrs', { multiaddrs: node.multiaddrs.map(a => a.toString()), circuits: circuits().length })
})

// the peer-record service has no event; watch when it last published
let lastPublished
const publishWatch = setInterval(() => {
  const at = node.libp2p.services.peerRecords.lastPublished
  if (at != null && at !== lastPublished) {
    lastPublished = at
    emit('published', { at, circuits: circuits().length })
  }
}, 200)

node.addEventListener('message', (evt) => {
  const m = evt.detail
  emit('message', { id: m.id, from: m.from, seq: m.seq, body: m.body, path: m.path })
})

node.addEventListener('message:status', (evt) => {
  const { id, status, path, reason } = evt.detail
  emit('msg-status', { id, status, path, reason })
})

node.addEventListener('path:change', (evt) => {
  const { peer, path, transport, remoteAddr } = evt.detail
  const open = node.libp2p.getConnections().filter(c => c.remotePeer.toString() === peer && c.status === 'open')
  emit('path', { peer, path, transport, remoteAddr, connections: open.map(connectionInfo) })
})

async function handle (cmd) {
  switch (cmd.op) {
    case 'send': {
      const started = Date.now()
      try {
        const receipt = await node.send(cmd.to, cmd.body, cmd.timeout == null ? {} : { timeout: cmd.timeout })
        emit('sent', { ref: cmd.ref, id: receipt.id, path: receipt.path, status: receipt.status, started })
      } catch (err) {
        emit('send-failed', { ref: cmd.ref, error: `${err.name}: ${err.message}`, started })
      }
      break
    }
    case 'status':
      emit('status', {
        ref: cmd.ref,
        peerId: self,
        pathTo: cmd.peer == null ? undefined : node.pathTo(cmd.peer) ?? null,
        reservations: node.libp2p.services.reservations?.status?.(),
        multiaddrs: node.multiaddrs.map(a => a.toString()),
        circuits: circuits().length,
        lastPublished: node.libp2p.services.peerRecords.lastPublished,
        connections: node.libp2p.getConnections().map(connectionInfo)
      })
      break
    case 'stop':
      await shutdown()
      break
    default:
      emit('error', { ref: cmd.ref, error: `unknown op ${String(cmd.op)}` })
  }
}

let stopping = false
async function shutdown () {
  if (stopping) return
  stopping = true
  clearInterval(publishWatch)
  try {
    await node.stop()
  } finally {
    emit('stopped')
    process.exit(0)
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === '') return
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch {
    emit('error', { error: `not JSON: ${line}` })
    return
  }
  handle(cmd).catch(err => emit('error', { ref: cmd.ref, error: `${err.name}: ${err.message}` }))
}).on('close', () => { shutdown().catch(() => process.exit(1)) })

process.on('SIGTERM', () => { shutdown().catch(() => process.exit(1)) })
process.on('SIGINT', () => { shutdown().catch(() => process.exit(1)) })
