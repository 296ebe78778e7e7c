// Argument checks that run before a request enters a socket's queue. A request that
// passes them can fail later only if the caller changes its memory while it waits
// (detaching a buffer), and that is caught when it is sent (native/args.cc checks every
// view again right before the syscall).
import { invalidArgType, invalidState, outOfRange } from './errors'
import type { ByteView } from './native'

/** The most views one send takes: the kernel's UIO_MAXIOV (IOV_MAX), one iovec each. */
export const MAX_VIEWS = 1024

const VIEW_TYPES = 'an instance of Buffer, TypedArray, DataView or ArrayBuffer'

interface MaybeResizable {
  resizable?: boolean
  growable?: boolean
  detached?: boolean
}

/**
 * One view's bytes as a Uint8Array over the same memory. Refused: non-views,
 * SharedArrayBuffer memory (another thread could change it under the kernel), resizable
 * or growable buffers (their length can change while the kernel reads them), detached ones.
 */
export function viewBytes(v: unknown, name: string, index?: number): Uint8Array {
  let buffer: ArrayBufferLike
  if (ArrayBuffer.isView(v)) buffer = v.buffer
  else if (v instanceof ArrayBuffer) buffer = v
  else if (typeof SharedArrayBuffer === 'function' && v instanceof SharedArrayBuffer) {
    throw invalidArgType(elementName(name, index), `${VIEW_TYPES} over non-shared memory (a SharedArrayBuffer cannot be sent safely)`, v)
  } else throw invalidArgType(elementName(name, index), VIEW_TYPES, v)
  if (typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer) {
    throw invalidArgType(elementName(name, index), `${VIEW_TYPES} over non-shared memory (a SharedArrayBuffer cannot be sent safely)`, v)
  }
  const b = buffer as MaybeResizable
  if (b.resizable === true || b.growable === true) {
    throw invalidArgType(elementName(name, index), `${VIEW_TYPES} over a fixed-length buffer (a resizable ArrayBuffer can change under the kernel)`, v)
  }
  if (b.detached === true || (buffer.byteLength === 0 && isDetached(buffer as ArrayBuffer))) {
    throw invalidState(`the "${elementName(name, index)}" argument's ArrayBuffer is detached`)
  }
  if (v instanceof Uint8Array) return v
  if (v instanceof ArrayBuffer) return new Uint8Array(v)
  const view = v as ArrayBufferView
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
}

/**
 * `name`, or its element `name[index]`: spelled out only for an error, since a batch
 * checks every element of every call.
 */
function elementName(name: string, index: number | undefined): string {
  return index === undefined ? name : `${name}[${index}]`
}

/**
 * Whether a view's memory was detached after it was checked (a detached view reads as
 * empty: only an empty one needs the closer look).
 */
export function viewDetached(v: Uint8Array): boolean {
  if (v.byteLength > 0) return false
  const b = v.buffer as ArrayBuffer & MaybeResizable
  return b.detached === true || (b.byteLength === 0 && isDetached(b))
}

/** Node 20 has no ArrayBuffer#detached: a detached buffer refuses a new view. */
function isDetached(buffer: ArrayBuffer): boolean {
  try {
    new Uint8Array(buffer)
    return false
  } catch {
    return true
  }
}

/**
 * A send's data (one view, or an Array of at most MAX_VIEWS views sent as one stream of
 * bytes) as Uint8Arrays. The Array's length is checked first, so a huge sparse Array
 * costs nothing; a hole is a TypeError naming its index.
 */
export function dataViews(data: unknown, name: string): Uint8Array[] {
  if (!Array.isArray(data)) return [viewBytes(data, name)]
  if (data.length > MAX_VIEWS) {
    throw outOfRange(`${name}.length`, `<= ${MAX_VIEWS} (the kernel's iovec limit; use sendEach for more messages)`, data.length)
  }
  return listViews(data, name)
}

/** sendEach's messages: an Array of views, any length; each element is checked. */
export function messageViews(messages: unknown, name: string): Uint8Array[] {
  if (!Array.isArray(messages)) throw invalidArgType(name, `an instance of Array of ${VIEW_TYPES}`, messages)
  return listViews(messages, name)
}

function listViews(list: readonly unknown[], name: string): Uint8Array[] {
  const out = new Array<Uint8Array>(list.length)
  for (let i = 0; i < list.length; i++) {
    if (!(i in list)) throw invalidArgType(`${name}[${i}]`, `${VIEW_TYPES} (the Array has a hole here)`, undefined)
    const v = list[i]
    // The same view again (one buffer sent many times) was checked a moment ago.
    out[i] = i > 0 && v === list[i - 1] ? out[i - 1]! : viewBytes(v, name, i)
  }
  return out
}

/** The bytes of all views together. */
export function totalBytes(views: readonly Uint8Array[]): number {
  let n = 0
  for (const v of views) n += v.length
  return n
}

/** An options object, or undefined for none. */
export function optionsArg<T extends object>(options: unknown, name = 'options'): Partial<T> {
  if (options === undefined || options === null) return {}
  if (typeof options !== 'object') throw invalidArgType(name, 'of type object', options)
  return options as Partial<T>
}

/**
 * An integer option in [min, max], or Infinity where `infinity` allows it (meaning
 * "never"/"no limit"); `fallback` when undefined.
 */
export function integerOption(name: string, value: unknown, fallback: number, min: number, max: number, infinity = false): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (infinity && value === Infinity) return value
  if (!Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(name, `an integer >= ${min} && <= ${max}${infinity ? ', or Infinity' : ''}`, value)
  }
  return value
}

/** An optional boolean option. */
export function booleanOption(name: string, value: unknown): boolean {
  if (value === undefined) return false
  if (typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value)
  return value
}

export type { ByteView }
