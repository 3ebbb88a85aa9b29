import { NotFoundError } from '@libp2p/interface'
import { Record as DHTRecord } from '@libp2p/kad-dht'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import type { AbortOptions } from '@libp2p/interface'
import type { Selectors, Validators } from '@libp2p/kad-dht'
import type { Datastore, Key } from 'interface-datastore'

/** A DHT server refused to replace the record it holds with an older (or rival) one. */
export class StaleRecordError extends Error {
  static override name = 'StaleRecordError'
  override name = 'StaleRecordError'
}

export interface RecordStoreGuardInit {
  /** Where kad-dht keeps records: its `datastorePrefix` followed by `/record`. */
  prefix: string
  /** The namespaces guarded, and how a held record is judged still valid. */
  validators: Validators
  /** How the held record and the incoming one are compared. */
  selectors: Selectors
}

function namespaceOf (recordKey: Uint8Array): string {
  return uint8ArrayToString(recordKey).split('/')[1] ?? ''
}

function decode (raw: Uint8Array): DHTRecord | undefined {
  try {
    return DHTRecord.deserialize(raw)
  } catch {
    return undefined
  }
}

/**
 * Wraps the datastore kad-dht keeps DHT records in. js kad-dht's PUT_VALUE handler
 * (and its own `put`) validate a record and then write it over whatever is held;
 * this wrapper makes that write, for the namespaces it is given, keep what a
 * selector prefers, as go-libp2p's DHT does:
 *
 * - `put` refuses (throws {@link StaleRecordError}) unless the incoming record is
 *   byte-identical to the held one, or the held one no longer validates (expired),
 *   or the selector prefers the incoming one with the held one listed first (so an
 *   equal `seq` with different content keeps the held record). Puts for one key are
 *   serialized, so a check and its write are not interleaved with another's.
 * - `get` hides a held record that no longer validates, so a server does not hand
 *   out an expired record (kad-dht's GET_VALUE does not validate what it serves).
 *
 * Everything else passes through untouched.
 */
export function guardRecordStore (datastore: Datastore, init: RecordStoreGuardInit): Datastore {
  const prefix = `${init.prefix}/`
  const queues = new Map<string, Promise<unknown>>()

  const guarded = (key: Key): boolean => key.toString().startsWith(prefix)

  async function serialized<T> (id: string, fn: () => Promise<T>): Promise<T> {
    const run = (queues.get(id) ?? Promise.resolve()).then(fn, fn)
    const tail = run.catch(() => {})
    queues.set(id, tail)
    try {
      return await run
    } finally {
      if (queues.get(id) === tail) queues.delete(id)
    }
  }

  async function stillValid (record: DHTRecord, options?: AbortOptions): Promise<boolean> {
    const validate = init.validators[namespaceOf(record.key)]
    if (validate == null) return true
    try {
      await validate(record.key, record.value, options)
      return true
    } catch {
      return false
    }
  }

  async function held (key: Key, options?: AbortOptions): Promise<DHTRecord | undefined> {
    try {
      return decode(await datastore.get(key, options))
    } catch (err: any) {
      if (err.name === 'NotFoundError') return undefined
      throw err
    }
  }

  async function put (key: Key, value: Uint8Array, options?: AbortOptions): Promise<Key> {
    const incoming = guarded(key) ? decode(value) : undefined
    const select = incoming == null ? undefined : init.selectors[namespaceOf(incoming.key)]
    if (incoming == null || select == null) {
      return datastore.put(key, value, options)
    }
    return serialized(key.toString(), async () => {
      const current = await held(key, options)
      if (current != null &&
          !uint8ArrayEquals(current.value, incoming.value) &&
          await stillValid(current, options) &&
          select(incoming.key, [current.value, incoming.value]) !== 1) {
        throw new StaleRecordError(`refusing ${uint8ArrayToString(incoming.key)}: the record held is newer or equal`)
      }
      return datastore.put(key, value, options)
    })
  }

  async function get (key: Key, options?: AbortOptions): Promise<Uint8Array> {
    const raw = await datastore.get(key, options)
    if (guarded(key)) {
      const record = decode(raw)
      if (record != null && init.selectors[namespaceOf(record.key)] != null && !(await stillValid(record, options))) {
        throw new NotFoundError('the record held is no longer valid')
      }
    }
    return raw
  }

  return new Proxy(datastore, {
    get (target, prop) {
      if (prop === 'put') return put
      if (prop === 'get') return get
      const member = Reflect.get(target, prop, target)
      return typeof member === 'function' ? member.bind(target) : member
    }
  })
}
