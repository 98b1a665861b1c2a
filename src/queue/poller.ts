import type { NotifyMode } from '../config/config.ts';
import { yieldCpu } from '../native/libc.ts';
import type { IoEngine } from '../storage/engine.ts';
import { deviceSleeps } from './layout.ts';
import { CoreContention, type ContentionMeter } from './contention.ts';

/**
 * The controller's polling loop: one loop services every guest queue and reaps
 * the backend engine's completions (the paper's "existing polling thread").
 * Each iteration is a setImmediate, so sockets and other callbacks run between
 * iterations, and while an immediate is pending libuv's poll phase does not
 * block (the event loop never sleeps: idle=poll).
 *
 * Per queue, the notification mode decides what happens when it is idle:
 * - poll: spin forever; the driver is told never to kick (NO_NOTIFY).
 * - adaptive: spin for `spinBudgetUs` after the last request, then arm the
 *   kick doorbell and sleep on it (Atomics.waitAsync); the first kick resumes
 *   spinning. What SPDK's interrupt mode, NAPI and haltpoll do. While other
 *   threads want this thread's core (CoreContention: its run delay while it
 *   spins and yields) an idle adaptive queue sleeps at once: on 2 cores the
 *   client and the guest need the core an idle spin would take. While
 *   requests are in flight it keeps spinning only if their completions are
 *   expected within the budget (InFlightWait, measured per queue): a file
 *   volume's are; an RBD volume's are not, and it sleeps as if idle.
 * - notify: never spin; every request is kicked and waited for (the
 *   unoptimised baseline).
 * The engine is reaped on every pass while anything spins; its eventfd
 * wake-up is switched off meanwhile and back on before the loop stops.
 * When nothing spins, the loop stops rescheduling itself, and an idle
 * controller costs no CPU.
 *
 * Fairness: a pass takes at most `QUEUE_BUDGET` requests from each queue,
 * starting from a different queue each pass, so a guest that keeps its ring
 * full cannot starve another guest (or the engine's completions).
 */
export interface PolledQueue {
  /** Take and dispatch up to `budget` available requests; how many were taken. Never throws. */
  poll(budget: number): number;
  /** Ask the driver to kick; true when the ring is empty and armed (safe to sleep). */
  enableKick(): boolean;
  /** Tell the driver not to kick (we are spinning). */
  disableKick(): void;
  waitKick(timeoutMs: number): Promise<'kick' | 'timeout'>;
  readonly broken: boolean;
  /** Requests taken and not yet completed. */
  readonly inFlight: number;
}

interface Entry {
  queue: PolledQueue;
  mode: NotifyMode;
  spinning: boolean;
  lastWork: number;
  removed: boolean;
  /** In-flight wait estimate (see InFlightWait): whether spinning for a completion pays. */
  wait: InFlightWait;
}

/**
 * How long a queue's requests keep the loop waiting for their next completion,
 * measured while it spins: an EWMA of the gaps between the last event (a
 * request taken or a completion seen) and the next completion, while requests
 * are in flight. Spinning for a completion pays when that gap is within the
 * spin budget (a file volume: tens of µs); when it is far longer (an RBD
 * request: hundreds of µs to ms; a slow disk) the spin costs more CPU than the
 * wake-up it saves, and on a shared machine takes the core librbd's threads and
 * the OSD need. Then the in-flight queue is treated as idle: it spins for the
 * budget after its last event (which still sees a fast completion, so the
 * estimate comes back down when the backend gets fast) and sleeps; the
 * completion is published by the backend's own wake-up, and the guest's next
 * request kicks the queue awake.
 *
 * Completions are counted without a hook in the queue: what was in flight
 * after the last pass, plus what this pass took, minus what is in flight now.
 */
class InFlightWait {
  /** EWMA of the gaps in µs; -1 until the first one is seen (spin, as for a fast backend). */
  gapUs = -1;
  /** queue.inFlight after the last pass (resynchronised on wake-up: completions while asleep are not timed). */
  seen = 0;
  /** When the last request was taken or the last completion seen (performance.now() ms). */
  lastEvent = 0;

