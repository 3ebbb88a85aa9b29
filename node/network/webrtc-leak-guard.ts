/**
 * What WebRTC (node-datachannel) leaks in a process, and the guards against it.
 *
 * Guard against js-libp2p #3567: the WebRTC transport adds one `abort`
 * listener per connection to a signal that lives as long as the transport, and
 * removes it on the RTCPeerConnection's `close` event, which node-datachannel's
 * RTCPeerConnection never emits. Every WebRTC connection a long-running node
 * ever had would stay in memory. Making `close()` emit `close` (once) lets the
 * transport remove its listener. Applied once per process, before any node
 * starts; harmless once the upstream fix lands (the event then simply fires).
 */
import { cleanup } from 'node-datachannel'
import { RTCPeerConnection } from 'node-datachannel/polyfill'
import type { Libp2pEvents, TypedEventTarget } from '@libp2p/interface'

const PATCHED = Symbol.for('parley.webrtc-close-event')

export function guardWebRTCListenerLeak (): void {
  const proto = RTCPeerConnection.prototype as any
  if (proto[PATCHED] === true) return
  const close: () => void = proto.close
  const emitted = new WeakSet<object>()
  proto.close = function (this: RTCPeerConnection): void {
    close.call(this)
    if (emitted.has(this)) return
    emitted.add(this)
    this.dispatchEvent(new Event('close'))
  }
  proto[PATCHED] = true
}

/** This process's started nodes that may hold WebRTC connections. */
let running = 0

/**
 * Ends node-datachannel's threads once the last node of the process has
 * stopped. A peer connection that a stopping node leaves open keeps them
 * running, and they keep the process alive. That happens to one whose WebRTC
 * upgrade was under way when the node stopped: after the demo's last line, its
 * RTC and SCTP threads were still there a minute later. Only when no node is
 * left: `cleanup()` closes every connection of the process (which is why
 * js-libp2p no longer calls it when one transport closes, js-libp2p #2498).
 * A node started afterwards loads the library again.
 */
export function endWebRTCWithLastNode (libp2p: TypedEventTarget<Libp2pEvents>): void {
  let counted = false
  libp2p.addEventListener('start', () => {
    if (counted) return
    counted = true
    running++
  })
  // also sent when a start failed, without 'start' before it
  libp2p.addEventListener('stop', () => {
    if (!counted) return
    counted = false
    if (--running === 0) cleanup()
  })
}
