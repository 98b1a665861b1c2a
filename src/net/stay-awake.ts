/**
 * Stay awake after a reply. A client that waits for each reply before it sends
 * its next call (QD1) sends that call some tens of µs after the reply lands;
 * if the event loop has gone to sleep in epoll_wait by then, the call pays a
 * wake-up of this thread (on a VM: an IPI and a halted vCPU brought back),
 * which costs as much as the call itself. So after a reply leaves with nothing
 * else in flight, the loop spins for a bounded budget on setImmediate: each
 * pass is a full event-loop turn whose poll phase does not block (sockets are
 * read as ever, nothing is starved), and the spin ends at once when a request
 * arrives or the budget is used.
 *
 * Bounds, so a spin never costs more than it can save:
 * - per reply: `budgetUs` (150 µs: the next QD1 call arrived ~75 µs after
 *   the reply in traces);
 * - wasted time: a spin that ends without a request is waste; once wasted
 *   spinning passes `maxWasteShare` of a `windowMs` window, no spin starts
 *   until the next window (a client that thinks between calls, or has gone);
 * - contention: while another thread wants this core (ContentionMeter: this
 *   thread's run delay; the RPC server adds the machine's runnable threads
 *   against its cores, runnable-meter.ts), no spin starts, and each empty
 *   pass yields the core.
 *
 * Off with `budgetUs: 0`.
 */
import { yieldCpu } from '../native/libc.ts';
import type { ContentionMeter } from '../native/contention.ts';

export interface StayAwakeOptions {
  /** Longest spin after one reply, µs (0 = never spin). */
  budgetUs: number;
  /** Spinning that caught no request, as a share of wall time, above which spins stop until the next window. */
  maxWasteShare: number;
  /** The window the waste share is measured over, ms. */
  windowMs: number;
  /** Does another thread want this core? Null: never contended. */
  contention: ContentionMeter | null;
  /** Give the core to another runnable thread on an empty pass (sched_yield). */
  yieldCpu: () => void;
  /** Clock in ms (performance.now). */
  now: () => number;
}

export const DEFAULT_STAY_AWAKE: StayAwakeOptions = {
  budgetUs: 150,
  maxWasteShare: 0.05,
  windowMs: 100,
  contention: null,
  yieldCpu,
  now: () => performance.now(),
};

export interface StayAwakeStats {
  /** Spins started. */
  spins: number;
  /** Spins ended by a request arriving. */
  hits: number;
  /** Spins that used their budget with no request. */
  misses: number;
  /** Spins not started: another thread wanted the core. */
  contended: number;
  /** Spins not started: the window's waste share was used up. */
  overBudget: number;
  /** Empty passes (event-loop turns) spent spinning. */
  passes: number;
}

export class StayAwake {
  readonly stats: StayAwakeStats = { spins: 0, hits: 0, misses: 0, contended: 0, overBudget: 0, passes: 0 };
  private readonly opts: StayAwakeOptions;
  private readonly budgetMs: number;
  private readonly wasteCapMs: number;
  private spinning = false;
  /** The spin under way ends at its next pass (the cores became wanted). */
  private ending = false;
  private stopped = false;
  /** Requests seen (bumped per arrival; a spin compares it with its start). */
  private arrivals = 0;
  private arrivalsAtStart = 0;
  private since = 0;
  private windowStart = -Infinity;
  private wastedMs = 0;

  constructor(opts: Partial<StayAwakeOptions> = {}) {
    this.opts = { ...DEFAULT_STAY_AWAKE, ...opts };
    this.budgetMs = this.opts.budgetUs / 1000;
    this.wasteCapMs = this.opts.maxWasteShare * this.opts.windowMs;
  }

  /** True while a spin is under way (for tests). */
  get isSpinning(): boolean {
    return this.spinning;
  }

  /** A request arrived (a whole call): a spin under way has done its job. */
  arrived(): void {
    this.arrivals++;
  }

  /** A reply left and nothing else is in flight: keep the loop awake for the next request. */
  replied(): void {
    if (this.stopped || this.budgetMs <= 0) return;
    const now = this.opts.now();
    if (this.spinning) {
      // A reply while spinning: the pass has not run since a request came and was answered; go on from here.
      if (this.arrivals !== this.arrivalsAtStart) this.stats.hits++;
      this.arrivalsAtStart = this.arrivals;
      this.since = now;
      // A spin that replies keep going asks about the cores as a new one would.
      if (this.opts.contention?.contended(now)) {
        this.stats.contended++;
        this.ending = true;
      }
      return;
    }
    if (now - this.windowStart >= this.opts.windowMs) {
      this.windowStart = now;
      this.wastedMs = 0;
    }
    if (this.wastedMs >= this.wasteCapMs) {
      this.stats.overBudget++;
      return;
    }
    if (this.opts.contention?.contended(now)) {
      this.stats.contended++;
      return;
    }
    this.stats.spins++;
    this.spinning = true;
    this.since = now;
    this.arrivalsAtStart = this.arrivals;
    setImmediate(this.pass);
  }

  /** No spin starts from now on; one under way ends at its next pass. */
  stop(): void {
    this.stopped = true;
  }

  private readonly pass = (): void => {
    if (this.arrivals !== this.arrivalsAtStart) {
      this.stats.hits++;
      return this.end();
    }
    if (this.stopped || this.ending) return this.end();
    const now = this.opts.now();
    const spun = now - this.since;
    if (spun >= this.budgetMs) {
      this.stats.misses++;
      this.wastedMs += spun;
      return this.end();
    }
    this.stats.passes++;
    this.opts.yieldCpu();
    setImmediate(this.pass);
  };

  private end(): void {
    this.spinning = false;
    this.ending = false;
  }
}