  /** Account for this pass: `taken` requests taken, `inFlight` now in flight. */
  observe(now: number, taken: number, inFlight: number): void {
    const completed = this.seen + taken - inFlight;
    if (completed > 0 && this.seen > 0) {
      // Waited from the last event for this completion (a pass's resolution). A
      // sample is clamped so that one stall (an OSD away for seconds) cannot keep
      // the estimate high for long after it.
      const gap = Math.min((now - this.lastEvent) * 1000, GAP_CLAMP_US);
      this.gapUs = this.gapUs < 0 ? gap : this.gapUs + (gap - this.gapUs) / GAP_EWMA_WEIGHT;
    }
    if (taken > 0 || completed > 0) this.lastEvent = now;
    this.seen = inFlight;
  }

  /** After a sleep: start timing from here. */
  resume(now: number, inFlight: number): void {
    this.seen = inFlight;
    this.lastEvent = now;
  }

  /** Spin while requests are in flight: the next completion is expected within the budget. */
  pays(spinBudgetUs: number): boolean {
    return this.gapUs <= spinBudgetUs;
  }
}

/** EWMA weight of a new gap: 1/8 (a few requests to follow a change, robust to one outlier). */
const GAP_EWMA_WEIGHT = 8;
/** A gap sample counts at most this (µs): far above any spin budget, so "slow" stays slow, and it recovers in ~20 fast samples. */
const GAP_CLAMP_US = 20_000;

/**
 * How long a sleeping queue waits before re-checking by itself: a safety net,
 * not a mechanism (the arm/re-check protocol cannot lose a kick). Every
 * sleeping queue's timer wakes the controller's thread, so an idle controller
 * with four guests woke four times a second at 1 s; at 5 s it is under one.
 */
const SLEEP_RECHECK_MS = 5000;
/** Requests taken from one queue per pass: a queue's worth at QD32, small enough to interleave guests. */
export const QUEUE_BUDGET = 32;

export class Poller {
  private entries: Entry[] = [];
  private next = 0;
  private scheduled = false;
  private stopped = false;
  private engineSpinning = false;
  readonly counters = { iterations: 0, requests: 0, sleeps: 0, wakeups: 0, completionsPolled: 0, busyPasses: 0, idlePasses: 0, contendedSleeps: 0 };
  /** Made on the thread that runs the loop (the constructor's). */
  private readonly contention: ContentionMeter | null;

  /**
   * Spin on the engine while it has requests in flight: a completion is then a
   * memory read instead of a wake-up of this thread (which costs more than the
   * disk on a virtual machine). The wait is short and bounded by the disk.
   */
  private readonly spinOnEngine: boolean;
  /** Requests taken from one queue per pass (Infinity only to measure what the budget buys). */
  private readonly queueBudget: number;

  constructor(
    private readonly spinBudgetUs: number,
    private readonly engine?: IoEngine,
    options: { spinOnEngine?: boolean; queueBudget?: number; contention?: ContentionMeter | false } = {},
  ) {
    this.contention = options.contention === false ? null : (options.contention ?? new CoreContention());
    this.queueBudget = options.queueBudget ?? QUEUE_BUDGET;
    this.spinOnEngine = (options.spinOnEngine ?? true) && engine?.kind === 'io_uring';
    if (this.spinOnEngine && engine) engine.onBusy = () => this.schedule();
  }

  add(queue: PolledQueue, mode: NotifyMode): void {
    const entry: Entry = { queue, mode, spinning: false, lastWork: performance.now(), removed: false, wait: new InFlightWait() };
    this.entries = [...this.entries, entry];
    if (deviceSleeps(mode)) {
      this.sleep(entry);
    } else {
      queue.disableKick();
      entry.spinning = true;
      this.schedule();
    }
  }

  remove(queue: PolledQueue): void {
    const entry = this.entries.find((e) => e.queue === queue);
    if (!entry) return;
    entry.removed = true;
    this.entries = this.entries.filter((e) => e !== entry);
  }

  stop(): void {
    this.stopped = true;
    this.contention?.close();
    for (const e of this.entries) e.removed = true;
    this.entries = [];
    this.setEngineSpinning(false);
  }

  /** Queues currently spinning (for status and tests). */
  spinningCount(): number {
    let n = 0;
    for (const e of this.entries) if (e.spinning) n++;
    return n;
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(this.iterate);
  }

