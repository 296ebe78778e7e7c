// Entity tags (RFC 9110, 8.8.3): what we make for a file, how a request's list of them
// is read, and the two comparisons. A file's tag is strong: it is made from the file's
// identity (device, inode), its size and its change to the nanosecond, so two different
// contents of one file never share it (unlike a weak tag from size and mtime in whole
// seconds, which If-Match and If-Range may not use at all).

/** One entity tag from a request: its opaque part (quotes included) and whether it is weak. */
export interface EntityTag {
  weak: boolean
  opaque: string
}

/** The strong tag of one version of a file (a variant's own file gives a tag of its own). */
export function fileEntityTag(dev: bigint, ino: bigint, size: bigint, mtimeNs: bigint): string {
  return `"${dev.toString(36)}-${ino.toString(36)}-${size.toString(36)}-${mtimeNs.toString(36)}"`
}

// etagc = "!" / %x23-7E / obs-text: any visible byte but DQUOTE, and bytes >= 0x80.
const TAG = /\s*(W\/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)/y

/**
 * The tags of an If-Match / If-None-Match value: `'*'`, a list, or undefined when the
 * value is not one (a malformed list matches nothing, as no tag of ours can be in it).
 */
export function parseEntityTags(value: string): '*' | EntityTag[] | undefined {
  if (value.trim() === '*') return '*'
  const tags: EntityTag[] = []
  TAG.lastIndex = 0
  let at = 0
  while (at < value.length) {
    // Empty list elements (", ,") are allowed by the list rule (RFC 9110, 5.6.1).
    const skip = /[\s,]*/y
    skip.lastIndex = at
    skip.exec(value)
    at = skip.lastIndex
    if (at >= value.length) break
    TAG.lastIndex = at
    const m = TAG.exec(value)
    if (m === null) return undefined
    tags.push({ weak: m[1] !== undefined, opaque: m[2]! })
    at = TAG.lastIndex
  }
  return tags
}

/** Strong comparison: both strong and the same (If-Match, If-Range). */
export function strongMatch(tag: EntityTag, current: string): boolean {
  return !tag.weak && tag.opaque === current
}

/** Weak comparison: the same opaque part, weak or not (If-None-Match). */
export function weakMatch(tag: EntityTag, current: string): boolean {
  return tag.opaque === current
}
