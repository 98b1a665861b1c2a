import { ProcField } from './proc-field.ts';

/**
 * Does another thread want this core? A spinner is worth its core only while
 * that core has nothing better to do; on a machine with fewer cores than busy
 * threads (2 cores: the client, the controller's poller, a guest) every spin
 * takes the core from a thread with real work.
 *
 * The measure is the calling thread's own run delay, the time it spent
 * runnable but waiting for a CPU (/proc/thread-self/schedstat, field 2). A
 * spinner yields (sched_yield) on every empty pass, so it waits exactly when
 * some other thread wanted its core: run delay per wall time is the share of
 * the spin that was taken from others. Sampled at most every SAMPLE_MS with
 * one pread on a file kept open, smoothed, with hysteresis so the verdict
 * does not flap. Where schedstat cannot be read the verdict stays "not
 * contended" (spin as before).
 *
 * Must be made on the thread it measures (thread-self is resolved at open).
 */
const SAMPLE_MS = 5;

/** What a spinning loop asks before it spins on (CoreContention; tests inject their own). */
export interface ContentionMeter {
  contended(now: number): boolean;
  close(): void;
}
/** Smoothing of the run-delay share (per sample). */
const ALPHA = 0.25;
/**
 * Contended above this share of wall time spent waiting for a CPU; uncontended
 * again below OFF. Our own threads on 2 cores (client, guest, poller, each
 * spinner yielding to the others) keep a spinner's share at or under ~0.5,
 * and there spinning still wins: with passes that cost no allocation, poll
 * beat notify at queue depth 1 and 32 in the same run (#8). Above 0.6 the
 * core is oversubscribed (runnable threads at twice the cores or more) and a
 * spin mostly takes the core from others.
 */
const ON = 0.6;
const OFF = 0.3;

export class CoreContention implements ContentionMeter {
  /** Field 2 of schedstat: run-queue wait, ns. */
  private readonly delay: ProcField;
  private lastAt = 0;
  private lastDelayNs = -1;
  private share = 0;
  private verdict = false;
  /** Samples taken (for stats and tests). */
  samples = 0;

  constructor(path = '/proc/thread-self/schedstat') {
    this.delay = new ProcField(path, 1, -1, 96);
  }

  /** True when other threads wanted this thread's core for a good part of the recent past. */
  contended(now: number): boolean {
    if (!this.delay.open || now - this.lastAt < SAMPLE_MS) return this.verdict;
    const delay = this.delay.read();
    if (delay < 0) return this.verdict;
    if (this.lastDelayNs >= 0) {
      const wallNs = (now - this.lastAt) * 1e6;
      const s = Math.min(1, Math.max(0, (delay - this.lastDelayNs) / wallNs));
      this.share += ALPHA * (s - this.share);
      this.samples++;
      if (this.verdict ? this.share < OFF : this.share > ON) this.verdict = !this.verdict;
    }
    this.lastAt = now;
    this.lastDelayNs = delay;
    return this.verdict;
  }

  /** The smoothed share of wall time this thread spent waiting for a CPU. */
  get runDelayShare(): number {
    return this.share;
  }

  close(): void {
    this.delay.close();
  }
}
