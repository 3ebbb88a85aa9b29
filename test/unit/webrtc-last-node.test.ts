import { TypedEventEmitter } from 'main-event'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { Libp2pEvents } from '@libp2p/interface'

const cleanup = vi.fn()
vi.mock('node-datachannel', async (importOriginal) => ({ ...await importOriginal<typeof import('node-datachannel')>(), cleanup }))

/** A stand-in for a libp2p node: only its start and stop events. */
function fakeNode (): { node: TypedEventEmitter<Libp2pEvents>, start: () => void, stop: () => void } {
  const node = new TypedEventEmitter<Libp2pEvents>()
  return {
    node,
    start: () => { node.safeDispatchEvent('start', { detail: node as any }) },
    stop: () => { node.safeDispatchEvent('stop', { detail: node as any }) }
  }
}

/** Two fake nodes, each watched by a fresh copy of the guard module (its count starts at 0). */
async function twoWatchedNodes (): Promise<Array<ReturnType<typeof fakeNode>>> {
  const { endWebRTCWithLastNode } = await import('../../node/network/webrtc-leak-guard.js')
  const nodes = [fakeNode(), fakeNode()]
  for (const { node } of nodes) endWebRTCWithLastNode(node)
  return nodes
}

describe('endWebRTCWithLastNode', () => {
  beforeEach(() => {
    vi.resetModules()
    cleanup.mockClear()
  })

  it("ends node-datachannel's threads when the last started node stops, not before", async () => {
    const [a, b] = await twoWatchedNodes()
    a.start()
    b.start()
    a.stop()
    expect(cleanup).not.toHaveBeenCalled()
    b.stop()
    expect(cleanup).toHaveBeenCalledTimes(1)
    // started again later: counted again, and ended again with it
    a.start()
    a.stop()
    expect(cleanup).toHaveBeenCalledTimes(2)
  })

  it('does not count a node twice, nor a stop without a start (a start that failed)', async () => {
    const [a, failed] = await twoWatchedNodes()
    a.start()
    a.start()
    failed.stop()
    expect(cleanup).not.toHaveBeenCalled()
    a.stop()
    a.stop()
    expect(cleanup).toHaveBeenCalledTimes(1)
  })
})
