/**
 * Are both cores busy? The machine's runnable threads (the 4th field of
 * /proc/loadavg, "R/T": R threads running or waiting for a CPU right now),
 * sampled at most every SAMPLE_MS with one pread on a file kept open and
 * smoothed, against the cores. A spin after a reply pays only while a core is
 * free for the client the reply wakes: on a machine whose runnable threads
 * outnumber its cores, the spin takes the core the client (or anyone) would
 * have run on when this thread went to sleep, and the next call comes later,
 * not sooner. CoreContention (native/contention.ts) sees only this thread's own
 * wait, which a thread that spins for a few µs per call hardly has.
 *
 * Where /proc/loadavg cannot be read the verdict stays "not contended".
 */
import { availableParallelism } from 'node:os';
import type { ContentionMeter } from './contention.ts';
import { ProcField } from './proc-field.ts';

const SAMPLE_MS = 5;
/** Smoothing of the runnable count (per sample). */
const ALPHA = 0.2;

export class RunnableMeter implements ContentionMeter {
  /** R of loadavg's "a b c R/T pid". */
  private readonly runnableNow: ProcField;
  private lastAt = -Infinity;
  private avg = 0;
  private verdict = false;
  private readonly on: number;
  private readonly off: number;
  /** Samples taken (for tests). */
  samples = 0;

  /**
   * Contended once, on average, a thread more than `cores` is runnable; free
   * again at `cores` or fewer. This thread counts itself while it reads, and
   * the client its reply just woke is runnable too: those two fit on two cores.
   */
  constructor(cores = availableParallelism(), path = '/proc/loadavg') {
    this.on = cores + 0.5;
    this.off = cores;
    this.runnableNow = new ProcField(path, 3, 0x2f);
  }

  contended(now: number): boolean {
    if (!this.runnableNow.open || now - this.lastAt < SAMPLE_MS) return this.verdict;
    this.lastAt = now;
    const r = this.runnableNow.read();
    if (r < 0) return this.verdict;
    this.avg = this.samples === 0 ? r : this.avg + ALPHA * (r - this.avg);
    this.samples++;
    if (this.verdict ? this.avg < this.off : this.avg > this.on) this.verdict = !this.verdict;
    return this.verdict;
  }

  /** The smoothed count of runnable threads. */
  get runnable(): number {
    return this.avg;
  }

  close(): void {
    this.runnableNow.close();
  }
}

/** Contended when any of the meters says so (each samples at its own pace). */
export function eitherMeter(a: ContentionMeter, b: ContentionMeter): ContentionMeter {
  return {
    contended: (now) => a.contended(now) || b.contended(now),
    close: () => {
      a.close();
      b.close();
    },
  };
}

/**
 * A meter made on first use: on the thread that first asks (the one that
 * serves, which CoreContention must be made on), and never for a server that
 * answers nothing, so a server that fails to listen holds no descriptors.
 */
export function lazyMeter(make: () => ContentionMeter): ContentionMeter {
  let meter: ContentionMeter | null = null;
  let closed = false;
  return {
    contended: (now) => (closed ? false : (meter ??= make()).contended(now)),
    close: () => {
      closed = true;
      meter?.close();
      meter = null;
    },
  };
}
