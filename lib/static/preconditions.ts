// Conditional requests (RFC 9110, 13.2.2), evaluated in the RFC's order for a GET or HEAD
// of a file that exists. Each header is ignored where the RFC says so: If-Unmodified-Since
// beside If-Match, If-Modified-Since beside If-None-Match or on another method, a date that
// is not an HTTP date.
import { parseEntityTags, strongMatch, weakMatch } from './entity-tag'
import { parseHttpDate } from './http-date'

/** What a request's headers say about the file it names. */
export interface Validators {
  /** The strong ETag, quotes included. */
  etag: string
  /** Last-Modified, whole seconds since the epoch (what the header says). */
  lastModified: number
}

/** Request headers as Node gives them (lower-case names). */
export type RequestHeaders = Record<string, string | string[] | undefined>

/** 'send' (go on: ranges next), 304 Not Modified, or 412 Precondition Failed. */
export type PreconditionOutcome = 'send' | 304 | 412

function header(headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

export function evaluatePreconditions(method: string, headers: RequestHeaders, v: Validators): PreconditionOutcome {
  const safe = method === 'GET' || method === 'HEAD'
  const ifMatch = header(headers, 'if-match')
  if (ifMatch !== undefined) {
    // Step 1: the current representation must be one of the tags (strong comparison).
    const tags = parseEntityTags(ifMatch)
    if (tags !== '*' && !(tags ?? []).some((t) => strongMatch(t, v.etag))) return 412
  } else {
    // Step 2.
    const since = dateHeader(headers, 'if-unmodified-since')
    if (since !== undefined && v.lastModified > since) return 412
  }
  const ifNoneMatch = header(headers, 'if-none-match')
  if (ifNoneMatch !== undefined) {
    // Step 3: weak comparison; a match is "not modified" for GET and HEAD.
    const tags = parseEntityTags(ifNoneMatch)
    if (tags === '*' || (tags ?? []).some((t) => weakMatch(t, v.etag))) return safe ? 304 : 412
  } else if (safe) {
    // Step 4.
    const since = dateHeader(headers, 'if-modified-since')
    if (since !== undefined && v.lastModified <= since) return 304
  }
  return 'send'
}

/**
 * Whether a Range request's If-Range lets the range through (RFC 9110, 13.1.5): an
 * entity tag by strong comparison, or a date equal to Last-Modified when that is a
 * strong validator (at least a second older than `now`, 8.8.2.2). No If-Range: true.
 */
export function ifRangeAllows(headers: RequestHeaders, v: Validators, now: number): boolean {
  const value = header(headers, 'if-range')?.trim()
  if (value === undefined) return true
  if (value.startsWith('"') || value.startsWith('W/')) {
    const tags = parseEntityTags(value)
    return tags !== undefined && tags !== '*' && tags.length === 1 && strongMatch(tags[0]!, v.etag)
  }
  const date = parseHttpDate(value)
  return date !== undefined && date === v.lastModified && v.lastModified <= Math.floor(now) - 1
}

function dateHeader(headers: RequestHeaders, name: string): number | undefined {
  const value = header(headers, name)
  return value === undefined ? undefined : parseHttpDate(value.trim())
}
