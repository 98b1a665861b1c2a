/**
 * Per-inode async reader/writer locks. An operation takes every inode it will
 * change at once, in ascending order, so two operations never wait on each
 * other in a cycle. Readers (read, readdir, lookup) share; changes exclude.
 */
interface LockState {
  readers: number;
  writer: boolean;
  waiters: Array<{ shared: boolean; wake: () => void }>;
}

export type Unlock = () => void;

function ascending(a: number, b: number): number {
  return a - b;
}

export class InodeLocks {
  private readonly states = new Map<number, LockState>();

  private acquire(ino: number, shared: boolean): Promise<void> {
    let s = this.states.get(ino);
    if (!s) {
      s = { readers: 0, writer: false, waiters: [] };
      this.states.set(ino, s);
    }
    const free = shared ? !s.writer && s.waiters.length === 0 : !s.writer && s.readers === 0;
    if (free) {
      if (shared) s.readers++;
      else s.writer = true;
      return Promise.resolve();
    }
    return new Promise((wake) => s.waiters.push({ shared, wake }));
  }

  private release(ino: number, shared: boolean): void {
    const s = this.states.get(ino)!;
    if (shared) s.readers--;
    else s.writer = false;
    // Wake the next writer alone, or every reader queued before the next writer.
    while (s.waiters.length > 0 && !s.writer) {
      const next = s.waiters[0];
      if (!next.shared && s.readers > 0) break;
      s.waiters.shift();
      if (next.shared) s.readers++;
      else s.writer = true;
      next.wake();
      if (!next.shared) break;
    }
    if (!s.writer && s.readers === 0 && s.waiters.length === 0) this.states.delete(ino);
  }

  /** Lock the given inodes exclusively (duplicates allowed); resolves to the unlock function. */
  lock(...inos: number[]): Promise<Unlock> {
    return this.lockMany(inos, false);
  }

  /** Lock one inode shared: the unlock function itself when the lock is free (no promise), else a promise of it. */
  lockShared(ino: number): Unlock | Promise<Unlock> {
    const s = this.states.get(ino);
    if (s && (s.writer || s.waiters.length > 0)) return this.lockMany([ino], true);
    if (s) s.readers++;
    else this.states.set(ino, { readers: 1, writer: false, waiters: [] });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(ino, true);
    };
  }

  private async lockMany(inos: number[], shared: boolean): Promise<Unlock> {
    const sorted = inos.length === 1 ? inos : [...new Set(inos)].sort(ascending);
    for (const ino of sorted) await this.acquire(ino, shared);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const ino of sorted) this.release(ino, shared);
    };
  }

  get held(): number {
    return this.states.size;
  }
}

interface RangeState {
  held: Array<{ first: number; last: number }>;
  waiters: Array<() => void>;
}

/**
 * Exclusive locks on ranges of blocks of one file, for writes that run under the
 * inode's shared lock (in-place overwrites): writes to different blocks of one
 * file proceed together, two writes to one block (a device read-modify-write
 * for a partial block) take turns. A waiter retries when any range of its file
 * is released; the few writes in flight per file keep that cheap.
 */
export class RangeLocks {
  private readonly states = new Map<number, RangeState>();

  async lock(ino: number, first: number, last: number): Promise<Unlock> {
    for (;;) {
      let s = this.states.get(ino);
      if (!s) {
        s = { held: [], waiters: [] };
        this.states.set(ino, s);
      }
      if (!s.held.some((r) => r.first <= last && first <= r.last)) {
        const range = { first, last };
        s.held.push(range);
        const st = s;
        let released = false;
        return () => {
          if (released) return;
          released = true;
          st.held.splice(st.held.indexOf(range), 1);
          const wake = st.waiters.splice(0);
          if (st.held.length === 0 && wake.length === 0) this.states.delete(ino);
          for (const w of wake) w();
        };
      }
      const st = s;
      await new Promise<void>((w) => st.waiters.push(w));
    }
  }

  get held(): number {
    return this.states.size;
  }
}
