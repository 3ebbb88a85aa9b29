/**
 * Configuration in layers, shared by the relay and the node's daemon:
 * defaults < JSON config file < `PARLEY_*` environment < command-line flags,
 * merged and then checked against one zod schema, so that every bad value is
 * reported with its key path, the reason, and where it came from. The
 * programmatic options of `createNode` and `createRelay` go through the same
 * check as a single layer.
 */
import { readFile } from 'node:fs/promises'
import { isMultiaddr, multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { InvalidConfigError } from './errors.js'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Values from one source, with where each key came from for error messages. */
export interface ConfigLayer {
  /** The source as a user would name it: `config file /etc/parley/relay.json`, `flags`. */
  source: string

  /** Nested plain values, shaped like the schema (possibly partial). */
  values: Record<string, unknown>

  /** Per key path (`limits.maxReservations`), a finer origin than `source`: `PARLEY_MAX_RESERVATIONS`, `--max-reservations`. */
  origins?: Record<string, string>
}

/** How a string from the environment or a flag becomes a config value. */
export type ConfigValueKind = 'string' | 'number' | 'list' | 'boolean'

/** One environment variable or flag and the key path it sets. */
export interface ConfigBinding {
  /** Dotted key path, e.g. `limits.maxReservations`. */
  key: string
  kind: ConfigValueKind
}

/** The name a config file has inside a data dir. */
export const CONFIG_FILE = 'config.json'

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) &&
    (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)
}

/**
 * Reads a JSON config file into a layer. A missing file is `undefined` when
 * `optional` (the data dir's own file need not exist), an error otherwise (a
 * file named with `--config` must).
 */
export async function readConfigFile (path: string, options: { optional?: boolean } = {}): Promise<ConfigLayer | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT' && options.optional === true) return undefined
    throw new InvalidConfigError(`config file ${path}: cannot read it (${err.message})`)
  }
  let values: unknown
  try {
    values = JSON.parse(text)
  } catch (err: any) {
    throw new InvalidConfigError(`config file ${path}: not valid JSON (${err.message})`)
  }
  if (!isPlainObject(values)) {
    throw new InvalidConfigError(`config file ${path}: must hold a JSON object of settings, e.g. {"limits": {"maxReservations": 512}}`)
  }
  return { source: `config file ${path}`, values }
}

/** `12`, `-3`, `1.5`, `1e6` become numbers; anything else stays a string for the schema to reject with its own reason. */
function toNumber (text: string): number | string {
  const trimmed = text.trim()
  return /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i.test(trimmed) ? Number(trimmed) : text
}

/** Converts a string from the environment or a flag to the kind its key expects. */
export function convertValue (text: string, kind: ConfigValueKind): unknown {
  switch (kind) {
    case 'number': return toNumber(text)
    case 'list': return text.split(',').map(s => s.trim()).filter(s => s.length > 0)
    case 'boolean': {
      const lower = text.trim().toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(lower)) return true
      if (['0', 'false', 'no', 'off'].includes(lower)) return false
      return text
    }
    default: return text
  }
}

/** Sets `value` at dotted `key` inside `target`, creating objects on the way. */
export function setPath (target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.')
  let node = target
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(node[part])) node[part] = {}
    node = node[part] as Record<string, unknown>
  }
  node[parts[parts.length - 1]] = value
}

/** The layer of every set `PARLEY_*` variable named in `bindings` (empty variables count as unset). */
export function envLayer (bindings: Record<string, ConfigBinding>, env: NodeJS.ProcessEnv = process.env): ConfigLayer {
  const values: Record<string, unknown> = {}
  const origins: Record<string, string> = {}
  for (const [name, { key, kind }] of Object.entries(bindings)) {
    const text = env[name]
    if (text == null || text.trim() === '') continue
    setPath(values, key, convertValue(text, kind))
    origins[key] = `environment variable ${name}`
  }
  return { source: 'environment', values, origins }
}

/**
 * The layer of the flags given on the command line. `given` maps each key path
 * to the flag's value (already a list for repeatable flags) and the flag name;
 * flags left out are `undefined` and set nothing.
 */
