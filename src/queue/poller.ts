import type { NotifyMode } from '../config/config.ts';
import { yieldCpu } from '../native/libc.ts';
import type { IoEngine } from '../storage/engine.ts';
import { deviceSleeps } from './layout.ts';
import { CoreContention, type ContentionMeter } from '../native/contention.ts';
import { InFlightWait } from './in-flight-wait.ts';

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
 *   volume's are; an RBD volume's are not, and it is treated as idle (it
 *   spins the budget after its last completion, then sleeps; after a take it
 *   sleeps at once, as the guest's next request follows a completion; the
 *   backend's own wake-up publishes the completion, the guest's next request
 *   kicks).
 * - notify: never spin; every request is kicked and waited for (the
 *   unoptimised baseline).
 * Short io_uring I/O that this loop reaps itself (a sync write to a file
 * volume, ~300 µs) is spun for however the queue's waits measure, but only
 * while it is worth it (engineHolds): not while other threads want this
 * core, and not past ENGINE_SPIN_MAX_US without a completion, after which the
 * queue's next takes are not spun for (ENGINE_SKIP_MAX): a 64 KiB
 * write-through chunk of a database compaction on a busy disk takes
 * milliseconds, and the loop spun through every one of them, 73% of its
 * thread while the guest served GETs (#10). Then the measured rule applies,
 * and the engine's eventfd brings the completion.
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
  /** Of those, flushes in the backend's sync (an fdatasync: milliseconds); none when absent. */
  readonly syncing?: number;
}

interface Entry {
  queue: PolledQueue;
  mode: NotifyMode;
  spinning: boolean;
  lastWork: number;
  removed: boolean;
  /** Completions of this queue, timed (see QueueWaits). */
  waits: QueueWaits;
  /** Passes in a row that found nothing to take (poll mode). */
  idlePasses: number;
  /** Requests a pass with work took, smoothed (poll mode: bursts pay for a kick, single requests do not). */
  burst: number;
  /** The queue spins for the engine's short I/O although its own waits say no (engineHolds). */
  engineHolding: boolean;
  /** Takes left before the queue spins for the engine's I/O again, after a spin that ran out; and the next such skip. */
  engineSkip: number;
  /** The last take (or the spin that ran out) is not spun for. */
  engineSkipping: boolean;
  engineBackoff: number;
}

/**
 * Times a queue's completions for InFlightWait without a hook in the queue:
 * the completions of a pass are what was in flight after the last pass, plus
 * what this pass took, minus what is in flight now; each waited from the last
 * event (a request taken or a completion seen), at a pass's resolution. While
 * the queue sleeps with requests in flight (the wait is not worth a spin),
 * their completions are not seen; each one counted on wake-up waited longer
 * than the budget (the queue spun that long before it slept).
 */
class QueueWaits {
  readonly wait = new InFlightWait();
  /** queue.inFlight after the last pass. */
  seen = 0;
  /** When the last request was taken or the last completion seen (performance.now() ms). */
  lastEvent = 0;
  /** The last event was a request taken (not a completion seen). */
  lastWasTake = false;

  /** Account for this pass: `taken` requests taken, `inFlight` now in flight. */
  observe(now: number, taken: number, inFlight: number, budgetUs: number): void {
    const completed = this.seen + taken - inFlight;
    if (completed > 0 && this.seen > 0) this.wait.record((now - this.lastEvent) * 1000, budgetUs);
    if (taken > 0 || completed > 0) this.lastEvent = now;
    if (completed > 0) this.lastWasTake = false;
    else if (taken > 0) this.lastWasTake = true;
    this.seen = inFlight;
  }

  /** After a sleep (no request was taken meanwhile): what completed meanwhile took longer than the budget. */
  resume(now: number, inFlight: number): void {
    for (let n = Math.min(this.seen - inFlight, 8); n > 0; n--) this.wait.recordLong();
    this.seen = inFlight;
    this.lastEvent = now;
  }
}

/**
 * How long a sleeping queue waits before re-checking by itself: a safety net,
 * not a mechanism (the arm/re-check protocol cannot lose a kick). Every
 * sleeping queue's timer wakes the controller's thread, so an idle controller
 * with four guests woke four times a second at 1 s; at 5 s it is under one.
 */
const SLEEP_RECHECK_MS = 5000;
/**
 * Poll mode on contended cores: empty passes in a row before the poller asks
 * whether to sleep on the kick instead (a few passes catch a request that
 * follows a completion at once, without a wake-up).
 */
