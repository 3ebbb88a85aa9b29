/**
 * A group's membership log (protocols/group/README.md section 4), pure: no
 * I/O, no clock, no crypto. It takes ops already verified on their own
 * (protocols/group/codec.ts: signature, bounds) and decides whether each fits
 * the log (parents known, Lamport time right, author allowed), and what the
 * membership is: every member replays the same ops in the same total order
 * (Lamport time, then hash), skipping those that are not allowed at their
 * place in it, so that all who hold the same ops agree.
 */
import { MAX_LOG_BYTES, MAX_MEMBERS, MAX_OPS } from '../../protocols/group/constants.js'
import type { VerifiedOp } from '../../protocols/group/codec.js'

/** A group's membership as its log says. */
export interface GroupState {
  id: string
  name: string
  creator: string
  members: Set<string>
  admins: Set<string>
  /** Ops with no child: what the next op or message names as its parents / heads. */
  heads: string[]
  /** The highest Lamport time of its ops. */
  lamport: number
}

/** Why an op does not go in the log. */
export type OpRefusal =
  | 'wrong-group'
  | 'missing-parents'
  | 'bad-lamport'
  | 'not-allowed'
  | 'log-full'

export class OpRefusedError extends Error {
  static override name = 'OpRefusedError'
  override name = 'OpRefusedError'
  constructor (readonly reason: OpRefusal, message: string) {
    super(message)
  }
}

/** Total order of the replay: Lamport time, then hash (hex, so string order is byte order). */
export function compareOps (a: Pick<VerifiedOp, 'lamport' | 'hash'>, b: Pick<VerifiedOp, 'lamport' | 'hash'>): number {
  return a.lamport - b.lamport || (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0)
}

/**
 * Whether `op`'s author may do it given `state` (the membership it is
 * replayed on), and whether it changes anything (an add of a member is
 * allowed and does nothing). Section 4.4.
 */
export function allowed (state: GroupState, op: VerifiedOp): boolean {
  const author = op.author
  switch (op.kind) {
    case 'create': return false
    case 'leave': return state.members.has(author)
    case 'rename': return state.admins.has(author)
    case 'add': return state.admins.has(author) && (state.members.has(op.target as string) || state.members.size < MAX_MEMBERS)
    case 'remove': return state.admins.has(author) && op.target !== author && state.members.has(op.target as string)
    case 'add-admin': return state.admins.has(author) && state.members.has(op.target as string)
    case 'remove-admin': return state.admins.has(author) && op.target !== author && state.admins.has(op.target as string)
  }
}

/** Applies an allowed op to `state` (in place). */
function apply (state: GroupState, op: VerifiedOp): void {
  const target = op.target as string
  switch (op.kind) {
    case 'leave': state.members.delete(op.author); state.admins.delete(op.author); break
    case 'rename': state.name = op.name as string; break
    case 'add': state.members.add(target); break
    case 'remove': state.members.delete(target); state.admins.delete(target); break
    case 'add-admin': state.admins.add(target); break
    case 'remove-admin': state.admins.delete(target); break
    case 'create': break
  }
}

/** The membership after replaying `ops` (a create and some of its descendants, any order) in the total order. */
export function replay (ops: Iterable<VerifiedOp>): GroupState {
  const sorted = [...ops].sort(compareOps)
  const create = sorted[0]
  if (create?.kind !== 'create') throw new Error('a log starts with its create')
  const state: GroupState = {
    id: create.hash,
    name: create.name as string,
    creator: create.author,
    members: new Set([create.author, ...(create.members ?? [])]),
    admins: new Set([create.author]),
    heads: [],
    lamport: 0
  }
  const parents = new Set<string>()
  for (const op of sorted) {
    if (op !== create && allowed(state, op)) apply(state, op)
    for (const p of op.parents) parents.add(p)
    state.lamport = Math.max(state.lamport, op.lamport)
  }
  state.heads = sorted.map(op => op.hash).filter(h => !parents.has(h)).sort()
  return state
}

/**
 * One group's log: its ops by hash, and the membership they make. Ops come in
 * any order a peer sends them; one whose parents are not all known yet is
 * refused (`missing-parents`) and comes again with the rest of the log.
 */
export class MembershipLog {
  private readonly ops = new Map<string, VerifiedOp>()
  private bytes = 0
  private current: GroupState

  /** @param ops the create first or not; each checked as `add` checks it */
  constructor (create: VerifiedOp, private readonly sizeOf: (op: VerifiedOp) => number = defaultSize) {
    if (create.kind !== 'create') throw new OpRefusedError('wrong-group', 'a log starts with a create')
    this.ops.set(create.hash, create)
    this.bytes = sizeOf(create)
    this.current = replay([create])
  }

