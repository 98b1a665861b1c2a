/**
 * Ordering of a dedup volume's operations and its failure rule. Mutations run alone, in
 * arrival order; reads run together between them. A failure while metadata was
 * half-updated stops the volume (sticky) until it is reopened and the journal replayed.
 */
import { StorvisorError } from '../../util/errors.ts';

/** Run a step that must not fail halfway; if it does, the volume stops until it is reopened. */
export async function unsafe<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new StorvisorError('SV_ERR_DEDUP_UNSAFE', 'EIO', 'metadata update failed', { cause: err });
  }
}

export const isUnsafe = (err: unknown): err is StorvisorError => err instanceof StorvisorError && err.code === 'SV_ERR_DEDUP_UNSAFE';

export class OpLock {
  /** Completes when every mutation queued so far has finished. */
  private tail: Promise<unknown> = Promise.resolve();
  /** Reads queued since the last mutation: the next mutation waits for them. */
  private readsSinceTail: Promise<unknown>[] = [];

  run<T>(fn: () => Promise<T>, mode: 'exclusive' | 'shared'): Promise<T> {
    if (mode === 'shared') {
      // Reads run concurrently with each other (their backing I/O overlaps), never with a mutation.
      const p = this.tail.then(fn);
      this.readsSinceTail.push(p.catch(() => undefined));
      return p;
    }
    const before = Promise.all([this.tail, ...this.readsSinceTail]);
    this.readsSinceTail = [];
    const p = before.then(fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}
