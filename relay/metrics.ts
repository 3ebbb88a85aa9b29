import { Counter, Gauge, Registry } from 'prom-client'
import type { RelayLimits } from './config.js'
import type { MailboxLimits } from './mailbox/limits.js'
import type { MailboxObserver, MailboxRequestKind } from './mailbox/service.js'
import type { MailboxTotals } from './mailbox/store.js'

/** Why a relay request was refused (label `reason` of `parley_relay_refusals_total`). */
export type RefusalReason =
  // parley's own limits
  | 'max_reservations'
  | 'max_reservations_per_peer'
  | 'max_reservations_per_ip'
  | 'max_reservations_per_subnet'
  | 'max_circuits'
  | 'max_circuits_per_peer'
  | 'max_circuits_per_ip'
  | 'max_circuits_per_subnet'
  | 'shutting_down'
  // answers js-libp2p's relay server gives by itself
  | 'permission_denied'
  | 'no_reservation'
  | 'connection_failed'
  | 'resource_limit'
  | 'malformed'
  | 'unexpected_message'
  | 'error'

/** Why a circuit ended (label `reason` of `parley_relay_circuits_closed_total`). */
export type CircuitEnd = 'closed' | 'reset' | 'data_limit' | 'duration_limit' | 'reservation_ended' | 'shutdown' | 'error'

export type HopRequestKind = 'reserve' | 'connect'

/** Why an inbound connection was refused (label `reason` of `parley_relay_connections_refused_total`). */
export type ConnectionRefusal =
  | 'max_connections_per_ip'
  | 'max_connections_per_subnet'
  | 'connection_rate'
  // js-libp2p's connection manager, before parley's checks
  | 'max_connections'
  | 'max_pending_connections'

export const CONNECTION_REFUSALS: ConnectionRefusal[] = ['max_connections_per_ip', 'max_connections_per_subnet', 'connection_rate', 'max_connections', 'max_pending_connections']

/** Every refusal parley itself makes, with the relay-v2 status it answers. */
export const OWN_REFUSALS: Array<{ request: HopRequestKind, reason: RefusalReason, status: string }> = [
  { request: 'reserve', reason: 'max_reservations', status: 'RESERVATION_REFUSED' },
  { request: 'reserve', reason: 'max_reservations_per_peer', status: 'RESERVATION_REFUSED' },
  { request: 'reserve', reason: 'max_reservations_per_ip', status: 'RESERVATION_REFUSED' },
  { request: 'reserve', reason: 'max_reservations_per_subnet', status: 'RESERVATION_REFUSED' },
  { request: 'reserve', reason: 'shutting_down', status: 'RESERVATION_REFUSED' },
  { request: 'connect', reason: 'max_circuits', status: 'RESOURCE_LIMIT_EXCEEDED' },
  { request: 'connect', reason: 'max_circuits_per_peer', status: 'RESOURCE_LIMIT_EXCEEDED' },
  { request: 'connect', reason: 'max_circuits_per_ip', status: 'RESOURCE_LIMIT_EXCEEDED' },
  { request: 'connect', reason: 'max_circuits_per_subnet', status: 'RESOURCE_LIMIT_EXCEEDED' },
  { request: 'connect', reason: 'shutting_down', status: 'RESOURCE_LIMIT_EXCEEDED' }
]

/** What the gauges read when Prometheus scrapes. */
export interface RelayMetricSources {
  reservations(): number
  circuits(): number
  connections(): Array<{ direction: 'inbound' | 'outbound' }>
}

/**
 * parley's relay metrics, in a registry of their own (so several relays can
 * live in one process). With the metrics endpoint on, libp2p's own metrics
 * (`libp2p_*`, `nodejs_*`, `process_*`) are registered here too.
 */
export class RelayMetrics {
  readonly registry = new Registry()
  readonly refusals: Counter<'request' | 'reason' | 'status'>
  readonly connectionsRefused: Counter<'reason'>
  readonly reservationsGranted: Counter<'kind'>
  readonly circuitsOpened: Counter
  readonly circuitsClosed: Counter<'reason'>
  readonly relayedBytes: Counter
  readonly mailbox: MailboxMetrics
  private sources?: RelayMetricSources

