import { describe, expect, it } from 'vitest'
import { fileStatusLine, filesTable, progressBar, progressText } from '../../cli/files.js'
import type { FileInfo } from '../../node/files/transfers.js'

const PEER = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const file: FileInfo = { id: '01890a5d-ac96-774b-bcce-b302099a8057', peerId: PEER, direction: 'in', name: 'photo.jpg', type: 'image/jpeg', size: 4 * 1024 * 1024, sha256: 'a'.repeat(64), status: 'pending', bytes: 0, createdAt: 1, updatedAt: 1 }

describe('file lines for the terminal', () => {
  it('show progress as a bar and as text', () => {
    expect(progressBar({ bytes: 1, size: 2 }, 10)).toBe('[#####.....]')
    expect(progressBar({ bytes: 0, size: 0 }, 4)).toBe('[####]')
    expect(progressText({ bytes: 1024 * 1024, size: 4 * 1024 * 1024, rate: 512 * 1024 })).toBe('25% 1.0 MiB of 4.0 MiB, 512 KiB/s')
  })

  it('say how to accept an offer, and where a received file is', () => {
    expect(fileStatusLine(file, new Map([[PEER, 'alice']]))).toBe(`alice offers photo.jpg (4.0 MiB) — accept it with \`parley accept ${file.id}\``)
    expect(fileStatusLine({ ...file, status: 'complete', path: '/data/files/abc' }, new Map([[PEER, 'alice']]))).toBe('received photo.jpg (4.0 MiB) from alice: /data/files/abc')
    expect(fileStatusLine({ ...file, direction: 'out', status: 'failed', reason: 'the file changed since it was offered' }, new Map([[PEER, 'alice']]))).toBe('photo.jpg (4.0 MiB) to alice: failed: the file changed since it was offered')
  })

  it('never print a peer\'s control characters', () => {
    const hostile = { ...file, name: 'evil\u001b[2J\u0007.jpg', reason: 'x\u001b]0;owned\u0007' }
    for (const text of [fileStatusLine(hostile), filesTable([hostile], new Map())]) {
      expect(text.includes('\u001b') || text.includes('\u0007')).toBe(false)
    }
  })
})