export const POLL_IDLE_PASSES = 8;
/** ...and only when a pass with work takes at least this many requests on average (smoothed): a kick then serves a burst. */
export const POLL_SLEEP_MIN_BURST = 2;
/** Requests taken from one queue per pass: a queue's worth at QD32, small enough to interleave guests. */
export const QUEUE_BUDGET = 32;
/**
 * The longest the loop spins for short io_uring I/O in flight without a
 * completion (µs), when the queue's own waits say spinning does not pay. A
 * sync write to a file volume completes in ~300-400 µs (p50; #8) and is spun
 * for; I/O that has not completed after this waits on a busy disk, and a
 * wake-up (tens of µs) is cheap beside it. Bounds the CPU one slow request
 * costs the loop.
 */
export const ENGINE_SPIN_MAX_US = 1000;
/**
 * After a spin for a queue's engine I/O ran out (ENGINE_SPIN_MAX_US), its next
 * 1, 2, 4, ... takes (at most this many) are not spun for; one caught within
 * the bound starts over. A disk that stays slow then costs one bounded spin
 * per ENGINE_SKIP_MAX requests; one slow sync write, one request.
 */
export const ENGINE_SKIP_MAX = 64;

export class Poller {
  private entries: Entry[] = [];
  private next = 0;
  private scheduled = false;
  private stopped = false;
  private engineSpinning = false;
  readonly counters = { iterations: 0, requests: 0, sleeps: 0, wakeups: 0, completionsPolled: 0, busyPasses: 0, idlePasses: 0, contendedSleeps: 0, engineHeldPasses: 0, engineSpinsStopped: 0 };
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
  /** Poll-mode queues sleep on their kick while the core is contended (STORVISOR_POLL_YIELD=0: never, to compare). */
  private readonly pollYields: boolean;
  /** ENGINE_SPIN_MAX_US (tests inject their own). */
  private readonly engineSpinMaxUs: number;
  /** When the engine's short I/O last started from idle or completed (performance.now() ms). */
  private engineSince = 0;
  /** engine.inFlight at the end of the last pass (0 after the loop stopped). */
  private engineSeen = 0;
  /** This pass's verdict of engineFree (computed once per pass). */
  private engineWorth = false;

  constructor(
    private readonly spinBudgetUs: number,
    private readonly engine?: IoEngine,
    options: { spinOnEngine?: boolean; queueBudget?: number; contention?: ContentionMeter | false; pollYields?: boolean; engineSpinMaxUs?: number } = {},
  ) {
    this.engineSpinMaxUs = options.engineSpinMaxUs ?? ENGINE_SPIN_MAX_US;
    this.pollYields = options.pollYields ?? process.env.STORVISOR_POLL_YIELD !== '0';
    this.contention = options.contention === false ? null : (options.contention ?? new CoreContention());
    this.queueBudget = options.queueBudget ?? QUEUE_BUDGET;
    this.spinOnEngine = (options.spinOnEngine ?? true) && engine?.kind === 'io_uring';
    if (this.spinOnEngine && engine) engine.onBusy = () => this.schedule();
  }

