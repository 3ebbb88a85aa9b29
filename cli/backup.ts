/**
 * `parley export` and `parley import`: the node's identity, contacts, history,
 * outbox, block list and config in one passphrase-encrypted file
 * (docs/backup-format.md).
 */
import { rename, rm, writeFile } from 'node:fs/promises'
import { defaultDataDir } from '../daemon/config.js'
import { readPassphrase } from './passphrase.js'
import type { Command } from 'commander'

function dataDirOf (command: Command): string {
  const opts = command.optsWithGlobals() as { dataDir?: string }
  return opts.dataDir ?? defaultDataDir()
}

export function backupCommands (program: Command): void {
  program.command('export')
    .description('write this node\'s identity, contacts, history, outbox, block list and config to one passphrase-encrypted file (works while the node runs)')
    .argument('<file>', 'the backup file to write')
    .option('--passphrase-file <file>', 'read the passphrase from this file\'s first line (else env PARLEY_PASSPHRASE, else it is asked twice on the terminal)')
    .option('--force', 'overwrite <file> if it exists')
    .addHelpText('after', '\nNot included: the peer store and DHT records (rebuilt), the API token. Restore with `parley import`.')
    .action(async (file: string, opts: { passphraseFile?: string, force?: boolean }, command: Command) => {
      const dataDir = dataDirOf(command)
      // loaded here: only these commands need SQLite and the ciphers
      const { archiveDataDir } = await import('../daemon/backup/data-dir.js')
      const { sealBackup } = await import('../daemon/backup/format.js')
      if (opts.force !== true) {
        await writeFile(file, '', { flag: 'wx', mode: 0o600 }).catch((err: NodeJS.ErrnoException) => {
          throw new Error(err.code === 'EEXIST' ? `${file} exists; give --force to overwrite it` : `cannot write ${file}: ${err.message}`)
        })
      }
      const temp = `${file}.tmp-${process.pid}`
      try {
        const passphrase = await readPassphrase({ passphraseFile: opts.passphraseFile, confirm: true })
        const { archive, peerId, files } = await archiveDataDir(dataDir)
        const sealed = await sealBackup(archive, passphrase)
        // whole or not at all: a crash never leaves half a backup under the name
        await writeFile(temp, sealed, { mode: 0o600 })
        await rename(temp, file)
        console.log(`exported ${peerId} (${files.join(', ')}) to ${file}: ${sealed.length} bytes`)
      } catch (err) {
        await rm(temp, { force: true })
        if (opts.force !== true) await rm(file, { force: true })
        throw err
      }
    })

  program.command('import')
    .description('restore a node from a `parley export` file into the data dir (the node must be stopped)')
    .argument('<file>', 'the backup file')
    .option('--passphrase-file <file>', 'read the passphrase from this file\'s first line (else env PARLEY_PASSPHRASE, else it is asked on the terminal)')
    .option('--force', 'replace the node already in the data dir (its identity is lost unless exported)')
    .action(async (file: string, opts: { passphraseFile?: string, force?: boolean }, command: Command) => {
      const dataDir = dataDirOf(command)
      const { checkRestoreTarget, restoreDataDir } = await import('../daemon/backup/data-dir.js')
      const { checkBackupHeader, openBackup, readBackupFile, unpackArchive } = await import('../daemon/backup/format.js')
      const force = opts.force === true
      await checkRestoreTarget(dataDir, force)
      const bytes = await readBackupFile(file).catch((err: Error) => {
        throw new Error(`cannot read ${file}: ${err.message}`)
      })
      try {
        // before asking for the passphrase: a file that is no backup needs none
        checkBackupHeader(bytes)
      } catch (err: any) {
        throw new Error(`cannot import ${file}: ${err.message as string}; nothing was written`)
      }
      const passphrase = await readPassphrase({ passphraseFile: opts.passphraseFile, confirm: false })
      let archive
      try {
        archive = unpackArchive(await openBackup(bytes, passphrase))
      } catch (err: any) {
        throw new Error(`cannot import ${file}: ${err.message as string}; nothing was written`)
      }
      const { peerId, files } = await restoreDataDir(dataDir, archive, { force })
      console.log(`imported ${peerId} (${files.join(', ')}) into ${dataDir}, exported ${archive.manifest.createdAt}; start it with \`parley node\``)
    })
}
