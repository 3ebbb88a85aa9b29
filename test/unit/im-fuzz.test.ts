/**
 * Property-based fuzzing of the /im/1.0.0 receiver against hostile peers
 * (issue 11): the frame decoder and read pipeline on arbitrary bytes, and the
 * real inbound handler of `DefaultImService` on arbitrary, structurally valid
 * frames sent by a raw initiator.
 *
 * Deterministic: every run uses the fixed seed below, so CI sees the same
 * inputs each time. On a failure fast-check prints the seed, the path and the
 * shrunk counterexample; re-run with IM_FUZZ_SEED=<seed> (and IM_FUZZ_RUNS to
 * search longer locally, e.g. IM_FUZZ_SEED=$RANDOM IM_FUZZ_RUNS=2000).
 */
import { streamPair } from '@libp2p/utils'
import fc from 'fast-check'
import { concat } from 'uint8arrays/concat'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FrameReader, decodeFrame } from '../../protocols/im/frames.js'
import { Ack, ChatMessage, Frame, MAX_FRAME_BYTES, ProtocolViolationError } from '../../protocols/im/index.js'
import { StreamFrames, fakeConnection, hex, makePeer, startService, varint } from './im-helpers.js'
import type { Admission, InboundMessage, Refusal, StoreResult } from '../../protocols/im/index.js'
import type { ServiceUnderTest } from './im-helpers.js'
import type { Connection, PeerId } from '@libp2p/interface'

const SEED = Number(process.env.IM_FUZZ_SEED ?? 0x1_1f0c)
/** Scales every property's run count (IM_FUZZ_RUNS=2000 runs each ~10x longer). */
const RUNS = process.env.IM_FUZZ_RUNS == null ? undefined : Number(process.env.IM_FUZZ_RUNS)

function params (numRuns: number): fc.Parameters<unknown> {
  return {
    seed: SEED,
    numRuns: RUNS ?? numRuns,
    // one run is a few ms; a hung run fails with its seed instead of the vitest timeout
    timeout: 10_000,
    // a shrink that goes on and on still ends with the counterexample so far
    interruptAfterTimeLimit: 90_000,
    markInterruptAsFailure: false
  }
}

const MAX_SAFE_SEQ = 2n ** 53n - 1n
const MAX_BODY_BYTES = 32_768
const MAX_CONTENT_TYPE_BYTES = 128
const utf8 = new TextEncoder()
const utf8Bytes = (text: string): number => utf8.encode(text).byteLength

function lpFrame (payload: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat([varint(payload.byteLength), payload])
}

// ---------------------------------------------------------------------------
// An oracle for the spec, written from README.md sections 3 and 6 and
// independent of validate.ts: a hand-rolled media type parser and the limits.

const TCHAR = new Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

/** RFC 9110 media type syntax in printable ASCII; the length limit is checked apart. */
function oracleIsMediaTypeSyntax (text: string): boolean {
  for (let k = 0; k < text.length; k++) {
    const c = text.charCodeAt(k)
    if (c < 0x20 || c > 0x7e) return false
  }
  let i = 0
  const token = (): boolean => {
    const start = i
    while (i < text.length && TCHAR.has(text[i])) i++
    return i > start
  }
  if (!token() || text[i++] !== '/' || !token()) return false
  while (i < text.length) {
    while (text[i] === ' ') i++
    if (text[i++] !== ';') return false
    while (text[i] === ' ') i++
    if (!token() || text[i++] !== '=') return false
    if (text[i] === '"') {
      i++
      for (;;) {
        if (i >= text.length) return false
        const ch = text[i++]
        if (ch === '"') break
        if (ch === '\\') {
          if (i >= text.length) return false
          i++
        }
      }
    } else if (!token()) {
      return false
    }
  }
  return true
}

