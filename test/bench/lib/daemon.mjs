// The `parley node` daemon as a user runs it: the `parley` command (the
// launcher, with the Node.js flags it gives the daemon) in its own process,
// with its own data dir.
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const COMMAND = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'parley')

/**
 * Starts `parley node` on loopback (TCP and WebRTC) with a reservation on
 * `relay`, and resolves once it prints its addresses (the reservation is held
 * by then): its pid (the launcher execs Node.js, so it is the daemon's), how
 * long that took from the spawn, and `stop()`. `nodeFlags` go in NODE_OPTIONS,
 * as a user would give them.
 */
export async function startDaemon ({ dataDir, relay, nodeFlags = [], timeout = 30_000 }) {
  const started = performance.now()
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_') && k !== 'NODE_OPTIONS'))
  if (nodeFlags.length > 0) env.NODE_OPTIONS = nodeFlags.join(' ')
  const child = spawn(COMMAND, ['node', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/webrtc', '--relay', relay], {
    // WebRTC on 127.0.0.1 like everything else here (ICE offers every interface by default)
    env: { ...env, PARLEY_HOME: dataDir, PARLEY_ICE_BIND_ADDRESS: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8').on('data', chunk => { out += chunk })
  const exited = new Promise(resolve => child.once('exit', resolve))
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`parley node not reachable through its relay within ${timeout} ms:\n${out}`)) }, timeout)
    child.stdout.on('data', chunk => {
      out += chunk
      if (out.includes('/p2p-circuit/p2p/')) { clearTimeout(timer); resolve() }
    })
    exited.then(code => { clearTimeout(timer); reject(new Error(`parley node exited (${code}):\n${out}`)) })
  })
  return {
    pid: child.pid,
    readyMs: performance.now() - started,
    async stop () {
      child.kill('SIGTERM')
      await exited
    }
  }
}
