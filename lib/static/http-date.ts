// HTTP dates (RFC 9110, 5.6.7): IMF-fixdate is what we send; a recipient also accepts
// the obsolete RFC 850 and asctime forms. Anything else is not a date, and a
// conditional header holding it is ignored (RFC 9110, 13.1.3/13.1.4), so parsing is
// strict: Date.parse accepts far more (other zones, ISO strings) and reads asctime in
// the machine's time zone.
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']

const IMF = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$/
const RFC850 = /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d\d)-([A-Z][a-z]{2})-(\d\d) (\d\d):(\d\d):(\d\d) GMT$/
const ASCTIME = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})$/

/** Seconds since the epoch of an HTTP date, or undefined for anything that is not one. */
export function parseHttpDate(value: string): number | undefined {
  let m = IMF.exec(value)
  if (m !== null) return build(Number(m[4]), m[3]!, Number(m[2]), m[5]!, m[6]!, m[7]!)
  m = RFC850.exec(value)
  if (m !== null) {
    // A two-digit year more than 50 years in the future is in the past century (RFC 9110, 5.6.7).
    const yy = Number(m[4])
    const thisYear = new Date().getUTCFullYear()
    let year = 2000 + yy
    if (year > thisYear + 50) year -= 100
    return build(year, m[3]!, Number(m[2]), m[5]!, m[6]!, m[7]!)
  }
  m = ASCTIME.exec(value)
  if (m !== null) return build(Number(m[7]), m[2]!, Number(m[3]!.trim()), m[4]!, m[5]!, m[6]!)
  return undefined
}

function build(year: number, month: string, day: number, hh: string, mm: string, ss: string): number | undefined {
  const mon = MONTHS.indexOf(month)
  const h = Number(hh)
  const mi = Number(mm)
  const s = Number(ss)
  if (mon < 0 || day < 1 || day > 31 || h > 23 || mi > 59 || s > 60) return undefined
  const ms = Date.UTC(year, mon, day, h, mi, Math.min(s, 59))
  // 31 Feb and the like roll over in Date.UTC: not a date.
  if (new Date(ms).getUTCDate() !== day) return undefined
  return ms / 1000
}

/** IMF-fixdate of `seconds` since the epoch (whole seconds). */
export function formatHttpDate(seconds: number): string {
  const d = new Date(Math.floor(seconds) * 1000)
  const two = (n: number) => String(n).padStart(2, '0')
  return (
    `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} GMT`
  )
}

