/**
 * The composer: a textbox labelled "Message"; Enter sends, Shift+Enter is a
 * new line (and Enter that ends an input method's composition, as for CJK
 * text, only ends it). A message the daemon refuses stays in the box, with
 * the daemon's reason read out.
 */
import { useSignal } from '@preact/signals'
import { useRef } from 'preact/hooks'
import type { TargetedKeyboardEvent } from 'preact'

export function Composer ({ onSend, disabled }: { onSend: (body: string) => Promise<void>, disabled?: string }) {
  const text = useSignal('')
  const error = useSignal('')
  const busy = useSignal(false)
  const box = useRef<HTMLTextAreaElement>(null)

  const send = async (): Promise<void> => {
    const body = text.value
    if (body.trim() === '' || busy.value) return
    busy.value = true
    error.value = ''
    try {
      await onSend(body)
      text.value = ''
    } catch (err) {
      error.value = `Not sent: ${(err as Error).message}`
    } finally {
      busy.value = false
      box.current?.focus()
    }
  }
  const onKeyDown = (e: TargetedKeyboardEvent<HTMLTextAreaElement>): void => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault()
      send().catch(() => {})
    }
  }
  const onSubmit = (e: Event): void => {
    e.preventDefault()
    send().catch(() => {})
  }
  return (
    <form class='composer' onSubmit={onSubmit}>
      <label for='composer-text' class='sr-only'>Message</label>
      <textarea
        id='composer-text'
        ref={box}
        rows={2}
        placeholder={disabled ?? 'Message (Enter sends, Shift+Enter new line)'}
        disabled={disabled != null}
        value={text.value}
        onInput={e => { text.value = e.currentTarget.value }}
        onKeyDown={onKeyDown}
        aria-describedby='composer-error'
      />
      <button type='submit' disabled={disabled != null || busy.value}>Send</button>
      <p id='composer-error' class='error' role='alert'>{error.value}</p>
    </form>
  )
}