export function flagLayer (given: Record<string, { value: unknown, flag: string, kind?: ConfigValueKind }>): ConfigLayer {
  const values: Record<string, unknown> = {}
  const origins: Record<string, string> = {}
  for (const [key, { value, flag, kind }] of Object.entries(given)) {
    if (value === undefined) continue
    setPath(values, key, typeof value === 'string' && kind != null ? convertValue(value, kind) : value)
    origins[key] = flag
  }
  return { source: 'flags', values, origins }
}

/** Merged values and, per key path, the source that set it last. */
export interface MergedConfig {
  values: Record<string, unknown>
  origins: Map<string, string>
}

function mergeInto (target: Record<string, unknown>, source: Record<string, unknown>, prefix: string, layer: ConfigLayer, origins: Map<string, string>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue
    const path = prefix === '' ? key : `${prefix}.${key}`
    if (isPlainObject(value)) {
      if (!isPlainObject(target[key])) target[key] = {}
      mergeInto(target[key] as Record<string, unknown>, value, path, layer, origins)
      continue
    }
    // arrays replace, never concatenate: `--listen` given on the command line
    // means "listen here", not "here too"
    target[key] = value
    origins.set(path, layer.origins?.[path] ?? layer.source)
  }
}

/** Merges layers, later ones winning key by key; `undefined` layers and values are skipped. */
export function mergeLayers (layers: Array<ConfigLayer | undefined>): MergedConfig {
  const values: Record<string, unknown> = {}
  const origins = new Map<string, string>()
  for (const layer of layers) {
    if (layer == null) continue
    mergeInto(values, layer.values, '', layer, origins)
  }
  return { values, origins }
}

/** `['limits', 'maxReservations']` → `limits.maxReservations`; `['listen', 0]` → `listen[0]`. */
export function formatKeyPath (path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out === '' ? String(part) : `.${String(part)}`
  }
  return out === '' ? '(top level)' : out
}

/** The value at `path` inside `values`, if any. */
function valueAt (values: unknown, path: readonly PropertyKey[]): unknown {
  let node: any = values
  for (const part of path) {
    if (node == null || typeof node !== 'object') return undefined
    node = node[part as any]
  }
  return node
}

/** The object schema at `path`, looking through optional/default/pipe wrappers, to list its keys. */
function objectShapeAt (schema: z.ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let node: any = schema
  const unwrap = (): void => {
    for (let i = 0; i < 10; i++) {
      const def = node?._zod?.def
      if (def == null) return
      if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault') node = def.innerType
      else if (def.type === 'pipe') node = def.in
      else return
    }
  }
  unwrap()
  for (const part of path) {
    if (node instanceof z.ZodObject) node = node.shape[String(part)]
    else if (node instanceof z.ZodArray) node = node.element
    else return undefined
    unwrap()
  }
  return node instanceof z.ZodObject ? Object.keys(node.shape) : undefined
}

/** Edit distance, to suggest the key a typo meant. */
function distance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1))
      prev = row[j]
      row[j] = next
    }
  }
  return row[b.length]
}

function describeValue (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (typeof value === 'string') return JSON.stringify(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** The origin of the value at `path`: its own, or that of the nearest ancestor that was set whole. */
function originOf (origins: Map<string, string>, path: readonly PropertyKey[]): string | undefined {
  for (let n = path.length; n > 0; n--) {
    const key = path.slice(0, n).filter(p => typeof p !== 'number').join('.')
    const origin = origins.get(key)
    if (origin != null) return origin
  }
  return undefined
}

/** One line per problem: `limits.maxReservations: must be a positive integer, got -1 (from --max-reservations)`. */
export function describeIssues (schema: z.ZodType, error: z.ZodError, merged: MergedConfig): string[] {
  const lines: string[] = []
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = objectShapeAt(schema, issue.path) ?? []
      for (const key of issue.keys) {
        const path = [...issue.path, key]
        const near = known.map(k => ({ k, d: distance(key, k) })).sort((a, b) => a.d - b.d)[0]
        const hint = near != null && near.d <= Math.max(2, Math.floor(key.length / 4)) ? `did you mean ${near.k}? ` : ''
        const origin = originOf(merged.origins, path)
        lines.push(`${formatKeyPath(path)}: unknown key; ${hint}known keys here: ${known.join(', ')}${origin != null ? ` (from ${origin})` : ''}`)
      }
      continue
    }
    const value = valueAt(merged.values, issue.path)
    const origin = originOf(merged.origins, issue.path)
    // custom reasons quote the value themselves, and zod's own wording for a
    // type mismatch names what it received
    const got = issue.code === 'custom' || issue.message.includes('received') ? '' : `, got ${describeValue(value)}`
    lines.push(`${formatKeyPath(issue.path)}: ${issue.message}${got}${origin != null ? ` (from ${origin})` : ''}`)
  }
  return lines
}

