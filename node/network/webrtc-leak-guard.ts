/**
 * Guard against js-libp2p #3567: the WebRTC transport adds one `abort`
 * listener per connection to a signal that lives as long as the transport, and
 * removes it on the RTCPeerConnection's `close` event, which node-datachannel's
 * RTCPeerConnection never emits. Every WebRTC connection a long-running node
 * ever had would stay in memory. Making `close()` emit `close` (once) lets the
 * transport remove its listener. Applied once per process, before any node
 * starts; harmless once the upstream fix lands (the event then simply fires).
 */
import { RTCPeerConnection } from 'node-datachannel/polyfill'

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
