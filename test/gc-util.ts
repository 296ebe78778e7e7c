// Reachability checks for the lifetime tests: a forced full GC (Node's own `gc`, made
// available at run time so the tests need no command-line flag) and WeakRefs on the
// objects that must be collectable once Node closed a socket. A WeakRef keeps its
// target alive until the end of the job that made or read it, so every check first lets
// the event loop turn.
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { setImmediate as immediate } from 'node:timers/promises'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

/** Full collections, with turns of the event loop between them (finalizers, kept WeakRefs). */
export async function collectGarbage(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await immediate()
    gc()
  }
  await immediate()
}

/** Named WeakRefs to objects that must become unreachable. */
export class Reachability {
  private readonly refs: Array<{ name: string; ref: WeakRef<object> }> = []

  watch(name: string, target: object): void {
    this.refs.push({ name, ref: new WeakRef(target) })
  }

  get size(): number {
    return this.refs.length
  }

  /** The names of watched objects still alive after a forced GC (retried until `ms` passed). */
  async survivors(ms = 2000): Promise<string[]> {
    const deadline = Date.now() + ms
    for (;;) {
      await collectGarbage()
      const alive = this.refs.filter((r) => r.ref.deref() !== undefined).map((r) => r.name)
      if (alive.length === 0 || Date.now() > deadline) return alive
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

/** The heap in use after a forced GC, in bytes. */
export async function heapAfterGc(): Promise<number> {
  await collectGarbage()
  return process.memoryUsage().heapUsed
}
