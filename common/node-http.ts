/**
 * node:http for parley's HTTP servers, loaded with `require`: an ESM import of
 * node:http makes Node 24 evaluate the module's lazy WebSocket, CloseEvent and
 * MessageEvent exports, and with them undici, which costs a running node
 * ~13 MB of memory for code it never uses. (rolldown.config.mjs does the same
 * for the dependencies bundled into the `parley` command.)
 */
import { createRequire } from 'node:module'

const http: typeof import('node:http') = createRequire(import.meta.url)('node:http')

export const { createServer } = http
