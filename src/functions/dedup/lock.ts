/**
 * Ordering of a dedup volume's operations, and its failure rule.
 *
 * - RangeLock: requests touching the same logical blocks run in arrival order (a read
 *   waits for earlier overlapping writes, a write for earlier overlapping reads and
 *   writes); requests to different blocks run concurrently.
 * - ApplyGate: a write's metadata changes happen inside a "window" (references up, data
 *   written, map set, references down). Windows of different writes overlap; a commit,
 *   check or close needs the gate alone, so it never journals half a write. Exclusive
 *   requests are served first (new windows wait), so commits cannot starve.
 * - Mutex: the metadata steps of concurrent windows (which await page reads) never
 *   interleave.
 * A failure while metadata was half-updated stops the volume (sticky) until it is
 * reopened and the journal replayed: `unsafe()` marks those steps.
 */
import { StorvisorError } from '../../util/errors.ts';

/** Run a step that must not fail halfway; if it does, the volume stops until it is reopened. */
export async function unsafe<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw unsafeError(err);
  }
}

/** The error a step that failed halfway throws (the volume stops; see unsafe). */
export const unsafeError = (err: unknown): StorvisorError => new StorvisorError('SV_ERR_DEDUP_UNSAFE', 'EIO', 'metadata update failed', { cause: err });

export const isUnsafe = (err: unknown): err is StorvisorError => err instanceof StorvisorError && err.code === 'SV_ERR_DEDUP_UNSAFE';

/** A request's hold on its blocks: `wait` is what it must wait for first (null: nothing). */
export interface RangeHold {
  first: number;
  end: number;
  write: boolean;
  wait: Promise<unknown> | null;
  /** Made only when a later request must wait for this one (most requests conflict with none). */
  done: Promise<void> | null;
  resolve: (() => void) | null;
}

const doneOf = (h: RangeHold): Promise<void> => (h.done ??= new Promise<void>((r) => (h.resolve = r)));

export class RangeLock {
  /** Requests holding or waiting for a range, in arrival order (bounded by the requests in flight). */
  private holds: RangeHold[] = [];

  /**
   * Take [first, end) after every earlier conflicting request: no Promise, closure or array
   * unless one conflicts (then `wait` says what to wait for). Give it back with release().
   */
  hold(first: number, end: number, write: boolean): RangeHold {
    let wait: Promise<unknown> | null = null;
    let several: Promise<void>[] | null = null;
    for (const h of this.holds) {
      if (!(h.first < end && first < h.end && (write || h.write))) continue;
      const d = doneOf(h);
      if (wait === null) wait = d;
      else (several ??= [wait as Promise<void>]).push(d);
    }
    const hold: RangeHold = { first, end, write, wait: several ? Promise.all(several) : wait, done: null, resolve: null };
    this.holds.push(hold);
    return hold;
  }

  release(hold: RangeHold): void {
    const i = this.holds.indexOf(hold);
    if (i >= 0) this.holds.splice(i, 1);
    hold.resolve?.();
  }

  /** Wait for every earlier conflicting request over [first, end); returns the release. */
  async acquire(first: number, end: number, write: boolean): Promise<() => void> {
    const hold = this.hold(first, end, write);
    if (hold.wait) await hold.wait;
    return () => this.release(hold);
  }

  /** Wait until every request that arrived so far has finished. */
  async drain(): Promise<void> {
    await Promise.all(this.holds.map(doneOf));
  }
}

export class ApplyGate {
  private active = 0;
  private exclusiveHeld = false;
  private readonly waiters: Array<{ exclusive: boolean; go: () => void }> = [];

  /** Enter a write window (shared with other windows): at once (null) unless a commit holds or waits for the gate. */
  enter(): Promise<void> | null {
    if (!this.exclusiveHeld && !this.waiters.some((w) => w.exclusive)) {
      this.active++;
      return null;
    }
    return new Promise((go) => this.waiters.push({ exclusive: false, go: () => (this.active++, go()) }));
  }

  leave(): void {
    this.active--;
    this.wake();
  }

  /** Run `fn` with no write window open and no other exclusive holder. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.exclusiveHeld || this.active > 0 || this.waiters.length > 0) {
      await new Promise<void>((go) => this.waiters.push({ exclusive: true, go: () => ((this.exclusiveHeld = true), go()) }));
    } else {
      this.exclusiveHeld = true;
    }
    try {
      return await fn();
    } finally {
      this.exclusiveHeld = false;
      this.wake();
    }
  }

  /** Admit waiters in order: an exclusive one once nothing is active; windows until the next exclusive one. */
  private wake(): void {
    while (this.waiters.length > 0 && !this.exclusiveHeld) {
      const w = this.waiters[0]!;
      if (w.exclusive) {
        if (this.active > 0) return;
        this.waiters.shift();
        w.go();
        return;
      }
      this.waiters.shift();
      w.go();
    }
  }
}

/** FIFO mutex; lock() answers null when it was free (no Promise), and unlock() hands it to the next waiter. */
export class Mutex {
  private held = false;
  private readonly waiters: Array<() => void> = [];

  lock(): Promise<void> | null {
    if (!this.held) {
      this.held = true;
      return null;
    }
    return new Promise<void>((go) => this.waiters.push(go));
  }

  unlock(): void {
    const next = this.waiters.shift();
    if (next) next(); // still held: ownership passes to the next waiter
    else this.held = false;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const locking = this.lock();
    if (locking) await locking;
    try {
      return await fn();
    } finally {
      this.unlock();
    }
  }
}
