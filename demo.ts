/**
 * `npm run demo`: a relay and two nodes on this machine, and a conversation
 * between them as the users would see it. The nodes listen on nothing but a
 * relay circuit and WebRTC, like two laptops behind NAT: the first message goes
 * over the relay, then the path is upgraded to a direct WebRTC connection.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createNode, createRelay } from './index.js'
import type { ParleyNode } from './index.js'

const short = (id: string): string => `…${id.slice(-6)}`
const say = (line: string): void => { console.log(line) }
/** How long the demo waits for the direct path before it goes on relayed (WebRTC may not connect on every machine), in ms; a test sets it. */
const DIRECT_WITHIN = Number(process.env.PARLEY_DEMO_DIRECT_WITHIN ?? 30_000)

/** Resolves once `done()` holds, checked now and after each of `events` on `target`; false if `timeout` ms pass first. */
async function until (done: () => boolean, target: EventTarget, events: string[], timeout = Infinity): Promise<boolean> {
  const deadline = Date.now() + timeout
  while (!done()) {
    const left = deadline - Date.now()
    if (left <= 0) return false
    const listening = new AbortController()
    await new Promise<void>(resolve => {
      for (const event of events) target.addEventListener(event, () => { resolve() }, { once: true, signal: listening.signal })
      if (Number.isFinite(left)) setTimeout(resolve, left).unref()
    })
    listening.abort()
  }
  return true
}

async function message (from: ParleyNode, fromName: string, to: ParleyNode, toName: string, text: string): Promise<void> {
  const shown = new Promise<void>(resolve => {
    const onMessage = (evt: CustomEvent<{ body: string, path: string }>): void => {
      if (evt.detail.body !== text) return
      to.removeEventListener('message', onMessage)
      say(`   ${toName}'s screen:  ${fromName}: ${text}   (${evt.detail.path})`)
      resolve()
    }
    to.addEventListener('message', onMessage)
  })
  say(`${fromName} > ${text}`)
  const receipt = await from.send(to.peerId, text)
  say(`   ${fromName}'s screen: ✓ delivered (${receipt.path})`)
  await shown
}

const dir = await mkdtemp(join(tmpdir(), 'parley-demo-'))
const relay = await createRelay({ listen: ['/ip4/127.0.0.1/tcp/0'], dataDir: join(dir, 'relay'), metrics: false })
say(`relay  ${relay.peerId.toString()} on ${relay.multiaddrs[0].toString()}`)
// everything on this machine: WebRTC on 127.0.0.1 too (ICE offers every interface by default)
const nodes = { listen: ['/webrtc'], relays: relay.multiaddrs, iceBindAddress: '127.0.0.1' }
const alice = await createNode({ ...nodes, dataDir: join(dir, 'alice') })
const bob = await createNode({ ...nodes, dataDir: join(dir, 'bob') })
say(`alice  ${alice.peerId.toString()}`)
say(`bob    ${bob.peerId.toString()}`)
say('(both reachable only through the relay, as if behind NAT)\n')

alice.addEventListener('path:change', (evt) => {
  if (evt.detail.peer === bob.peerId.toString() && evt.detail.path != null) {
    say(`-- alice ↔ bob: path now ${evt.detail.path} (${evt.detail.transport ?? '?'})`)
  }
})

try {
  // wait for both reservations so that each can be reached: the circuit
  // address comes with transport:listening (self:peer:update follows, debounced)
  await Promise.all([alice, bob].map(async node => until(() => node.multiaddrs.some(a => a.toString().includes('/p2p-circuit')), node.libp2p, ['transport:listening', 'self:peer:update'])))
  await alice.libp2p.peerStore.merge(bob.peerId, { multiaddrs: bob.multiaddrs })

  await message(alice, 'alice', bob, 'bob', 'Hi Bob! Are you there?')
  const direct = await until(() => alice.pathTo(bob.peerId) === 'direct', alice, ['path:change'], DIRECT_WITHIN)
  if (direct) {
    await message(bob, 'bob', alice, 'alice', 'Hey Alice, yes, and now we talk directly.')
    await message(alice, 'alice', bob, 'bob', 'No relay in between any more 🎉')
  } else {
    say(`-- no direct path within ${DIRECT_WITHIN / 1000} s (WebRTC could not connect here): the conversation stays relayed`)
    await message(bob, 'bob', alice, 'alice', 'Hey Alice, yes, still through the relay.')
  }
  say(`\nbob's history with ${short(alice.peerId.toString())}:`)
  for (const m of bob.history(alice.peerId)) say(`  ${m.direction === 'in' ? 'alice' : 'bob  '}: ${m.body}  [${m.status}, ${m.path ?? '?'}]`)
} finally {
  await Promise.all([alice.stop(), bob.stop()])
  await relay.stop()
  await rm(dir, { recursive: true, force: true })
  say('\nstopped the relay and both nodes')
}
