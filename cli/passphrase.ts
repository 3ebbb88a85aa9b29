/**
 * A backup's passphrase: from `--passphrase-file`, else PARLEY_PASSPHRASE,
 * else typed on the terminal without echo (twice when it sets one).
 */
import { open } from 'node:fs/promises'

/** A passphrase file is a line of text, not a key file: anything longer is a mistake. */
const MAX_PASSPHRASE_FILE_BYTES = 4096

export interface PassphraseSource {
  passphraseFile?: string
  env?: NodeJS.ProcessEnv
  /** Ask twice and compare (when the passphrase is being chosen). */
  confirm: boolean
}

async function readPassphraseFile (path: string): Promise<string> {
  const handle = await open(path, 'r')
  try {
    const buffer = Buffer.alloc(MAX_PASSPHRASE_FILE_BYTES + 1)
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0)
    if (bytesRead > MAX_PASSPHRASE_FILE_BYTES) throw new Error(`the passphrase file ${path} is over ${MAX_PASSPHRASE_FILE_BYTES} bytes: it should hold one line`)
    // the line's end is not part of the passphrase (echo "…" > file adds one)
    return buffer.subarray(0, bytesRead).toString('utf8').replace(/\r?\n$/, '')
  } finally {
    await handle.close()
  }
}

/** Reads a line from the terminal with echo off; Ctrl-C or Ctrl-D aborts. */
async function promptHidden (prompt: string): Promise<string> {
  const input = process.stdin
  // echo off before the prompt shows: keys typed as soon as it appears are not echoed
  input.setRawMode(true)
  process.stderr.write(prompt)
  input.resume()
  input.setEncoding('utf8')
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = ''
      const onData = (chunk: string): void => {
        for (const char of chunk) {
          if (char === '\r' || char === '\n') {
            input.off('data', onData)
            resolve(typed)
            return
          }
          if (char === '\u0003' || char === '\u0004') {
            input.off('data', onData)
            reject(new Error('no passphrase given'))
            return
          }
          if (char === '\u007f' || char === '\b') typed = [...typed].slice(0, -1).join('')
          else if (char >= ' ') typed += char
        }
      }
      input.on('data', onData)
    })
  } finally {
    input.setRawMode(false)
    input.pause()
    process.stderr.write('\n')
  }
}

/**
 * The passphrase, never empty.
 *
 * @throws Error when there is none to read (no file, no variable, no terminal), it is empty, or the two typed differ
 */
export async function readPassphrase (source: PassphraseSource): Promise<string> {
  const env = source.env ?? process.env
  let passphrase: string
  if (source.passphraseFile != null) {
    passphrase = await readPassphraseFile(source.passphraseFile)
  } else if (env.PARLEY_PASSPHRASE != null) {
    passphrase = env.PARLEY_PASSPHRASE
  } else if (process.stdin.isTTY) {
    passphrase = await promptHidden('passphrase: ')
    if (passphrase !== '' && source.confirm && await promptHidden('passphrase again: ') !== passphrase) {
      throw new Error('the two passphrases differ; nothing was written')
    }
  } else {
    throw new Error('no passphrase: stdin is not a terminal to type it on; give --passphrase-file <file> or set PARLEY_PASSPHRASE')
  }
  if (passphrase === '') throw new Error('the passphrase is empty; a backup needs one')
  return passphrase
}
