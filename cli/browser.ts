/**
 * Opens a URL in the user's default browser: `xdg-open` (Linux and the other
 * Unixes), `open` (macOS), `start` through cmd (Windows), or the command in
 * PARLEY_BROWSER. Spawned without a shell, the URL as one argument; and only
 * a login URL of the daemon's own shape is ever opened, so that nothing in it
 * could be taken as an option or, by cmd, as a command.
 */
import { spawn } from 'node:child_process'

/** How long a launcher may run before it counts as having started the browser (some run the browser itself, in the foreground). */
const LAUNCHER_GRACE = 10_000

/** `http://<loopback>:<port>/login?token=<base64url>`: nothing else is handed to a launcher. */
const LOGIN_URL = /^http:\/\/(?:127\.0\.0\.1|localhost|\[::1\]):\d{1,5}\/login\?token=[A-Za-z0-9_-]{1,128}$/

export function isLoginUrl (url: string): boolean {
  return LOGIN_URL.test(url)
}

/** The command and its arguments that open `url` on this platform (or with PARLEY_BROWSER). */
export function browserCommand (url: string, platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): { command: string, args: string[] } {
  const custom = env.PARLEY_BROWSER
  if (custom != null && custom !== '') return { command: custom, args: [url] }
  if (platform === 'darwin') return { command: 'open', args: [url] }
  // start's first quoted argument is the window title: an empty one, so the URL is not taken for it
  if (platform === 'win32') return { command: 'cmd', args: ['/d', '/c', 'start', '""', url] }
  return { command: 'xdg-open', args: [url] }
}

/**
 * Starts the browser on `url`: undefined once the launcher exited 0 (or is
 * still running after a grace period: it ran the browser itself), else why
 * not.
 */
export async function openInBrowser (url: string): Promise<string | undefined> {
  if (!isLoginUrl(url)) return `the daemon gave a URL that is not a login link: ${JSON.stringify(url.slice(0, 200))}`
  const { command, args } = browserCommand(url)
  return new Promise(resolve => {
    const child = spawn(command, args, { stdio: 'ignore', detached: process.platform !== 'win32', windowsVerbatimArguments: process.platform === 'win32' })
    const timer = setTimeout(() => {
      child.unref()
      resolve(undefined)
    }, LAUNCHER_GRACE)
    timer.unref()
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      resolve(`${command} could not be started (${err.code ?? err.message})`)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve(code === 0 ? undefined : `${command} failed (${signal ?? `exit code ${String(code)}`})`)
    })
  })
}