  get id (): string {
    return this.current.id
  }

  get state (): GroupState {
    return this.current
  }

  has (hash: string): boolean {
    return this.ops.has(hash)
  }

  /** Every op, in the total order: what a peer is sent to catch up. */
  all (): VerifiedOp[] {
    return [...this.ops.values()].sort(compareOps)
  }

  get size (): number {
    return this.ops.size
  }

  /** The ops `hashes` name and all their ancestors, or undefined if one is not known. */
  ancestry (hashes: Iterable<string>): Map<string, VerifiedOp> | undefined {
    const seen = new Map<string, VerifiedOp>()
    const stack = [...hashes]
    while (stack.length > 0) {
      const hash = stack.pop() as string
      if (seen.has(hash)) continue
      const op = this.ops.get(hash)
      if (op == null) return undefined
      seen.set(hash, op)
      stack.push(...op.parents)
    }
    return seen
  }

  /** The membership as the ops up to `heads` make it (what a sender knew), or undefined if a head is not known. */
  stateAt (heads: Iterable<string>): GroupState | undefined {
    const ops = this.ancestry(heads)
    return ops == null ? undefined : replay(ops.values())
  }

  /**
   * Takes one op: `known` if it is in the log already, `added` once it is.
   *
   * @throws OpRefusedError when it is not of this group, its parents are not all known, its Lamport time is not one more than its parents', its author may not do it in the membership its parents make, or the log is full
   */
  add (op: VerifiedOp): 'added' | 'known' {
    if (this.ops.has(op.hash)) return 'known'
    if (op.group !== this.id || op.kind === 'create') throw new OpRefusedError('wrong-group', `op ${op.hash} is not of group ${this.id}`)
    const parents = op.parents.map(p => this.ops.get(p))
    if (parents.some(p => p == null)) throw new OpRefusedError('missing-parents', `op ${op.hash} names a parent this log does not hold`)
    const expected = 1 + Math.max(...parents.map(p => (p as VerifiedOp).lamport))
    if (op.lamport !== expected) throw new OpRefusedError('bad-lamport', `op ${op.hash} has Lamport time ${op.lamport}, not ${expected}`)
    const before = this.stateAt(op.parents) as GroupState
    if (!allowed(before, op)) throw new OpRefusedError('not-allowed', `${op.author} may not ${op.kind} in group ${this.id}`)
    const size = this.sizeOf(op)
    if (this.ops.size >= MAX_OPS || this.bytes + size > MAX_LOG_BYTES) throw new OpRefusedError('log-full', `group ${this.id}'s log is full (${MAX_OPS} operations or ${MAX_LOG_BYTES} bytes)`)
    this.ops.set(op.hash, op)
    this.bytes += size
    this.current = replay(this.ops.values())
    return 'added'
  }

  /**
   * Takes a batch in any order (a peer's whole log): adds what fits, retrying
   * those whose parents come later in the batch. Returns the ops added and
   * those refused, with why.
   */
  merge (ops: VerifiedOp[]): { added: VerifiedOp[], refused: Array<{ op: VerifiedOp, error: OpRefusedError }> } {
    const added: VerifiedOp[] = []
    let pending = [...ops].sort(compareOps)
    const refused: Array<{ op: VerifiedOp, error: OpRefusedError }> = []
    let waiting: Array<{ op: VerifiedOp, error: OpRefusedError }> = []
    // sorted by Lamport time, parents come first: one pass takes the whole of a
    // consistent log; the loop only matters for what a missing parent held up
    for (let progress = true; progress && pending.length > 0;) {
      progress = false
      waiting = []
      for (const op of pending) {
        if (op.kind === 'create') {
          if (op.hash !== this.id) refused.push({ op, error: new OpRefusedError('wrong-group', `create ${op.hash} is another group's`) })
          continue
        }
        try {
          if (this.add(op) === 'added') { added.push(op); progress = true }
        } catch (err) {
          if (!(err instanceof OpRefusedError)) throw err
          if (err.reason === 'missing-parents') waiting.push({ op, error: err })
          else refused.push({ op, error: err })
        }
      }
      pending = waiting.map(w => w.op)
    }
    refused.push(...waiting)
    return { added, refused }
  }

  /** The next op's parents and Lamport time. */
  nextLink (): { parents: string[], lamport: number } {
    const heads = this.current.heads
    const lamport = 1 + Math.max(...heads.map(h => (this.ops.get(h) as VerifiedOp).lamport))
    return { parents: heads, lamport }
  }
}

function defaultSize (op: VerifiedOp): number {
  // a SignedOp in a payload: both fields and their tags and lengths
  return op.bytes.length + op.signature.length + 8
}
