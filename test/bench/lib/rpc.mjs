// Runs bench roles in child processes (one process where a real deployment has
// one: a node, a relay) and talks to them over the IPC channel. Only the
// control messages go over IPC; everything measured happens inside a worker.
import { fork } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
export const WORKER = join(HERE, '..', 'worker.mjs')

/** Every worker started and not yet stopped, so that a failed run leaves none behind. */
const live = new Set()

/**
 * Starts `worker.mjs` as a child process on this Node (the project's pinned
 * one when started through npm) and returns a handle to call its commands.
 */
export async function spawnWorker (label, { execArgv = [], env = {} } = {}) {
  const started = performance.now()
  const child = fork(WORKER, [label], {
    execArgv: ['--expose-gc', ...execArgv],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  let log = ''
  const keep = (chunk) => { log = (log + chunk).slice(-8000) }
  child.stdout.setEncoding('utf8').on('data', keep)
  child.stderr.setEncoding('utf8').on('data', keep)
  if (process.env.PARLEY_BENCH_STDERR != null) child.stderr.on('data', chunk => { process.stderr.write(chunk) })
  const calls = new Map()
  let seq = 0
  let readyAt
  const ready = new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      if (msg?.ready === true) {
        readyAt = performance.now()
        child.off('message', onMessage)
        resolve()
      }
    }
    child.on('message', onMessage)
    child.once('exit', (code, signal) => reject(new Error(`worker ${label} exited before it was ready (${code ?? signal})\n${log}`)))
  })
  child.on('message', (msg) => {
    if (msg?.id == null) return
    const call = calls.get(msg.id)
    if (call == null) return
    calls.delete(msg.id)
    clearTimeout(call.timer)
    if (msg.ok) call.resolve(msg.result)
    else call.reject(new Error(`${label}: ${msg.error}`))
  })
  const exited = new Promise(resolve => child.once('exit', (code, signal) => {
    live.delete(handle)
    for (const call of calls.values()) {
      clearTimeout(call.timer)
      call.reject(new Error(`worker ${label} exited (${code ?? signal}) during a call\n${log}`))
    }
    calls.clear()
    resolve({ code, signal })
  }))

  const handle = {
    label,
    pid: child.pid,
    /** ms from fork() until the worker loaded its modules and said it is ready. */
    get spawnMs () { return readyAt - started },
    log: () => log,
    exited,
    async call (cmd, args = {}, { timeout = 120_000 } = {}) {
      const id = ++seq
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          calls.delete(id)
          reject(new Error(`${label}: ${cmd} took over ${timeout} ms`))
        }, timeout)
        calls.set(id, { resolve, reject, timer })
        child.send({ id, cmd, args })
      })
    },
    /** Asks the worker to stop what it runs and exit; kills it if it does not within 10 s. */
    async stop () {
      if (child.exitCode != null || child.signalCode != null) return
      const timer = setTimeout(() => { child.kill('SIGKILL') }, 10_000)
      child.send({ id: 0, cmd: 'exit' })
      await exited
      clearTimeout(timer)
    }
  }
  live.add(handle)
  await ready
  return handle
}

/** Kills every worker still running (after a failure). */
export async function killAll () {
  await Promise.all([...live].map(async w => w.stop()))
}

/**
 * Worker side: answers `{ id, cmd, args }` with `{ id, ok, result | error }`
 * from `handlers[cmd](args)`. `exit` runs `onExit` and ends the process.
 */
export function serve (handlers, onExit) {
  process.on('message', async ({ id, cmd, args }) => {
    if (cmd === 'exit') {
      try { await onExit() } finally { process.exit(0) }
      return
    }
    try {
      const handler = handlers[cmd]
      if (handler == null) throw new Error(`no such command: ${cmd}`)
      const result = await handler(args ?? {})
      process.send({ id, ok: true, result })
    } catch (err) {
      process.send({ id, ok: false, error: err?.stack ?? String(err) })
    }
  })
  // the parent went away: do not linger
  process.on('disconnect', () => { Promise.resolve(onExit()).finally(() => process.exit(0)) })
  process.send({ ready: true })
}