/** Every refusal that applies to a message (the spec lets the receiver answer any one of them). */
function oracleRefusals (m: { id: Uint8Array, seq: bigint, body: string, contentType?: string, replyTo?: Uint8Array }): Set<Ack.Status> {
  const out = new Set<Ack.Status>()
  if (m.id.byteLength !== 16) out.add(Ack.Status.INVALID)
  if (m.seq < 1n || m.seq > MAX_SAFE_SEQ) out.add(Ack.Status.INVALID)
  if (m.replyTo != null && m.replyTo.byteLength !== 16) out.add(Ack.Status.INVALID)
  if (utf8Bytes(m.body) > MAX_BODY_BYTES) out.add(Ack.Status.TOO_LARGE)
  // body bytes that are not well-formed UTF-8: protons writes a short string's lone
  // surrogate as its 3-byte (WTF-8) form and the receiver decodes it back as one
  if (!ChatMessage.decode(ChatMessage.encode({ id: new Uint8Array(16), seq: 1n, sentAt: 0n, body: m.body })).body.isWellFormed()) out.add(Ack.Status.INVALID)
  if (m.contentType != null) {
    if (utf8Bytes(m.contentType) > MAX_CONTENT_TYPE_BYTES) out.add(Ack.Status.TOO_LARGE)
    if (!oracleIsMediaTypeSyntax(m.contentType)) out.add(Ack.Status.INVALID)
  }
  return out
}

// ---------------------------------------------------------------------------
// Arbitraries

const id16 = fc.uint8Array({ minLength: 16, maxLength: 16 })
const anyId = fc.oneof(
  { weight: 12, arbitrary: id16 },
  { weight: 1, arbitrary: fc.constantFrom(new Uint8Array(16), new Uint8Array(16).fill(0xff)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) }
)

const seq = fc.oneof(
  { weight: 12, arbitrary: fc.bigInt({ min: 1n, max: 1000n }) },
  { weight: 1, arbitrary: fc.constantFrom(0n, MAX_SAFE_SEQ, MAX_SAFE_SEQ + 1n, 2n ** 63n, 2n ** 64n - 1n) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }
)

const UNITS = ['a', 'é', '€', '🎉', '\u0000', '\ud800'] // 1, 2, 3, 4, 1 and (lone surrogate, as U+FFFD) 3 bytes
/** A body of about `bytes` UTF-8 bytes made of one repeated character, padded with ASCII to the exact size. */
const bodyAround = (min: number, max: number): fc.Arbitrary<string> =>
  fc.tuple(fc.constantFrom(...UNITS), fc.integer({ min, max })).map(([unit, bytes]) => {
    const n = Math.floor(bytes / utf8Bytes(unit))
    return unit.repeat(n) + 'a'.repeat(bytes - n * utf8Bytes(unit))
  })

const body = fc.oneof(
  // a failing case shrinks to a short body
  { withCrossShrink: true },
  { weight: 8, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: bodyAround(MAX_BODY_BYTES - 8, MAX_BODY_BYTES + 8) },
  { weight: 1, arbitrary: bodyAround(0, 70_000) } // past 65,536 the whole frame is oversized
)

const token = fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: 12 })
const quoted = fc.string({
  unit: fc.oneof(fc.constantFrom(' ', 'a', ';', '=', '/', '~'), fc.constantFrom('\\"', '\\\\', '\\a'))
}).map(s => `"${s}"`)
const mediaType = fc.tuple(token, token, fc.array(fc.tuple(fc.constantFrom('', ' ', '  '), token, fc.oneof(token, quoted)), { maxLength: 3 }))
  .map(([type, subtype, parameters]) => `${type}/${subtype}` + parameters.map(([ows, name, value]) => `${ows};${ows}${name}=${value}`).join(''))

const contentType = fc.option(fc.oneof(
  { withCrossShrink: true },
  { weight: 4, arbitrary: mediaType },
  { weight: 1, arbitrary: fc.constantFrom('text/plain', 'text/markdown; charset=utf-8', 'application/vnd.foo+json', '', 'text', 'text/', 'te xt/plain', 'text/plain\x1b[2K', 'text/plaïn', 'text/plain;', 'text/plain\r\nX: 1') },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', '/', ';', '=', '"', '\\', ' ', '\t', '\x7f', '\x1b'), maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: 120, max: 140 }).map(n => 'text/' + 'x'.repeat(n - 5)) },
  { weight: 1, arbitrary: fc.integer({ min: 40, max: 50 }).map(n => 'text/' + '€'.repeat(n)) }
), { freq: 3, nil: undefined })