/** Thrown for a config that fails its schema; `issues` has one line per problem. */
export class ConfigValidationError extends InvalidConfigError {
  static override name = 'InvalidConfigError'
  override name = 'InvalidConfigError'
  readonly issues: string[]

  constructor (issues: string[]) {
    super(issues.length === 1 ? issues[0] : `invalid configuration:\n${issues.map(line => `  ${line}`).join('\n')}`)
    this.issues = issues
  }
}

/**
 * Merges the layers and validates the result with `schema`. Throws an
 * `InvalidConfigError` naming every bad key, the reason and its source.
 */
export function parseConfig<S extends z.ZodType> (schema: S, layers: Array<ConfigLayer | undefined>): z.output<S> {
  const merged = mergeLayers(layers)
  const result = schema.safeParse(merged.values)
  if (!result.success) {
    throw new ConfigValidationError(describeIssues(schema, result.error, merged))
  }
  return result.data
}

/*
 * The pieces the node's, the daemon's and the relay's schemas are built from,
 * so that a kind of value is checked, and its error worded, in one place.
 */

/** A positive integer, with the wording the errors use. */
export function positiveInt (): z.ZodInt {
  return z.int({ error: 'must be a positive integer' }).positive({ error: 'must be a positive integer' })
}

/** A positive number (a rate may be fractional). */
export function positiveNumber (): z.ZodNumber {
  return z.number({ error: 'must be a positive number' }).positive({ error: 'must be a positive number' })
}

/** A positive duration in milliseconds (timers take fractions too). */
export function positiveMs (): z.ZodNumber {
  return z.number({ error: 'must be a positive number of milliseconds' }).positive({ error: 'must be a positive number of milliseconds' })
}

/** A libp2p protocol id, such as the DHT's. */
export function protocolId (): z.ZodString {
  return z.string({ error: 'must be a protocol id starting with /, such as /parley/kad/1.0.0' })
    .regex(/^\/\S+$/, { error: 'must be a protocol id starting with /, such as /parley/kad/1.0.0' })
}

/**
 * A table of limits: each of `keys` optional and checked by `value`, any
 * other key refused (a misspelt limit would otherwise leave its default in
 * place, unnoticed).
 */
export function limitTable<K extends string, V extends z.ZodType> (keys: readonly K[], value: V): z.ZodObject<{ [P in K]: z.ZodOptional<V> }, z.core.$strict> {
  return z.strictObject(Object.fromEntries(keys.map(key => [key, value.optional()])) as { [P in K]: z.ZodOptional<V> })
}

/** A string (or Multiaddr) that parses as a multiaddr; the reason names what is wrong with it. */
export function multiaddrString (check?: (ma: Multiaddr) => string | undefined): z.ZodType<string> {
  return z.preprocess(
    value => isMultiaddr(value) ? value.toString() : value,
    z.string({ error: 'must be a multiaddr string such as /ip4/0.0.0.0/tcp/4001' }).superRefine((value, ctx) => {
      let ma: Multiaddr
      try {
        ma = multiaddr(value)
      } catch (err: any) {
        ctx.addIssue({ code: 'custom', message: `"${value}" is not a valid multiaddr (${err.message})` })
        return
      }
      const problem = check?.(ma)
      if (problem != null) ctx.addIssue({ code: 'custom', message: `"${value}" ${problem}` })
    })
  ) as z.ZodType<string>
}

/** A `multiaddrString` check: the address names its peer. */
export function hasPeerId (ma: Multiaddr): string | undefined {
  return ma.getComponents().some(c => c.name === 'p2p') ? undefined : 'must end in /p2p/<peer id>'
}
