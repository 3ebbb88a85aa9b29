/**
 * Inbound ordering: the receiver's ordering rules of /im
 * (protocols/im/README.md, section 6) as pure functions, in the spirit of
 * js-waku's `@waku/sds`. Nothing here reads a clock or touches SQL: times come
 * in as arguments, and what is held or refused is reached through a small
 * lookup, so that the rules can be tested on their own and the store keeps its
 * queries (a hostile peer can make thousands of messages wait: they stay on
 * disk, never all in memory).
 *
 * The rules, per conversation (one sender):
 * - seqs are presented in order: `next` is the seq presented next;
 * - a later seq is held while an earlier one is missing, and a gap opens
 *   (`gapSince`: when the first message began to wait);
 * - a refused message (TOO_LARGE, INVALID, BLOCKED) still fills its seq;
 * - a seq below `next` (it arrived after its gap was given up) is shown at
 *   once: nothing is ever dropped;
 * - a gap still open `gapTimeout` after it opened is given up: what is held
 *   is presented in seq order, a page at a time, and the conversation goes on
 *   after it.
 *
 * Between arrivals, `next` is neither held nor refused: every step that moves
 * `next` walks on past what is held or refused there. (A gap being given up a
 * page at a time is the exception, and its next page moves it on.) So a later
 * seq that arrives while its gap is open lets nothing through, and costs no
 * lookup: the one path a flood of held messages takes stays as cheap as the
 * path of a message in order.
 */

/** Seqs ahead of the next expected one that a refused message may fill; beyond, it is not recorded (the gap is given up in time). */
export const REFUSED_SEQ_WINDOW = 1024

/** Where a conversation's inbound side stands. */
export interface InboundOrder {
  /** The seq presented next. */
  next: number
  /** When a held message began to wait for a missing seq; undefined while no gap is open. */
  gapSince?: number
}

/**
 * A conversation's held messages and refused seqs, as the store keeps them.
 * The `take…` methods move what they return out of the held (or refused) set:
 * the ordering rules call them only for what is presented (or filled) now.
 */
export interface OrderLookup<T> {
  /** How many messages are held, counted up to `atMost` (the count stays cheap however many wait). */
  heldCount: (atMost: number) => number
  /** Takes the messages held at `seq`, to be presented: one, as a rule; several when a peer sent a seq twice under new ids. */
  takeHeld: (seq: number) => T[]
  /** Whether any message is still held. */
  anyHeld: () => boolean
  /** Takes the mark of a refused message at `seq`; whether there was one. */
  takeRefused: (seq: number) => boolean
}

/** Where `advance` starts walking the conversation. */
export interface AdvanceStart {
  /** The first seq to look at. */
  from: number
  /** Whether anything may be held: false when no gap was open and nothing new was held, so there is nothing to look up. */
  mayHold: boolean
}

/** What to do with a message that arrives (not a duplicate: (sender, id) pairs are the store's business). */
export type Arrival =
  /** Shown now; with `advance`, the conversation then moves on (held messages may follow), without it, it stays where it is. */
  | { action: 'present', advance?: AdvanceStart }
  /** Held: an earlier seq is missing. `advance`, when no gap was open, opens it; with a gap open nothing moves. */
  | { action: 'hold', advance?: AdvanceStart }
  /** Not stored: it would be held, and its sender already has `maxHeld` held (the sender retries later). */
  | { action: 'held-full' }

/** A seq that takes part in the ordering: 1 to 2^53 - 1 (the wire's limits). */
export function isOrderedSeq (seq: number): boolean {
  return Number.isSafeInteger(seq) && seq >= 1
}

/**
 * Decides what becomes of a message arriving at `seq`. `heldCount` is looked
 * up only when the message would be held and `maxHeld` is finite.
 */
export function arrival (order: InboundOrder, seq: number, maxHeld: number, lookup: Pick<OrderLookup<unknown>, 'heldCount'>): Arrival {
  // below next: its gap was given up (or a refused copy filled its seq), and
  // it turned up after all: shown at once, never dropped
  if (seq < order.next) return { action: 'present' }
  if (seq === order.next) return { action: 'present', advance: { from: seq + 1, mayHold: order.gapSince != null } }
  if (Number.isFinite(maxHeld) && lookup.heldCount(maxHeld) >= maxHeld) return { action: 'held-full' }
  // with the gap open, nothing waits at `next` (see above): nothing to walk
  if (order.gapSince != null) return { action: 'hold' }
  return { action: 'hold', advance: { from: order.next, mayHold: true } }
}

