/**
 * This node's invite, as a link to copy and as a QR code to scan (lean-qr:
 * an SVG path drawn by the app itself, so nothing is inlined against the CSP).
 */
import { useSignal } from '@preact/signals'
import { useEffect } from 'preact/hooks'
import { generate } from 'lean-qr'
import { toSvgPath } from 'lean-qr/extras/svg'
import { call } from '../api.js'

function QrCode ({ text }: { text: string }) {
  let code
  try {
    code = generate(text)
  } catch {
    return <p class='notice'>This invite is too long for a QR code: copy the link instead.</p>
  }
  return (
    <svg class='qr' viewBox={`-4 -4 ${code.size + 8} ${code.size + 8}`} role='img' aria-label='QR code of your invite link'>
      <rect x='-4' y='-4' width={code.size + 8} height={code.size + 8} class='qr-bg' />
      <path d={toSvgPath(code)} class='qr-fg' />
    </svg>
  )
}

export function Invite () {
  const invite = useSignal('')
  const error = useSignal('')
  const copied = useSignal('')
  useEffect(() => {
    call('GET /v1/invite').then(r => { invite.value = r.invite }, err => { error.value = (err as Error).message })
  }, [])
  const copy = (): void => {
    navigator.clipboard.writeText(invite.value).then(() => { copied.value = 'Copied.' }, () => { copied.value = 'Could not copy: select the link and copy it.' })
  }
  return (
    <section class='page' aria-labelledby='invite-title'>
      <h2 id='invite-title'>Your invite</h2>
      <p>Give this to someone so that they can add you (it says who you are and where to find you; it holds no secret).</p>
      {error.value !== '' && <p class='error' role='alert'>{error.value}</p>}
      {invite.value !== '' && (
        <>
          <label for='invite-link'>Invite link</label>
          <textarea id='invite-link' class='invite' readOnly rows={4} value={invite.value} onFocus={e => { e.currentTarget.select() }} />
          <p><button type='button' onClick={copy}>Copy invite link</button> <span role='status'>{copied.value}</span></p>
          <QrCode text={invite.value} />
        </>
      )}
    </section>
  )
}