const chatMessage: fc.Arbitrary<ChatMessage> = fc.record({
  id: anyId,
  seq,
  sentAt: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  body,
  contentType,
  replyTo: fc.option(anyId, { freq: 3, nil: undefined })
}, { requiredKeys: ['id', 'seq', 'sentAt', 'body'] })

type AdmitPlan = { admission: Admission, async: boolean }
const admitPlan: fc.Arbitrary<AdmitPlan> = fc.record({
  admission: fc.oneof(
    { weight: 10, arbitrary: fc.constant<Admission>({ status: 'accept' }) },
    { weight: 1, arbitrary: fc.constant<Admission>({ status: 'block' }) },
    { weight: 1, arbitrary: fc.option(fc.nat(2 ** 32 - 1), { nil: undefined }).map((retryAfterMs): Admission => ({ status: 'rate-limit', retryAfterMs })) }
  ),
  async: fc.boolean()
})

type StoreOutcome = 'stored' | 'duplicate' | { status: 'rate-limited', retryAfterMs?: number } | 'throw' | 'reject'
interface StorePlan { outcome: StoreOutcome, delayMs: number }
const storeOutcome = fc.oneof(
  { weight: 10, arbitrary: fc.constant<StoreOutcome>('stored') },
  { weight: 2, arbitrary: fc.constant<StoreOutcome>('duplicate') },
  { weight: 2, arbitrary: fc.option(fc.nat(2 ** 32 - 1), { nil: undefined }).map((retryAfterMs): StoreOutcome => ({ status: 'rate-limited', retryAfterMs })) }
)
const failingOutcome = fc.constantFrom<StoreOutcome>('throw', 'reject')
const storePlan = (outcome: fc.Arbitrary<StoreOutcome>): fc.Arbitrary<StorePlan> =>
  // a random delay lets later stores settle before earlier ones: acks must stay in order
  fc.record({ outcome, delayMs: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }) })

interface MessageStep { kind: 'message', message: ChatMessage, admit: AdmitPlan, store: StorePlan }
type ViolationKind = 'ack from the initiator' | 'both message and ack' | 'neither message nor ack' | 'undecodable' | 'oversized prefix' | 'truncated frame'
interface ViolationStep { kind: 'violation', what: ViolationKind, bytes: Uint8Array }
type Step = MessageStep | ViolationStep

const ackFrame = fc.record({ id: anyId, status: fc.constantFrom(...Object.values(Ack.Status).filter((v): v is Ack.Status => typeof v === 'string')), retryAfterMs: fc.option(fc.nat(2 ** 32 - 1), { nil: undefined }) })

const violation: fc.Arbitrary<ViolationStep> = fc.oneof(
  ackFrame.map(ack => ({ kind: 'violation' as const, what: 'ack from the initiator' as const, bytes: lpFrame(Frame.encode({ ack })) })),
  fc.tuple(chatMessage, ackFrame).map(([message, ack]) => ({ kind: 'violation' as const, what: 'both message and ack' as const, bytes: lpFrame(Frame.encode({ message, ack })) })),
  fc.constantFrom(new Uint8Array(0), Uint8Array.from([(9 << 3) | 0, 1]), Uint8Array.from([(17 << 3) | 2, 1, 0])).map(payload => ({ kind: 'violation' as const, what: 'neither message nor ack' as const, bytes: lpFrame(payload) })),
  // field 3 with the invalid wire type 7, then anything
  fc.uint8Array({ maxLength: 30 }).map(rest => ({ kind: 'violation' as const, what: 'undecodable' as const, bytes: lpFrame(concat([Uint8Array.from([(3 << 3) | 7]), rest])) })),
  fc.tuple(fc.integer({ min: MAX_FRAME_BYTES + 1, max: 2 ** 48 }), fc.uint8Array({ maxLength: 30 })).map(([length, rest]) => ({ kind: 'violation' as const, what: 'oversized prefix' as const, bytes: concat([varint(length), rest]) }))
)

