// POSIX getopt(3) with GNU's argument permutation, as glibc does it, so that a command
// line means to this example exactly what it means to a C program (the kernel's
// msg_zerocopy selftest): options and operands in any order, grouped flags (-4z), an
// option's value attached or next (-t2, -t 2; a value may start with '-'), "--" ends
// the options, and POSIXLY_CORRECT stops them at the first operand.

/** One option as getopt returned it: its letter and, for options that take one, its value. */
export interface ParsedOption {
  /** The option letter; '?' for an unknown option or a missing value (already reported). */
  letter: string
  value?: string
}

export interface GetoptResult {
  /** The options in command-line order, as successive getopt() calls return them. */
  options: ParsedOption[]
  /** The operands (non-options), in order: where GNU getopt permutes them to, argv's tail. */
  operands: string[]
  /** argv[argc - 1] after GNU's permutation (the last operand, or else the last option word). */
  last: string | undefined
}

/**
 * Parses `args` (argv without argv[0]) by `optstring` ("46c:C:..."; a ':' after a letter
 * means it takes a value). Reports an unknown option or a missing value through `warn`
 * in glibc's words and goes on, as a C program's `getopt` loop that ignores '?' does.
 */
export function getopt(args: readonly string[], optstring: string, warn: (message: string) => void): GetoptResult {
  const options: ParsedOption[] = []
  const operands: string[] = []
  const optionWords: string[] = []
  const posixly = process.env.POSIXLY_CORRECT !== undefined || optstring.startsWith('+')
  const takesValue = (c: string): boolean | undefined => {
    const at = optstring.indexOf(c)
    if (c === ':' || c === '+' || at < 0) return undefined
    return optstring[at + 1] === ':'
  }
  let i = 0
  for (; i < args.length; i++) {
    const word = args[i]!
    if (word === '--') {
      optionWords.push(word)
      i++
      break
    }
    if (!word.startsWith('-') || word === '-') {
      if (posixly) break
      operands.push(word)
      continue
    }
    optionWords.push(word)
    for (let j = 1; j < word.length; j++) {
      const c = word[j]!
      const value = takesValue(c)
      if (value === undefined) {
        warn(`invalid option -- '${c}'`)
        options.push({ letter: '?' })
      } else if (!value) {
        options.push({ letter: c })
      } else if (j + 1 < word.length) {
        options.push({ letter: c, value: word.slice(j + 1) })
        break
      } else if (i + 1 < args.length) {
        options.push({ letter: c, value: args[++i]! })
        optionWords.push(args[i]!)
        break
      } else {
        warn(`option requires an argument -- '${c}'`)
        options.push({ letter: '?' })
      }
    }
  }
  for (; i < args.length; i++) operands.push(args[i]!)
  return { options, operands, last: operands.at(-1) ?? optionWords.at(-1) }
}

/**
 * C's strtoul/strtol: leading blanks, an optional sign, digits in `base` (0: a "0x"
 * prefix means 16, a leading "0" means 8, else 10), stopping at the first other
 * character; no digits give 0. The result is cut to a 32-bit int, as the selftest
 * stores it.
 */
export function strtoi(text: string, base = 0): number {
  const m = /^[ \t\n\v\f\r]*([+-]?)(.*)$/s.exec(text)!
  let rest = m[2]!
  if ((base === 0 || base === 16) && /^0[xX][0-9a-fA-F]/.test(rest)) {
    rest = rest.slice(2)
    base = 16
  } else if (base === 0) {
    base = rest.startsWith('0') ? 8 : 10
  }
  let value = 0n
  for (const ch of rest) {
    const d = parseInt(ch, 36)
    if (Number.isNaN(d) || d >= base) break
    value = value * BigInt(base) + BigInt(d)
  }
  if (m[1] === '-') value = -value
  return Number(BigInt.asIntN(32, value))
}

/** C's atoi: base 10, as strtol. */
export const atoi = (text: string): number => strtoi(text, 10)