/**
 * Decides whether a refused message's seq is recorded to fill its place:
 * only from `next` on, within REFUSED_SEQ_WINDOW (a peer could otherwise grow
 * the record without end; a gap further ahead is given up after the timeout
 * like any other). Undefined: not recorded.
 */
export function refusal (order: InboundOrder, seq: number): AdvanceStart | undefined {
  if (seq < order.next || seq >= order.next + REFUSED_SEQ_WINDOW) return undefined
  return { from: order.next, mayHold: order.gapSince != null }
}

/** What `advance` presented and where the conversation then stands. */
export interface Advance<T> {
  /** Taken out of the held set, in seq order. */
  presented: T[]
  order: InboundOrder
}

/**
 * Walks the conversation from `start.from` while each seq is held (presented)
 * or refused (filled), and says where it then stands: the gap stays open
 * (since when it first opened, or from `now`) while anything is still held,
 * and closes otherwise.
 */
export function advance<T> (order: InboundOrder, start: AdvanceStart, now: number, lookup: Omit<OrderLookup<T>, 'heldCount'>): Advance<T> {
  let next = start.from
  const presented: T[] = []
  for (;;) {
    const held = start.mayHold ? lookup.takeHeld(next) : []
    if (held.length > 0) {
      presented.push(...held)
      next++
      continue
    }
    if (lookup.takeRefused(next)) {
      next++
      continue
    }
    break
  }
  const stillHeld = start.mayHold && lookup.anyHeld()
  return { presented, order: { next, gapSince: stillHeld ? order.gapSince ?? now : undefined } }
}

/** The latest `gapSince` of a gap that has expired at `now`. */
export function gapCutoff (now: number, gapTimeout: number): number {
  return now - gapTimeout
}

/** How long until a gap opened at `gapSince` expires (0: it has). */
export function untilGapExpires (gapSince: number, gapTimeout: number, now: number): number {
  return Math.max(0, gapSince + gapTimeout - now)
}

/** One conversation's part of a gap release. */
export interface GapRelease<T> {
  peer: string
  /** Presented now, in seq order. */
  presented: T[]
  /** Where the conversation stands after. */
  order: InboundOrder
  /** Whether the gap is closed: everything held was presented. */
  closed: boolean
  /** Refused marks at or below this seq are forgotten (Infinity: all of them). */
  forgetRefusedThrough: number
}

/**
 * Gives up one expired gap, presenting at most `room` held messages. `held`:
 * the conversation's held messages in seq order, read with a limit of
 * `room + 1` (one more than fits tells whether any are left). When all fit,
 * the gap closes; otherwise it stays open (already expired), moved past what
 * was presented, for the next page.
 */
export function releasePage<T extends { seq: number }> (peer: string, order: InboundOrder, held: readonly T[], room: number): GapRelease<T> {
  const all = held.length <= room
  const presented = all ? [...held] : held.slice(0, room)
  const last = presented.at(-1)?.seq ?? 0
  const next = Math.max(order.next, last + 1)
  return all
    ? { peer, presented, order: { next }, closed: true, forgetRefusedThrough: Infinity }
    : { peer, presented, order: { next, gapSince: order.gapSince }, closed: false, forgetRefusedThrough: last }
}

/**
 * Gives up expired gaps (oldest first), at most `limit` messages in all: the
 * held messages are read into memory to be shown, so a flood of them goes a
 * page at a time. `heldOf(peer, atMost)` reads a conversation's held messages
 * in seq order; it is called only while there is room. `more`: something is
 * left for the next call.
 */
export function releaseExpired<T extends { seq: number }> (
  expired: Iterable<{ peer: string, order: InboundOrder }>,
  limit: number,
  heldOf: (peer: string, atMost: number) => readonly T[]
): { releases: Array<GapRelease<T>>, more: boolean } {
  const releases: Array<GapRelease<T>> = []
  let presented = 0
  for (const { peer, order } of expired) {
    const room = limit - presented
    if (room <= 0) return { releases, more: true }
    const release = releasePage(peer, order, heldOf(peer, room + 1), room)
    releases.push(release)
    presented += release.presented.length
    if (!release.closed) return { releases, more: true }
  }
  return { releases, more: false }
}