/** A prefix promising more than follows, then the end of the stream: only ever the last step. */
const truncated: fc.Arbitrary<ViolationStep> = fc.integer({ min: 1, max: MAX_FRAME_BYTES }).chain(length =>
  fc.uint8Array({ maxLength: Math.min(length - 1, 30) }).map(rest => ({ kind: 'violation' as const, what: 'truncated frame' as const, bytes: concat([varint(length), rest]) })))

const messageStep = (outcome: fc.Arbitrary<StoreOutcome>): fc.Arbitrary<MessageStep> =>
  fc.record({ message: chatMessage, admit: admitPlan, store: storePlan(outcome) }).map(s => ({ kind: 'message' as const, ...s }))

/** How the initiator's bytes are cut into writes, and whether it waits a tick between them. */
const writes = fc.array(fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.boolean()), { maxLength: 6 })

// ---------------------------------------------------------------------------
// The receiver under test, driven by a raw initiator

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
let sender: PeerId

beforeAll(async () => {
  sender = await makePeer()
  process.on('unhandledRejection', onUnhandled)
})

afterAll(() => {
  process.off('unhandledRejection', onUnhandled)
})

async function macrotask (): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 0))
}

interface Exchange {
  /** acks read by the initiator, in order, until the stream ended */
  acks: Frame[]
  /** the frames the initiator read that were not acks */
  others: Frame[]
  /** the inbound stream's status once the handler returned */
  inboundStatus: string
  handlerError?: unknown
}

/** Sends `bytes` to the handler of `receiver` on a fresh stream, cut as `cuts` says, then closes the write side. */
async function exchange (receiver: ServiceUnderTest, connection: Connection, bytes: Uint8Array, cuts: Array<[number, boolean]>): Promise<Exchange> {
  const [outbound, inbound] = await streamPair()
  const handled = receiver.handle(inbound, connection).then(() => undefined, (err: unknown) => err)
  const reader = new StreamFrames(outbound)
  const acks: Frame[] = []
  const others: Frame[] = []
  const reading = (async () => {
    try {
      for (;;) {
        const frame = await reader.next()
        if (frame == null) return
        if (frame.ack != null && frame.message == null) acks.push(frame)
        else others.push(frame)
      }
    } catch {
      // the receiver reset the stream
    }
  })()

  try {
    let offset = 0
    for (const [size, wait] of [...cuts, [bytes.byteLength, false] as [number, boolean]]) {
      if (offset >= bytes.byteLength) break
      const chunk = bytes.subarray(offset, offset + size)
      offset += chunk.byteLength
      if (!outbound.send(chunk)) await outbound.onDrain()
      if (wait) await macrotask()
    }
    await outbound.close()
  } catch {
    // the receiver aborted the stream under the initiator's writes
  }

  const handlerError = await handled
  await reading
  return { acks, others, inboundStatus: inbound.status, handlerError }
}

interface Harness {
  receiver: ServiceUnderTest
  connection: Connection
  admitCalls: number
  stored: InboundMessage[]
  refused: Refusal[]
}

/** A service whose admit and store follow the plan of each message step, by call order. */
async function harness (plans: { admit: AdmitPlan[], store: StorePlan[] }, maxUnacked?: number): Promise<Harness> {
  const h: Partial<Harness> & { admitCalls: number, stored: InboundMessage[], refused: Refusal[] } = { admitCalls: 0, stored: [], refused: [] }
  h.receiver = await startService({
    maxUnacked,
    admit: (): Admission | Promise<Admission> => {
      const plan = plans.admit[h.admitCalls++]
      if (plan == null) throw new Error('admit called more often than messages were sent')
      return plan.async ? Promise.resolve(plan.admission) : plan.admission
    },
    store: (message): Promise<StoreResult> => {
      const plan = plans.store[h.stored.length]
      h.stored.push(message)
      if (plan == null) throw new Error('store called for a message that was refused')
      const { outcome, delayMs } = plan
      if (outcome === 'throw') throw new Error('store throws (fuzz)')
      const settle = async (): Promise<StoreResult> => {
        if (delayMs > 0) await new Promise(resolve => setTimeout(resolve, delayMs))
        if (outcome === 'reject') throw new Error('store rejects (fuzz)')
        return outcome
      }
      return settle()
    },
    onRefused: (refusal) => { h.refused.push(refusal) }
  })
  h.connection = fakeConnection({ remotePeer: sender })
  return h as Harness
}

