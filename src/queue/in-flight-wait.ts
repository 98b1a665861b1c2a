/**
 * Whether spinning for an in-flight request's completion pays (#17), for the
 * controller's poller and the guest's driver alike: both time how long they
 * wait for the next completion while requests are in flight (from their last
 * event: a request taken or submitted, or a completion). Spinning pays when
 * that wait is within the spin budget (a file volume: tens of µs); when it is
 * longer (an RBD request: hundreds of µs to ms; a slow disk) a spin costs more
 * CPU than the wake-up it saves, and on a shared machine takes the core that
 * librbd's threads and the OSD need.
 *
 * The estimate is the share of waits longer than the budget (an EWMA of 0/1),
 * and spinning pays while it is under one half: the median wait is within the
 * budget. A median, not a mean: on a loaded machine a waiting thread is now and
 * then descheduled for milliseconds, and such outliers must not stop the
 * spinning of a fast volume. It also stays honest while the side does not
 * spin: a side that waits out the budget and then sleeps still sees every
 * completion inside the budget (a 0), and one that came later was longer (a 1).
 */
export class InFlightWait {
  /** EWMA of "the wait was longer than the budget"; 0 before the first (spin, as for a fast volume). */
  private over = 0;

  /** Record one wait: `us` long, against a spin budget of `budgetUs`. */
  record(us: number, budgetUs: number): void {
    this.over += ((us > budgetUs ? 1 : 0) - this.over) / EWMA_WEIGHT;
  }

  /** Record a wait known only to be longer than the budget (it completed while the side slept). */
  recordLong(): void {
    this.over += (1 - this.over) / EWMA_WEIGHT;
  }

  /** Spin while requests are in flight: their completions mostly come within the budget. */
  get pays(): boolean {
    return this.over < 0.5;
  }

  /** The share of recent waits longer than the budget (0..1), for stats and tests. */
  get longShare(): number {
    return this.over;
  }
}

/** Weight of a new wait: 1/8 (a handful of requests to follow a change; one outlier moves it by 1/8). */
const EWMA_WEIGHT = 8;
