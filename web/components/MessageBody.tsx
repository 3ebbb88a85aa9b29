/**
 * A message body as text. Bodies come from other people: never HTML. A link
 * is made a link only for http(s) URLs, and opens without telling the site
 * where it came from (rel="noopener noreferrer"); everything else is text.
 */
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/g
/** Punctuation that ends a sentence rather than the link: "see https://x.org." */
const TRAILING = /[.,;:!?)\]}]+$/

export function MessageBody ({ body }: { body: string }) {
  const parts: Array<string | { href: string, text: string }> = []
  let at = 0
  for (const match of body.matchAll(URL_PATTERN)) {
    const text = match[0].replace(TRAILING, '')
    let href: string | null = null
    try {
      const url = new URL(text)
      if (url.protocol === 'http:' || url.protocol === 'https:') href = url.href
    } catch {}
    if (href == null) continue
    parts.push(body.slice(at, match.index), { href, text })
    at = match.index + text.length
  }
  parts.push(body.slice(at))
  return (
    <p class='body'>
      {parts.map((part, i) => typeof part === 'string'
        ? part
        : <a key={i} href={part.href} target='_blank' rel='noopener noreferrer'>{part.text}</a>)}
    </p>
  )
}