/** After a run: the service answers a plain message on a new stream of the same connection. */
async function expectStillServes (h: Harness, plans: { admit: AdmitPlan[], store: StorePlan[] }): Promise<void> {
  const id = new Uint8Array(16).fill(0x42)
  plans.admit[h.admitCalls] = { admission: { status: 'accept' }, async: false }
  plans.store[h.stored.length] = { outcome: 'stored', delayMs: 0 }
  const result = await exchange(h.receiver, h.connection, lpFrame(Frame.encode({ message: { id, seq: 1n, sentAt: 0n, body: 'still there' } })), [])
  expect(result.handlerError).toBeUndefined()
  expect(result.acks.map(f => [hex(f.ack!.id), f.ack!.status])).toEqual([[hex(id), Ack.Status.OK]])
  expect(result.inboundStatus).toBe('closed')
}

interface Expected {
  /** message steps the receiver will read (those before the first bad frame) */
  readable: MessageStep[]
  /** the stream must end in an abort: a bad frame, or a store that failed */
  aborts: boolean
  /** acks the initiator may see, in order (it sees all of them when the stream does not abort) */
  acks: Array<{ id: Uint8Array, statuses: Set<Ack.Status>, retryAfterMs?: number }>
  /** index into `readable` of the first message whose store fails */
  firstFailure?: number
}

function expectedOf (steps: Step[]): Expected {
  const readable: MessageStep[] = []
  let aborts = false
  for (const step of steps) {
    if (step.kind === 'violation') {
      aborts = true
      break
    }
    if (Frame.encode({ message: step.message }).byteLength > MAX_FRAME_BYTES) {
      // an oversized prefix: refused before the frame is read
      aborts = true
      break
    }
    readable.push(step)
  }
  const acks: Expected['acks'] = []
  let firstFailure: number | undefined
  for (const [index, step] of readable.entries()) {
    const { admission } = step.admit
    if (admission.status === 'rate-limit') {
      acks.push({ id: step.message.id, statuses: new Set([Ack.Status.RATE_LIMITED]), retryAfterMs: admission.retryAfterMs })
      continue
    }
    if (admission.status === 'block') {
      acks.push({ id: step.message.id, statuses: new Set([Ack.Status.BLOCKED]) })
      continue
    }
    const refusals = oracleRefusals(step.message)
    if (refusals.size > 0) {
      acks.push({ id: step.message.id, statuses: refusals })
      continue
    }
    const outcome = step.store.outcome
    if (outcome === 'throw' || outcome === 'reject') {
      firstFailure = index
      aborts = true
      break
    }
    if (typeof outcome === 'object') {
      acks.push({ id: step.message.id, statuses: new Set([Ack.Status.RATE_LIMITED]), retryAfterMs: outcome.retryAfterMs })
    } else {
      acks.push({ id: step.message.id, statuses: new Set([outcome === 'duplicate' ? Ack.Status.DUPLICATE : Ack.Status.OK]) })
    }
  }
  return { readable, aborts, acks, firstFailure }
}