  add(queue: PolledQueue, mode: NotifyMode): void {
    const entry: Entry = { queue, mode, spinning: false, lastWork: performance.now(), removed: false, waits: new QueueWaits(), idlePasses: 0, burst: 1, engineHolding: false, engineSkip: 0, engineSkipping: false, engineBackoff: 0 };
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
    this.engineWorth = this.engineFree(now);
    let declined = false;
    for (let k = 0; k < count; k++) {
      const entry = entries[(start + k) % count]!;
      if (!entry.spinning) {
        // Asleep while its flush syncs: the engine's eventfd brings the completion (no spin for it below).
        if ((entry.queue.syncing ?? 0) > 0) declined = true;
        continue;
      }
      const n = entry.queue.poll(this.queueBudget);
      const inFlight = entry.queue.inFlight;
      // Nothing in flight but flushes in their fdatasync (a millisecond or more
      // of the disk): not worth a spin whatever the queue's waits say, as a
      // wake-up costs tens of µs (#10: the loop spun 30-60 passes per database
      // log batch through them).
      const syncOnly = inFlight > 0 && inFlight === (entry.queue.syncing ?? 0);
      if (entry.engineHolding && entry.waits.seen + n > inFlight) {
        // A completion within the bound while spinning for the engine: worth it, start over.
        entry.engineHolding = false;
        entry.engineBackoff = 0;
      }
      entry.waits.observe(now, n, inFlight, this.spinBudgetUs);
      if (n > 0) {
        entry.engineSkipping = entry.engineSkip > 0;
        if (entry.engineSkipping) entry.engineSkip -= Math.min(n, entry.engineSkip);
        anyWork = true;
        this.counters.requests += n;
        entry.lastWork = now;
        entry.idlePasses = 0;
        entry.burst += (n - entry.burst) / 8;
      } else if (entry.queue.broken) {
        entry.spinning = false; // a broken queue is never serviced again
        continue;
      } else if (inFlight > 0 && !syncOnly && (entry.waits.wait.pays || this.engineHolds(entry, now))) {
        // The guest's next request tends to follow a completion: the budget starts after the last one.
        // Short io_uring I/O in flight (a 4 KiB read or a sync write) is reaped by this very loop:
        // spinning for it saves a wake-up however the queue's waits measure, while it is worth it
        // (engineHolds); slow completions (RBD, long transfers: not in the engine's count)
        // follow InFlightWait.
        entry.lastWork = now;
        if (!entry.waits.wait.pays) this.counters.engineHeldPasses++;
      } else if (entry.mode === 'adaptive') {
        if (inFlight > 0 && (this.engineWorth || syncOnly)) declined = true;
        // Idle, or waiting for completions too slow to spin for (InFlightWait):
        // the budget runs from the last request taken or completion seen.
        if (entry.waits.lastEvent > entry.lastWork) entry.lastWork = entry.waits.lastEvent;
        const contended = this.contention !== null && this.contention.contended(now);
        // After a take, with completions too slow to spin for in flight, the guest's next
        // request follows a completion, not the take: sleep now (its kick wakes us). So
        // while only a flush's fdatasync is in flight: the writes it covers are held for it.
        const afterTake = inFlight > 0 && (entry.waits.lastWasTake || syncOnly);
        if (contended || afterTake || (now - entry.lastWork) * 1000 > this.spinBudgetUs) {
          this.sleep(entry);
          if (!entry.spinning) {
            if (contended) this.counters.contendedSleeps++;
            continue;
          }
        }
      } else if (entry.mode === 'poll' && this.pollYields && ++entry.idlePasses >= POLL_IDLE_PASSES) {
        // One spinner, not two: while other threads want this core, a poll
        // queue with nothing to do sleeps on its kick instead of spinning. The
        // guest still spins on its used ring, and the next burst costs one kick:
        // worth it only when requests come in bursts (queue depth), not one at
        // a time (QD1 would pay a wake-up per request).
        if (entry.burst >= POLL_SLEEP_MIN_BURST && this.contention !== null && this.contention.contended(now)) {
          entry.idlePasses = 0;
          this.sleep(entry);
          if (!entry.spinning) {
            this.counters.contendedSleeps++;
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
      const engineInFlight = this.engine.inFlight;
      if (reaped > 0 || (engineInFlight > 0 && this.engineSeen === 0)) this.engineSince = now;
      // A queue that declined to spin for its I/O (too slow) declines for the engine too.
      if (engineInFlight > 0 && this.spinOnEngine && !anySpinning && !declined) {
        // Checked again: a queue's take this pass may have just started the engine's I/O.
        if (this.engineFree(now) && (now - this.engineSince) * 1000 <= this.engineSpinMaxUs) anySpinning = true;
        else this.counters.engineSpinsStopped++;
      }
      this.engineSeen = anySpinning ? engineInFlight : 0;
    }
    if (anyWork) this.counters.busyPasses++;
    else this.counters.idlePasses++;
    this.setEngineSpinning(anySpinning);
    if (!anySpinning) return;
    if (!anyWork) yieldCpu();
    this.schedule();
  };

  /**
   * This loop reaps the engine, short I/O is in flight there (see
   * engine.inFlight's SPIN_MAX_BYTES), and no other thread wants this core
   * (CoreContention: a spin would take the core from the guest or the client).
   * The engine alone (no queue spinning) is spun for at most engineSpinMaxUs
   * since it last started from idle or completed something (I/O that takes
   * longer waits on a busy disk: its eventfd wakes the loop).
   */
  private engineFree(now: number): boolean {
    if (!this.spinOnEngine || this.engine!.inFlight === 0) return false;
    return this.contention === null || !this.contention.contended(now);
  }

  /**
   * Whether a queue with requests in flight, whose own waits say a spin does
   * not pay, spins for the engine's short I/O: while engineFree, not during a
   * skip, and for at most engineSpinMaxUs since its last request taken or
   * completion seen; a spin that runs out starts a skip (ENGINE_SKIP_MAX).
   */
  private engineHolds(entry: Entry, now: number): boolean {
    if (!this.engineWorth) {
      entry.engineHolding = false;
      return false;
    }
    if (entry.engineSkipping) return false;
    if ((now - entry.waits.lastEvent) * 1000 > this.engineSpinMaxUs) {
      entry.engineHolding = false;
      entry.engineBackoff = Math.min(ENGINE_SKIP_MAX, entry.engineBackoff * 2 || 1);
      entry.engineSkip = entry.engineBackoff;
      entry.engineSkipping = true;
      this.counters.engineSpinsStopped++;
      return false;
    }
    entry.engineHolding = true;
    return true;
  }

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
      entry.waits.resume(entry.lastWork, queue.inFlight);
      this.schedule();
    });
  }
}
