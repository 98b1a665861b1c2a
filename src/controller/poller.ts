import type { NotifyMode } from '../config/config.ts';
import { yieldCpu } from '../native/libc.ts';

/**
 * The controller's polling loop: one loop services every guest queue (the
 * paper's "existing polling thread"). Backend completions need no polling of
 * their own: they arrive as libuv callbacks, which run between iterations
 * because each iteration is a setImmediate, and while an immediate is pending
 * libuv's poll phase does not block (the event loop never sleeps: idle=poll).
 *
 * Per queue, the notification mode decides what happens when it is idle:
 * - poll: spin forever; the driver is told never to kick (NO_NOTIFY).
 * - adaptive: spin for `spinBudgetUs` after the last request, then arm the
 *   kick doorbell and sleep on it (Atomics.waitAsync); the first kick resumes
 *   spinning. What SPDK's interrupt mode, NAPI and haltpoll do.
 * - notify: never spin; every request is kicked and waited for (the
 *   unoptimised baseline).
 * When no queue is spinning, the loop stops rescheduling itself, and an idle
 * controller costs no CPU.
 */
export interface PolledQueue {
  /** Take and dispatch every available request; how many were taken. Never throws. */
  poll(): number;
  /** Ask the driver to kick; true when the ring is empty and armed (safe to sleep). */
  enableKick(): boolean;
  /** Tell the driver not to kick (we are spinning). */
  disableKick(): void;
  waitKick(timeoutMs: number): Promise<'kick' | 'timeout'>;
  readonly broken: boolean;
}

interface Entry {
  queue: PolledQueue;
  mode: NotifyMode;
  spinning: boolean;
  lastWork: number;
  removed: boolean;
}

/** How long a sleeping queue waits before re-checking by itself (a safety net, not a mechanism). */
const SLEEP_RECHECK_MS = 1000;

export class Poller {
  private readonly entries = new Map<PolledQueue, Entry>();
  private scheduled = false;
  private stopped = false;
  readonly counters = { iterations: 0, requests: 0, sleeps: 0, wakeups: 0 };

  constructor(private readonly spinBudgetUs: number) {}

  add(queue: PolledQueue, mode: NotifyMode): void {
    const entry: Entry = { queue, mode, spinning: false, lastWork: performance.now(), removed: false };
    this.entries.set(queue, entry);
    if (mode === 'notify') {
      this.sleep(entry);
    } else {
      queue.disableKick();
      entry.spinning = true;
      this.schedule();
    }
  }

  remove(queue: PolledQueue): void {
    const entry = this.entries.get(queue);
    if (!entry) return;
    entry.removed = true;
    this.entries.delete(queue);
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) e.removed = true;
    this.entries.clear();
  }

  /** Queues currently spinning (for status and tests). */
  spinningCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.spinning) n++;
    return n;
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(this.iterate);
  }

  private readonly iterate = (): void => {
    this.scheduled = false;
    this.counters.iterations++;
    const now = performance.now();
    let anySpinning = false;
    let anyWork = false;
    for (const entry of this.entries.values()) {
      if (!entry.spinning) continue;
      const n = entry.queue.poll();
      if (n > 0) {
        anyWork = true;
        this.counters.requests += n;
        entry.lastWork = now;
      } else if (entry.queue.broken) {
        entry.spinning = false; // a broken queue is never serviced again
        continue;
      } else if (entry.mode === 'adaptive' && (now - entry.lastWork) * 1000 > this.spinBudgetUs) {
        this.sleep(entry);
        if (!entry.spinning) continue;
      }
      anySpinning = true;
    }
    if (!anySpinning) return;
    if (!anyWork) yieldCpu();
    this.schedule();
  };

  /** Arm the doorbell and wait on it; if work slipped in while arming, keep going instead. */
  private sleep(entry: Entry): void {
    const { queue } = entry;
    // Notify mode drains here, between wake-ups: it never spins in the loop.
    for (;;) {
      const n = entry.mode === 'notify' ? queue.poll() : 0;
      this.counters.requests += n;
      if (n > 0) continue;
      if (queue.broken) {
        entry.spinning = false;
        return;
      }
      if (queue.enableKick()) break;
      if (entry.mode !== 'notify') {
        // Requests arrived while arming: spin again.
        queue.disableKick();
        entry.spinning = true;
        entry.lastWork = performance.now();
        this.schedule();
        return;
      }
    }
    entry.spinning = false;
    this.counters.sleeps++;
    void queue.waitKick(SLEEP_RECHECK_MS).then(() => {
      if (entry.removed || this.stopped) return;
      this.counters.wakeups++;
      if (entry.mode === 'notify') {
        this.sleep(entry);
        return;
      }
      queue.disableKick();
      entry.spinning = true;
      entry.lastWork = performance.now();
      this.schedule();
    });
  }
}
