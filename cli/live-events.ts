/**
 * The daemon's event stream for `watch` and `chat`, kept up across a daemon
 * restart: when the stream drops, `<data dir>/api.json` is read again (a
 * restarted daemon has a new port and token and rewrites it) and the stream
 * taken again, with back-off, for as long as the caller wants.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { backoff } from '../common/backoff.js'
import { ApiError, DaemonNotRunningError } from './client.js'
import type { ApiClient } from './client.js'
import type { ApiEvent } from '../daemon/api/contract.js'
import type { BackoffInit } from '../common/backoff.js'

/** Retries of a stopped daemon: soon at first (a restart takes a second or two), then every few seconds. */
export const RECONNECT_BACKOFF: BackoffInit = { first: 250, max: 5_000, jitter: 'equal' }

/** What liveEvents needs of a client: its event stream (ApiClient, or a stub). */
export type EventSource = Pick<ApiClient, 'events'>

/** What the stream says about itself, besides the daemon's events. */
export type ConnectionEvent<C extends EventSource = ApiClient> =
  /** The stream dropped and the daemon cannot be reached; once per outage. */
  | { event: 'disconnected', data: { message: string } }
  /** A new stream is live (instead of a second `ready`); `client` talks to the daemon now running. */
  | { event: 'reconnected', data: { peerId: string }, client: C }

export type LiveEvent<C extends EventSource = ApiClient> = ApiEvent | ConnectionEvent<C>

export interface LiveEventsInit<C extends EventSource> {
  signal: AbortSignal
  /** The first client; the first stream is taken with it, without retries (no daemon at all is an error). */
  client: C
  /** A client for the daemon now running: api.json read again. */
  connect: (dataDir: string) => Promise<C>
  backoff?: BackoffInit
  /** For tests. */
  random?: () => number
}

/** A daemon that stopped or restarted, as opposed to a real error (a bug, a refused request). */
function isDaemonGone (err: unknown): boolean {
  // a 401 is a token from before a restart that was not yet replaced in api.json
  return err instanceof DaemonNotRunningError || (err instanceof ApiError && err.status === 401)
}

/**
 * The events of the daemon for `dataDir`, until `signal` aborts or the caller
 * stops iterating. A stream that ends (the daemon stopped, or dropped a
 * reader that fell behind) is taken again; while it cannot be, one
 * `disconnected` is yielded, and `reconnected` when it is back.
 */
export async function * liveEvents<C extends EventSource> (dataDir: string, init: LiveEventsInit<C>): AsyncGenerator<LiveEvent<C>> {
  const { signal, connect } = init
  let client: C | undefined = init.client
  // a stream has been live once: from then on, a daemon that is gone is waited for
  let connected = false
  let failures = 0
  let told = false
  while (!signal.aborted) {
    let live = false
    try {
      client ??= await connect(dataDir)
      for await (const event of client.events(signal)) {
        if (event.event === 'ready') {
          live = true
          failures = 0
          if (connected) {
            told = false
            yield { event: 'reconnected', data: event.data, client }
            continue
          }
          connected = true
        }
        yield event
      }
    } catch (err) {
      if (!connected || !isDaemonGone(err)) throw err
    }
    if (signal.aborted) return
    // the stream ended; a live one is taken again at once (the daemon drops a
    // reader that fell behind), a failed attempt after a back-off
    client = undefined
    if (!live) {
      failures++
      if (!told) {
        told = true
        yield { event: 'disconnected', data: { message: 'daemon stopped; waiting for it to come back…' } }
      }
      try {
        await sleep(backoff(failures, init.backoff ?? RECONNECT_BACKOFF, init.random), undefined, { signal })
      } catch {
        return
      }
    }
  }
}