  private readonly iterate = (): void => {
    this.scheduled = false;
    // A pass already scheduled when stop() ran must not switch the engine's wake-ups off again.
    if (this.stopped) return;
    this.counters.iterations++;
    const now = performance.now();
    let anySpinning = false;
    let anyWork = false;
    const entries = this.entries;
    const count = entries.length;
    const start = count > 0 ? this.next++ % count : 0;
    for (let k = 0; k < count; k++) {
      const entry = entries[(start + k) % count]!;
      if (!entry.spinning) continue;
      const n = entry.queue.poll(this.queueBudget);
      const inFlight = entry.queue.inFlight;
      entry.wait.observe(now, n, inFlight);
      if (n > 0) {
        anyWork = true;
        this.counters.requests += n;
        entry.lastWork = now;
      } else if (entry.queue.broken) {
        entry.spinning = false; // a broken queue is never serviced again
        continue;
      } else if (inFlight > 0 && entry.wait.pays(this.spinBudgetUs)) {
        // The guest's next request tends to follow a completion: the budget starts after the last one.
        entry.lastWork = now;
      } else if (entry.mode === 'adaptive') {
        // Idle, or waiting for completions too slow to spin for (InFlightWait):
        // the budget runs from the last request taken or completion seen.
        if (entry.wait.lastEvent > entry.lastWork) entry.lastWork = entry.wait.lastEvent;
        const contended = this.contention !== null && this.contention.contended(now);
        if (contended || (now - entry.lastWork) * 1000 > this.spinBudgetUs) {
          this.sleep(entry);
          if (!entry.spinning) {
            if (contended) this.counters.contendedSleeps++;
            continue;
          }
        }
      }
      anySpinning = true;
    }
    if (this.engine) {
      const reaped = this.engine.poll();
      if (reaped > 0) {
        anyWork = true;
        this.counters.completionsPolled += reaped;
      }
      if (this.spinOnEngine && this.engine.inFlight > 0) anySpinning = true;
    }
    if (anyWork) this.counters.busyPasses++;
    else this.counters.idlePasses++;
    this.setEngineSpinning(anySpinning);
    if (!anySpinning) return;
    if (!anyWork) yieldCpu();
    this.schedule();
  };

  /** While the loop spins it reaps the engine itself; before it stops, the engine's wake-up goes back on. */
  private setEngineSpinning(on: boolean): void {
    if (!this.engine || on === this.engineSpinning) return;
    this.engineSpinning = on;
    const waiting = this.engine.setSpinning(on);
    if (waiting > 0) this.counters.completionsPolled += this.engine.poll();
  }

  /** Try sleep() again once other work has had its turn (a device-sleeping queue with more waiting). */
  private sleepLater(entry: Entry): void {
    setImmediate(() => {
      if (!entry.removed && !this.stopped) this.sleep(entry);
    });
  }

  /** Arm the doorbell and wait on it; if work slipped in while arming, keep going instead. */
  private sleep(entry: Entry): void {
    const { queue } = entry;
    if (deviceSleeps(entry.mode)) {
      // Notify mode takes requests here, between wake-ups: it never spins in the loop.
      const n = queue.poll(this.queueBudget);
      this.counters.requests += n;
      if (n === this.queueBudget) {
        // More may be waiting: come back after other work had its turn.
        this.sleepLater(entry);
        return;
      }
    }
    if (queue.broken) {
      entry.spinning = false;
      return;
    }
    if (!queue.enableKick()) {
      if (deviceSleeps(entry.mode)) {
        this.sleepLater(entry);
        return;
      }
      // Requests arrived while arming: spin again.
      queue.disableKick();
      entry.spinning = true;
      entry.lastWork = performance.now();
      this.schedule();
      return;
    }
    entry.spinning = false;
    this.counters.sleeps++;
    void queue.waitKick(SLEEP_RECHECK_MS).then(() => {
      if (entry.removed || this.stopped) return;
      this.counters.wakeups++;
      if (deviceSleeps(entry.mode)) {
        this.sleep(entry);
        return;
      }
      queue.disableKick();
      entry.spinning = true;
      entry.lastWork = performance.now();
      entry.wait.resume(entry.lastWork, queue.inFlight);
      this.schedule();
    });
  }
}
