import { randomBytes } from 'node:crypto'
import { mkdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CONFIG_FILE } from '../common/config.js'
import { loadIdentity } from '../common/identity.js'
import { API_FILE } from './api/file.js'
import { startApiServer } from './api/server.js'
import { DEFAULT_CONFIG_FILE, loadDaemonConfig, toNodeConfig } from './config.js'
import { createNode } from '../node/node.js'
import { ListenError, checkListenPorts } from './listen-check.js'
import type { DaemonFlags } from './config.js'
import type { ParleyNode } from '../node/node.js'
import type { ApiServer } from './api/server.js'
import type { ApiFile } from './api/file.js'

/** Creates the data dir, identity and a config file with the defaults, if missing. */
export async function initDataDir (dataDir: string): Promise<{ created: boolean }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await loadIdentity(dataDir)
  try {
    await writeFile(join(dataDir, CONFIG_FILE), JSON.stringify(DEFAULT_CONFIG_FILE, null, 2) + '\n', { flag: 'wx', mode: 0o600 })
    return { created: true }
  } catch (err: any) {
    if (err.code === 'EEXIST') return { created: false }
    throw err
  }
}

export interface Daemon {
  node: ParleyNode
  api: ApiServer
  stop(): Promise<void>
}

/**
 * Runs the user's node with its local API: loads the config (file, env,
 * flags), starts the node, serves the API on 127.0.0.1 and writes the API
 * address and a fresh token to `<dataDir>/api.json` (mode 0600).
 */
export async function startDaemon (dataDir: string, flags: DaemonFlags): Promise<Daemon> {
  await initDataDir(dataDir)
  const config = await loadDaemonConfig(dataDir, flags)
  // a port in use is said plainly here, before libp2p would skip it quietly
  await checkListenPorts(config.listen ?? [])
  const node = await createNode(toNodeConfig(dataDir, config))
  let api: ApiServer
  try {
    api = await startApiServer(node, { port: config.apiPort, token: randomBytes(32).toString('hex') })
  } catch (err: any) {
    await node.stop()
    if (err.code === 'EADDRINUSE') {
      throw new ListenError(`the API port ${String(config.apiPort)} on 127.0.0.1 is already in use (another parley node?): choose another with --api-port <n> (0 for any), or stop the other one`)
    }
    throw err
  }
  const apiFile = join(dataDir, API_FILE)
  const content: ApiFile = { url: api.url, token: api.token, pid: process.pid }
  // written whole or not at all: a CLI never reads half a token
  await writeFile(`${apiFile}.tmp`, JSON.stringify(content) + '\n', { mode: 0o600 })
  await rename(`${apiFile}.tmp`, apiFile)
  return {
    node,
    api,
    stop: async () => {
      await rm(apiFile, { force: true })
      await api.close()
      await node.stop()
    }
  }
}
