import { utf8Length } from '../protocols/im/index.js'
import type { Inbox } from './inbox/inbox.js'
import type { ReceiveResult } from './store/index.js'
import type { PolicyLimits, Policy } from './policy.js'
import type { StorageMonitor } from './storage-monitor.js'
import type { Admission, ImInit, InboundMessage, Refusal, StoreResult } from '../protocols/im/index.js'
import type { PeerId } from '@libp2p/interface'

export interface ReceptionComponents {
  policy: Pick<Policy, 'admit' | 'check' | 'settle' | 'isBlocked'>
  inbox: Pick<Inbox, 'receive' | 'refused'>
  storage: Pick<StorageMonitor, 'stored'>
}

/**
 * What the node answers a peer's /im messages: the policy admits or refuses
 * the peer, the inbox stores what it lets in (a stranger's message as a
 * request, up to its quota), and the rest is answered RATE_LIMITED or BLOCKED.
 * Its three methods are the /im service's callbacks.
 */
export class Reception implements Required<Pick<ImInit, 'admit' | 'store' | 'onRefused'>> {
  constructor (
    private readonly components: ReceptionComponents,
    private readonly limits: Pick<PolicyLimits, 'retryAfterMs' | 'maxHeldPerPeer'>
  ) {}

  admit = (peer: PeerId): Admission => {
    const verdict = this.components.policy.admit(peer.toString())
    if (verdict == null) return { status: 'accept' }
    return verdict.status === 'rate-limit' ? { status: 'rate-limit', retryAfterMs: verdict.retryAfterMs } : { status: 'block' }
  }

  /** Answers at once when the inbox stores at once (a message alone, or a store in memory), later when it commits in a batch. */
  store = (message: InboundMessage): StoreResult | Promise<StoreResult> => {
    const { policy, inbox } = this.components
    const peer = message.from.toString()
    const bytes = utf8Length(message.body)
    const verdict = policy.check(peer, bytes)
    if (verdict.status !== 'accept') {
      // blocked since admission: it waits like a rate-limited one, and is answered BLOCKED next time
      return { status: 'rate-limited', retryAfterMs: verdict.status === 'rate-limit' ? verdict.retryAfterMs : this.limits.retryAfterMs }
    }
    let received: ReceiveResult['result'] | Promise<ReceiveResult['result']>
    try {
      received = inbox.receive(message, { request: verdict.request, maxHeld: this.limits.maxHeldPerPeer })
    } catch (err) {
      policy.settle(peer, bytes, verdict.request, false)
      throw err
    }
    if (!(received instanceof Promise)) return this.settled(peer, bytes, verdict.request, received)
    return received.then(result => this.settled(peer, bytes, verdict.request, result), (err: any) => {
      policy.settle(peer, bytes, verdict.request, false)
      throw err
    })
  }

  private settled (peer: string, bytes: number, request: boolean, result: ReceiveResult['result']): StoreResult {
    this.components.policy.settle(peer, bytes, request, result === 'stored')
    if (result === 'stored') this.components.storage.stored(bytes)
    // too many held for an earlier seq: the missing one must still get through, so the peer is not told to wait as a whole
    if (result === 'held-full') return { status: 'rate-limited', retryAfterMs: this.limits.retryAfterMs }
    return result
  }

  onRefused = (refusal: Refusal): void => {
    // a blocked peer's messages are not even recorded as filling their seq
    if (this.components.policy.isBlocked(refusal.from.toString())) return
    this.components.inbox.refused(refusal)
  }
}