  constructor (limits: Required<RelayLimits>) {
    const registers = [this.registry]
    const metrics = this

    this.refusals = new Counter({
      name: 'parley_relay_refusals_total',
      help: 'Relay requests refused, by request (reserve|connect), reason and the relay-v2 status answered',
      labelNames: ['request', 'reason', 'status'],
      registers
    })
    // a limit never hit still shows, at 0, so alerts and dashboards see every series
    for (const labels of OWN_REFUSALS) this.refusals.inc(labels, 0)

    this.connectionsRefused = new Counter({
      name: 'parley_relay_connections_refused_total',
      help: 'Inbound connections refused before any handshake, by reason: max_connections_per_ip, max_connections_per_subnet, connection_rate (per IP, IPv6 per /64), max_connections, max_pending_connections',
      labelNames: ['reason'],
      registers
    })
    for (const reason of CONNECTION_REFUSALS) this.connectionsRefused.inc({ reason }, 0)

    this.reservationsGranted = new Counter({
      name: 'parley_relay_reservations_granted_total',
      help: 'Reservations granted, new ones and renewals',
      labelNames: ['kind'],
      registers
    })
    this.reservationsGranted.inc({ kind: 'new' }, 0)
    this.reservationsGranted.inc({ kind: 'renewal' }, 0)

    this.circuitsOpened = new Counter({
      name: 'parley_relay_circuits_opened_total',
      help: 'Relayed connections (circuits) opened',
      registers
    })

    this.circuitsClosed = new Counter({
      name: 'parley_relay_circuits_closed_total',
      help: 'Circuits ended, by reason: closed (by the peers), reset (by a peer, or its connection went), data_limit, duration_limit, reservation_ended, shutdown, error',
      labelNames: ['reason'],
      registers
    })
    for (const reason of ['closed', 'reset', 'data_limit', 'duration_limit', 'reservation_ended', 'shutdown', 'error'] satisfies CircuitEnd[]) {
      this.circuitsClosed.inc({ reason }, 0)
    }

    this.relayedBytes = new Counter({
      name: 'parley_relay_relayed_bytes_total',
      help: 'Bytes carried over circuits, both directions',
      registers
    })

    new Gauge({ // eslint-disable-line no-new
      name: 'parley_relay_reservations',
      help: 'Reservations held now',
      registers,
      collect () { this.set(metrics.sources?.reservations() ?? 0) }
    })

    new Gauge({ // eslint-disable-line no-new
      name: 'parley_relay_circuits',
      help: 'Circuits open now',
      registers,
      collect () { this.set(metrics.sources?.circuits() ?? 0) }
    })

    new Gauge({ // eslint-disable-line no-new
      name: 'parley_relay_connections',
      help: 'Connections open now, by direction',
      labelNames: ['direction'],
      registers,
      collect () {
        const count = { inbound: 0, outbound: 0 }
        for (const conn of metrics.sources?.connections() ?? []) count[conn.direction]++
        this.set({ direction: 'inbound' }, count.inbound)
        this.set({ direction: 'outbound' }, count.outbound)
      }
    })

    // the configured limits next to the usage, so an alert can say "at 90% of maxReservations"
    const limit = new Gauge({
      name: 'parley_relay_limit',
      help: 'The limits this relay was started with',
      labelNames: ['limit'],
      registers
    })
    for (const [key, value] of Object.entries(limits)) limit.set({ limit: key }, value)

    this.mailbox = new MailboxMetrics(this.registry)
  }

  /** Connects the gauges to the running relay. */
  bind (sources: RelayMetricSources): void {
    this.sources = sources
  }

  /** Counts one refused request. */
  refused (request: HopRequestKind, reason: RefusalReason, status: string): void {
    this.refusals.inc({ request, reason, status })
  }

  /** Counts one refused inbound connection. */
  connectionRefused (reason: ConnectionRefusal): void {
    this.connectionsRefused.inc({ reason })
  }

