import { describe, expect, it } from 'vitest'
import { ApiError, DaemonNotRunningError } from '../../cli/client.js'
import { liveEvents } from '../../cli/live-events.js'
import type { EventSource, LiveEvent } from '../../cli/live-events.js'
import type { ApiEvent } from '../../daemon/api/contract.js'

const FAST = { first: 1, max: 1, jitter: 'none' } as const

/** A stub client whose stream yields `events`, then fails with `end` (or waits for the abort when `end` is 'hold'). */
function stream (name: string, events: ApiEvent[], end: Error | 'hold' | 'close'): EventSource & { name: string } {
  return {
    name,
    async * events (signal?: AbortSignal) {
      yield * events
      if (end === 'close') return
      if (end === 'hold') {
        if (signal?.aborted !== true) await new Promise(resolve => signal?.addEventListener('abort', resolve))
        return
      }
      throw end
    }
  }
}

const ready = (peerId: string): ApiEvent => ({ event: 'ready', data: { peerId } })
const note = (message: string): ApiEvent => ({ event: 'overflow', data: { message, backlog: 0 } })
const gone = (): Error => new DaemonNotRunningError('gone')

async function collect<C extends EventSource> (iterator: AsyncGenerator<LiveEvent<C>>, count: number, controller: AbortController): Promise<Array<LiveEvent<C>>> {
  const seen: Array<LiveEvent<C>> = []
  for await (const event of iterator) {
    seen.push(event)
    if (seen.length === count) controller.abort()
  }
  return seen
}

describe('the event stream across daemon restarts', () => {
  it('waits for a stopped daemon, says so once, and goes on with the new one', async () => {
    const controller = new AbortController()
    const first = stream('first', [ready('p'), note('one')], gone())
    const stale = stream('stale', [], new ApiError('unauthorized', 401, 'Unauthorized', undefined))
    const second = stream('second', [ready('p'), note('two')], 'hold')
    const attempts: Array<() => Promise<ReturnType<typeof stream>>> = [
      async () => { throw gone() },
      async () => stale,
      async () => second
    ]
    const seen = await collect(liveEvents('/data', { client: first, connect: async () => (attempts.shift() ?? (async () => { throw gone() }))(), signal: controller.signal, backoff: FAST }), 5, controller)
    expect(seen.map(e => e.event)).toEqual(['ready', 'overflow', 'disconnected', 'reconnected', 'overflow'])
    expect(seen[2]).toEqual({ event: 'disconnected', data: { message: 'daemon stopped; waiting for it to come back…' } })
    expect(seen[3]).toMatchObject({ event: 'reconnected', data: { peerId: 'p' }, client: { name: 'second' } })
    expect(attempts).toEqual([])
  })

  it('takes a stream that ended again at once, without saying the daemon stopped', async () => {
    const controller = new AbortController()
    const first = stream('first', [ready('p'), note('dropped')], 'close')
    const seen = await collect(liveEvents('/data', { client: first, connect: async () => stream('again', [ready('p')], 'hold'), signal: controller.signal, backoff: FAST }), 3, controller)
    expect(seen.map(e => e.event)).toEqual(['ready', 'overflow', 'reconnected'])
  })

  it('fails at once when there is no daemon to begin with, and on errors that are not a stopped daemon', async () => {
    const never = async (): Promise<EventSource> => { throw new Error('not asked') }
    await expect(collect(liveEvents('/data', { client: stream('x', [], gone()), connect: never, signal: new AbortController().signal }), 1, new AbortController())).rejects.toThrow(DaemonNotRunningError)
    const broken = stream('broken', [ready('p')], new ApiError('boom', 500, 'Error', undefined))
    await expect(collect(liveEvents('/data', { client: broken, connect: never, signal: new AbortController().signal }), 9, new AbortController())).rejects.toThrow('boom')
  })
})
