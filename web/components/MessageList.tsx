/**
 * A conversation's messages, the oldest at the top. Scrolling to the top (or
 * pressing "Earlier messages") loads the page before; the list stays where
 * the reader was. New messages scroll into view when the reader is at the
 * bottom already. The list is a `log`: screen readers announce what is added.
 */
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks'
import { useSignal } from '@preact/signals'
import { MessageBody } from './MessageBody.js'

export interface Line {
  id: string
  mine: boolean
  /** Who wrote it, as shown (group conversations only). */
  author?: string
  body: string
  contentType: string
  at: number
  /** Outgoing only: sending, stored, delivered, or failed with why. */
  state?: { label: 'sending' | 'stored' | 'delivered' | 'failed', reason?: string, detail?: string }
  path?: string
}

const time = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' })

export function MessageList ({ lines, hasMore, loadOlder, label }: { lines: Line[], hasMore: boolean, loadOlder: () => Promise<void>, label: string }) {
  const scroller = useRef<HTMLDivElement>(null)
  const sentinel = useRef<HTMLButtonElement>(null)
  const loading = useSignal(false)
  /** Distance from the bottom before the last change, to keep the reader's place. */
  const fromBottom = useRef(0)
  const count = useRef(0)

  const older = async (): Promise<void> => {
    if (loading.value || !hasMore) return
    loading.value = true
    try {
      await loadOlder()
    } finally {
      loading.value = false
    }
  }

  useLayoutEffect(() => {
    const el = scroller.current
    if (el == null) return
    const grewAtTop = count.current > 0 && lines.length > count.current && fromBottom.current > 40
    if (count.current === 0 || !grewAtTop) {
      // first page, or a new message with the reader near the bottom
      if (fromBottom.current <= 40 || count.current === 0) el.scrollTop = el.scrollHeight
    } else {
      el.scrollTop = el.scrollHeight - el.clientHeight - fromBottom.current
    }
    count.current = lines.length
  }, [lines])

  useEffect(() => {
    const el = scroller.current
    const top = sentinel.current
    if (el == null || top == null) return
    const observer = new IntersectionObserver(entries => {
      if (entries.some(e => e.isIntersecting)) older().catch(() => {})
    }, { root: el })
    observer.observe(top)
    return () => { observer.disconnect() }
  }, [hasMore, lines.length > 0])

  const onScroll = (): void => {
    const el = scroller.current
    if (el != null) fromBottom.current = el.scrollHeight - el.clientHeight - el.scrollTop
  }

  return (
    <div class='messages' ref={scroller} onScroll={onScroll}>
      {hasMore
        ? <button type='button' class='older' ref={sentinel} onClick={() => { older().catch(() => {}) }} disabled={loading.value}>{loading.value ? 'Loading…' : 'Earlier messages'}</button>
        : lines.length > 0 && <p class='start'>Start of the conversation</p>}
      <div role='log' aria-label={label}>
        <ol>
          {lines.map(line => <Message key={line.id} line={line} />)}
        </ol>
      </div>
    </div>
  )
}

function Message ({ line }: { line: Line }) {
  const state = line.state
  return (
    <li class={line.mine ? 'out' : 'in'}>
      {line.author != null && <span class='author'>{line.author}</span>}
      {line.contentType !== 'text/plain' && <span class='kind'>({line.contentType})</span>}
      <MessageBody body={line.body} />
      <span class='meta'>
        <time dateTime={new Date(line.at).toISOString()}>{time.format(line.at)}</time>
        {line.path != null && <span class='path'> · {line.path}</span>}
        {state != null && (
          <span class={`state ${state.label}`}>
            {' · '}{state.label}{state.detail != null ? ` ${state.detail}` : ''}{state.reason != null ? `: ${state.reason}` : ''}
          </span>
        )}
      </span>
    </li>
  )
}