  /** The current value of a counter or gauge with these labels (0 if never set): for tests and `stats()`. */
  async value (name: string, labels: Record<string, string> = {}): Promise<number> {
    const metric = this.registry.getSingleMetric(name)
    if (metric == null) return 0
    const { values } = await metric.get()
    return values
      .filter(v => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l))
      .reduce((sum, v) => sum + v.value, 0)
  }
}

/** The mailbox refusals counted from the start, at 0 until they happen. */
const MAILBOX_REFUSALS: Array<{ request: MailboxRequestKind, status: string }> = [
  ...['INVALID', 'TOO_LARGE', 'NO_SUCH_MAILBOX', 'QUOTA_EXCEEDED', 'RATE_LIMITED'].map(status => ({ request: 'deposit' as const, status })),
  { request: 'register', status: 'UNAVAILABLE' },
  { request: 'open', status: 'NO_SUCH_MAILBOX' },
  { request: 'open', status: 'UNAVAILABLE' },
  { request: 'delete', status: 'FORBIDDEN' }
]

/**
 * The mailbox host's figures (`parley_relay_mailbox*`): what it holds, and
 * deposits, refusals and expiries. Counts only: no label names a peer.
 */
export class MailboxMetrics implements MailboxObserver {
  readonly deposits: Counter
  readonly depositedBytes: Counter
  readonly refusals: Counter<'request' | 'status'>
  readonly expiries: Counter<'kind'>
  /** The configured limits, so an alert can say "a mailbox at 90% of maxBytesPerMailbox". */
  readonly limit: Gauge<'limit'>
  private held?: () => MailboxTotals

  constructor (registry: Registry) {
    const registers = [registry]
    const metrics = this
    this.deposits = new Counter({ name: 'parley_relay_mailbox_deposits_total', help: 'Envelopes deposited (stored)', registers })
    this.depositedBytes = new Counter({ name: 'parley_relay_mailbox_deposited_bytes_total', help: 'Bytes of the envelopes deposited', registers })
    this.refusals = new Counter({
      name: 'parley_relay_mailbox_refusals_total',
      help: 'Mailbox requests refused, by request (register|deposit|open|invalid) and the status answered',
      labelNames: ['request', 'status'],
      registers
    })
    for (const labels of MAILBOX_REFUSALS) this.refusals.inc(labels, 0)
    this.expiries = new Counter({
      name: 'parley_relay_mailbox_expired_total',
      help: 'What the sweep deleted because it expired: kind envelope (an envelope of a mailbox that expired counts too) or mailbox',
      labelNames: ['kind'],
      registers
    })
    this.expiries.inc({ kind: 'envelope' }, 0)
    this.expiries.inc({ kind: 'mailbox' }, 0)
    const gauge = (name: string, help: string, read: (held: MailboxTotals) => number): void => {
      new Gauge({ // eslint-disable-line no-new
        name,
        help,
        registers,
        collect () {
          const held = metrics.held?.()
          this.set(held == null ? 0 : read(held))
        }
      })
    }
    this.limit = new Gauge({
      name: 'parley_relay_mailbox_limit',
      help: 'The mailbox limits this relay was started with',
      labelNames: ['limit'],
      registers
    })
    gauge('parley_relay_mailboxes', 'Mailboxes registered now', held => held.mailboxes)
    gauge('parley_relay_mailbox_envelopes', 'Envelopes stored now, all mailboxes', held => held.envelopes)
    gauge('parley_relay_mailbox_bytes', 'Envelope bytes stored now, all mailboxes', held => held.bytes)
  }

  /** Connects the gauges to the mailbox store, and shows the limits it runs with. */
  bind (held: () => MailboxTotals, limits: MailboxLimits): void {
    this.held = held
    for (const [key, value] of Object.entries(limits)) {
      if (typeof value === 'number') this.limit.set({ limit: key }, value)
    }
  }

  deposited (size: number): void {
    this.deposits.inc()
    this.depositedBytes.inc(size)
  }

  refused (request: MailboxRequestKind, status: string): void {
    this.refusals.inc({ request, status })
  }

  expired (swept: { envelopes: number, mailboxes: number }): void {
    this.expiries.inc({ kind: 'envelope' }, swept.envelopes)
    this.expiries.inc({ kind: 'mailbox' }, swept.mailboxes)
  }
}