/** Runs the steps against a fresh service and checks everything the spec promises. */
async function checkSteps (steps: Step[], cuts: Array<[number, boolean]>, maxUnacked?: number): Promise<void> {
  const messageSteps = steps.filter((s): s is MessageStep => s.kind === 'message')
  const admitted = messageSteps.filter(s => s.admit.admission.status === 'accept' && oracleRefusals(s.message).size === 0)
  const plans = { admit: messageSteps.map(s => s.admit), store: admitted.map(s => s.store) }
  const h = await harness(plans, maxUnacked)
  const expected = expectedOf(steps)
  const bytes = concat([...steps.map(s => s.kind === 'violation' ? s.bytes : lpFrame(Frame.encode({ message: s.message })))])

  try {
    const result = await exchange(h.receiver, h.connection, bytes, cuts)

    // the handler never rejects: a misbehaving stream is aborted, nothing else is affected
    expect(result.handlerError).toBeUndefined()
    expect(result.others).toEqual([])
    expect(result.inboundStatus).toMatch(expected.aborts ? /^(aborted|reset)$/ : /^closed$/)

    // acks: one per message, in order, with the spec's status; all of them when the
    // stream ends well, else those of a prefix (the ones before the abort may be lost with it)
    if (expected.aborts) expect(result.acks.length).toBeLessThanOrEqual(expected.acks.length)
    else expect(result.acks.length).toBe(expected.acks.length)
    for (const [i, frame] of result.acks.entries()) {
      const want = expected.acks[i]
      expect(hex(frame.ack!.id)).toBe(hex(want.id))
      expect([...want.statuses]).toContain(frame.ack!.status)
      if (frame.ack!.status === Ack.Status.RATE_LIMITED) expect(frame.ack!.retryAfterMs).toBe(want.retryAfterMs)
      else expect(frame.ack!.retryAfterMs).toBeUndefined()
    }

    // admit saw the messages in order: at least up to a failing store, at most up to the bad frame
    const seen = h.admitCalls
    expect(seen).toBeLessThanOrEqual(expected.readable.length)
    expect(seen).toBeGreaterThanOrEqual(expected.firstFailure == null ? expected.readable.length : expected.firstFailure + 1)

    // store: exactly the accepted, valid ones among the messages seen, in order, never a refused one
    const shouldStore = expected.readable.slice(0, seen).filter(s => s.admit.admission.status === 'accept' && oracleRefusals(s.message).size === 0)
    expect(h.stored.map(m => hex(m.id))).toEqual(shouldStore.map(s => hex(s.message.id)))
    for (const [i, m] of h.stored.entries()) {
      const sent = shouldStore[i].message
      expect(m.from.equals(sender)).toBe(true)
      expect(m.seq).toBe(Number(sent.seq))
      expect(m.sentAt).toBe(Number(sent.sentAt))
      // protons writes a lone surrogate of a short string as its 3-byte (WTF-8) form and
      // reads it back as it was; a long string's turns into U+FFFD on the way
      expect(m.body.toWellFormed()).toBe(sent.body.toWellFormed())
      expect(m.contentType).toBe(sent.contentType ?? 'text/plain')
      expect(m.replyTo == null ? undefined : hex(m.replyTo)).toBe(sent.replyTo == null ? undefined : hex(sent.replyTo))
    }

    // onRefused: every BLOCKED, TOO_LARGE and INVALID among the messages seen (they fill their seq)
    const shouldRefuse = expected.readable.slice(0, seen).filter(s => s.admit.admission.status === 'block' || (s.admit.admission.status === 'accept' && oracleRefusals(s.message).size > 0))
    expect(h.refused.map(r => [hex(r.id), r.seq])).toEqual(shouldRefuse.map(s => [hex(s.message.id), s.message.seq]))

    await expectStillServes(h, plans)
    await macrotask()
    expect(unhandled).toEqual([])
  } finally {
    await h.receiver.service.stop()
  }
}

// ---------------------------------------------------------------------------

