/**
 * The node's state: who it is, whether others can reach it and how, its
 * relays and their reservations, its mailboxes, and the peers connected now
 * with the path to each.
 */
import { useSignal } from '@preact/signals'
import { useEffect } from 'preact/hooks'
import type { NodeStatus, PeerInfo } from '../../node/types.js'
import { call } from '../api.js'
import { listen, nameOf } from '../state.js'

export function Status () {
  const status = useSignal<NodeStatus | null>(null)
  const peers = useSignal<PeerInfo[]>([])
  const error = useSignal('')
  const load = async (): Promise<void> => {
    const [s, p] = await Promise.all([call('GET /v1/status'), call('GET /v1/peers')])
    status.value = s
    peers.value = p
  }
  useEffect(() => {
    load().catch(err => { error.value = (err as Error).message })
    const again = (): void => { load().catch(() => {}) }
    return listen({ path: again, reachability: again })
  }, [])
  const s = status.value
  return (
    <section class='page status' aria-labelledby='status-title'>
      <h2 id='status-title'>Status</h2>
      <p><button type='button' onClick={() => { load().catch(err => { error.value = (err as Error).message }) }}>Refresh</button></p>
      {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
      {s != null && (
        <>
          <dl>
            <dt>Peer ID</dt><dd class='mono'>{s.peerId}</dd>
            <dt>Reachable from outside</dt>
            <dd>{s.reachability.reachable ? `yes, ${s.reachability.via}${s.reachability.relay != null ? ` (${s.reachability.relay})` : ''}${s.reachability.address != null ? ` (${s.reachability.address})` : ''}` : 'no: LAN only'}
              {s.reachability.reasons.length > 0 && <ul>{s.reachability.reasons.map(r => <li key={r}>{r}</li>)}</ul>}
            </dd>
            <dt>Connections</dt><dd>{s.connections} (DHT peers: {s.dhtPeers})</dd>
            <dt>Outbox</dt><dd>{s.outbox} waiting</dd>
            <dt>Storage</dt><dd>{(s.storage.usedBytes / 1e6).toFixed(1)} of {(s.storage.limitBytes / 1e6).toFixed(0)} MB{s.storage.full ? ' — full' : ''}</dd>
            <dt>Message requests</dt><dd>{s.requests} (blocked: {s.blocked})</dd>
          </dl>
          <h3>Relays</h3>
          {s.relays.length === 0
            ? <p>No relay configured.</p>
            : (
              <table>
                <thead><tr><th scope='col'>Relay</th><th scope='col'>Reservation</th></tr></thead>
                <tbody>{s.relays.map(r => <tr key={r.relay}><td class='mono'>{r.relay}</td><td>{r.reserved ? 'reserved' : `not reserved (${r.failures} failed attempts)`}</td></tr>)}</tbody>
              </table>
              )}
          <h3>Mailboxes</h3>
          {s.mailboxes.length === 0
            ? <p>No mailbox host.</p>
            : (
              <table>
                <thead><tr><th scope='col'>Host</th><th scope='col'>Session</th><th scope='col'>Received</th></tr></thead>
                <tbody>{s.mailboxes.map(m => <tr key={m.host}><td class='mono'>{m.host}</td><td>{m.connected ? 'open' : `closed${m.lastError != null ? `: ${m.lastError}` : ''}`}</td><td>{m.received}</td></tr>)}</tbody>
              </table>
              )}
          <h3>Addresses</h3>
          <ul class='mono'>{s.addrs.map(a => <li key={a}>{a}</li>)}</ul>
        </>
      )}
      <h3>Connected peers</h3>
      {peers.value.length === 0
        ? <p>None.</p>
        : (
          <table>
            <thead><tr><th scope='col'>Peer</th><th scope='col'>Path</th><th scope='col'>Transport</th><th scope='col'>RTT</th></tr></thead>
            <tbody>{peers.value.map(p => (
              <tr key={p.peerId + p.remoteAddr}>
                <td>{p.relay === true ? 'relay ' : ''}{nameOf(p.peerId)}</td><td>{p.path}</td><td>{p.transport}</td><td>{p.rtt != null ? `${Math.round(p.rtt)} ms` : '—'}</td>
              </tr>
            ))}
            </tbody>
          </table>
          )}
    </section>
  )
}