describe('/im/1.0.0 fuzz (issue 11, hostile peers)', () => {
  describe('frame decoder', () => {
    it('decodeFrame throws nothing but ProtocolViolationError, and what it returns has exactly one of message and ack', () => {
      const validFrame = fc.oneof(
        chatMessage.map(message => Frame.encode({ message })),
        ackFrame.map(ack => Frame.encode({ ack }))
      )
      // valid frames cut short, bytes flipped, or garbage appended
      const mutated = fc.tuple(validFrame, fc.nat(), fc.nat(255), fc.uint8Array({ maxLength: 8 })).map(([frame, at, value, tail]) => {
        const out = concat([frame.subarray(0, Math.max(1, frame.byteLength - (at % 4))), tail])
        if (out.byteLength > 0) out[at % out.byteLength] = value
        return out
      })
      fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), validFrame, mutated), (bytes) => {
        let frame: Frame
        try {
          frame = decodeFrame(bytes)
        } catch (err: any) {
          expect(err.name).toBe('ProtocolViolationError')
          return
        }
        expect((frame.message == null) !== (frame.ack == null)).toBe(true)
        if (frame.message != null) {
          expect(frame.message.id).toBeInstanceOf(Uint8Array)
          expect(typeof frame.message.seq).toBe('bigint')
          expect(typeof frame.message.body).toBe('string')
        }
      }), params(1500))
    })

    it('the frame reader fails only with a protocol error, and never holds more than one frame', () => {
      const part = fc.oneof(
        { weight: 3, arbitrary: fc.uint8Array({ maxLength: 40 }) },
        { weight: 3, arbitrary: chatMessage.map(message => lpFrame(Frame.encode({ message }))) },
        { weight: 2, arbitrary: fc.tuple(fc.oneof(fc.nat(300), fc.integer({ min: MAX_FRAME_BYTES - 4, max: MAX_FRAME_BYTES + 4 }), fc.nat(2 ** 31), fc.maxSafeNat()), fc.uint8Array({ maxLength: 40 })).map(([n, rest]) => concat([varint(n), rest])) },
        // a varint longer than 8 bytes, and non-minimal varints
        { weight: 1, arbitrary: fc.integer({ min: 9, max: 12 }).map(n => Uint8Array.from([...new Array(n - 1).fill(0xff), 0x01])) },
        { weight: 1, arbitrary: fc.tuple(fc.nat(127), fc.integer({ min: 1, max: 4 })).map(([low, pad]) => Uint8Array.from([low | 0x80, ...new Array(pad - 1).fill(0x80), 0x00])) },
        // a full frame of exactly the limit, or one byte over it
        { weight: 1, arbitrary: fc.constantFrom(MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1).map(n => lpFrame(new Uint8Array(n).fill(0x0a))) }
      )
      const chunkSizes = fc.array(fc.integer({ min: 1, max: 70_000 }), { maxLength: 8 })

      fc.assert(fc.property(fc.array(part, { minLength: 1, maxLength: 8 }), chunkSizes, (parts, sizes) => {
        const bytes = concat([...parts])
        const frames = new FrameReader()
        let pushed = 0
        let consumed = 0
        let mostBuffered = 0
        let largest = 0
        let failure: any
        try {
          let offset = 0
          for (const size of [...sizes, bytes.byteLength]) {
            if (offset >= bytes.byteLength) break
            const chunk = bytes.subarray(offset, offset + size)
            offset += chunk.byteLength
            pushed += chunk.byteLength
            frames.push(chunk)
            for (let buf = frames.next(); buf != null; buf = frames.next()) {
              largest = Math.max(largest, buf.byteLength)
              consumed += buf.byteLength + varint(buf.byteLength).byteLength
              decodeFrame(buf)
            }
            // waiting for more: everything before is either handed out as frames or
            // part of one frame still incomplete (its prefix at most 8 bytes)
            mostBuffered = Math.max(mostBuffered, pushed - consumed)
          }
        } catch (err: any) {
          failure = err
        }
        expect(largest).toBeLessThanOrEqual(MAX_FRAME_BYTES)
        expect(mostBuffered).toBeLessThanOrEqual(MAX_FRAME_BYTES + 8)
        if (failure == null) {
          // what is left is the start of a frame, and the reader says so
          expect(frames.inFrame).toBe(consumed < bytes.byteLength)
        } else {
          expect(failure).toBeInstanceOf(ProtocolViolationError)
        }
      }), params(400))
    })

    it('arbitrary bytes on an inbound stream: the handler never rejects, stores only valid messages and keeps serving', async () => {
      const part = fc.oneof(
        fc.uint8Array({ maxLength: 60 }),
        chatMessage.map(message => lpFrame(Frame.encode({ message }))),
        fc.tuple(fc.oneof(fc.nat(200), fc.nat(2 ** 40)), fc.uint8Array({ maxLength: 60 })).map(([n, rest]) => concat([varint(n), rest]))
      )
      await fc.assert(fc.asyncProperty(fc.array(part, { minLength: 1, maxLength: 6 }), writes, async (parts, cuts) => {
        const plans = { admit: [] as AdmitPlan[], store: [] as StorePlan[] }
        for (let i = 0; i < 64; i++) {
          plans.admit.push({ admission: { status: 'accept' }, async: false })
          plans.store.push({ outcome: 'stored', delayMs: 0 })
        }
        const h = await harness(plans)
        try {
          const result = await exchange(h.receiver, h.connection, concat([...parts]), cuts)
          expect(result.handlerError).toBeUndefined()
          expect(result.others).toEqual([])
          expect(['closed', 'aborted', 'reset']).toContain(result.inboundStatus)
          // every message stored passed the spec's checks, and was acked OK if any ack came
          for (const m of h.stored) {
            expect(oracleRefusals({ ...m, seq: BigInt(m.seq) }).size).toBe(0)
          }
          expect(result.acks.length).toBeLessThanOrEqual(h.admitCalls)
          expect(h.stored.length + h.refused.length).toBe(h.admitCalls)
          await expectStillServes(h, plans)
          await macrotask()
          expect(unhandled).toEqual([])
        } finally {
          await h.receiver.service.stop()
        }
      }), params(100))
    })
  })

  describe('inbound handler', () => {
    it('answers every valid frame once, in order, with the spec\'s status; aborts on protocol violations', async () => {
      const steps = fc.tuple(
        fc.array(fc.oneof(
          { weight: 14, arbitrary: messageStep(storeOutcome) },
          { weight: 1, arbitrary: messageStep(failingOutcome) },
          { weight: 1, arbitrary: violation }
        ), { minLength: 1, maxLength: 10 }),
        fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: truncated })
      ).map(([steps, last]) => last == null ? steps : [...steps, last])

      // a small window makes the reader wait for acks to go out before it reads on
      const maxUnacked = fc.constantFrom(1, 2, 3, 64)
      await fc.assert(fc.asyncProperty(steps, writes, maxUnacked, checkSteps), params(150))
    })

    it('a store that throws or rejects gets no ack, and the stream is aborted', async () => {
      const uniqueIds = fc.uniqueArray(id16, { minLength: 2, maxLength: 8, selector: hex })
      const scenario = uniqueIds.chain(ids => fc.record({
        ids: fc.constant(ids),
        failing: fc.nat(ids.length - 1),
        how: failingOutcome,
        delays: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: ids.length, maxLength: ids.length }),
        outcomes: fc.array(storeOutcome, { minLength: ids.length, maxLength: ids.length })
      }))

      await fc.assert(fc.asyncProperty(scenario, writes, async ({ ids, failing, how, delays, outcomes }, cuts) => {
        const steps: MessageStep[] = ids.map((id, i) => ({
          kind: 'message',
          message: { id, seq: BigInt(i + 1), sentAt: 0n, body: `m${i}` },
          admit: { admission: { status: 'accept' }, async: false },
          store: { outcome: i === failing ? how : outcomes[i], delayMs: delays[i] }
        }))
        await checkSteps(steps, cuts)

        // and spelled out: nothing for the failing message or after it
        const h = await harness({ admit: steps.map(s => s.admit), store: steps.map(s => s.store) })
        try {
          const result = await exchange(h.receiver, h.connection, concat([...steps.map(s => lpFrame(Frame.encode({ message: s.message })))]), cuts)
          const acked = result.acks.map(f => hex(f.ack!.id))
          expect(ids.slice(0, failing).map(hex).slice(0, acked.length)).toEqual(acked)
          expect(acked).not.toContain(hex(ids[failing]))
          expect(['aborted', 'reset']).toContain(result.inboundStatus)
          expect(result.handlerError).toBeUndefined()
          await macrotask()
          expect(unhandled).toEqual([])
        } finally {
          await h.receiver.service.stop()
        }
      }), params(50))
    })
  })
})
