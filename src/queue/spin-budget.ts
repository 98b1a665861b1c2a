/**
 * How long an adaptive side spins before it arms a notification and sleeps.
 * Fixed when max == base (the default). With max > base it adapts like Linux
 * haltpoll / KVM halt_poll_ns: a sleep that ended within `max` means spinning
 * a little longer would have caught the event without a wake-up, so the budget
 * doubles (up to max); a sleep longer than `max` means spinning was wasted, so
 * it halves (down to base). On an oversubscribed machine wake-ups take longer
 * than a small fixed budget, and both sides then sleep on every request.
 */
export class SpinBudget {
  private budgetUs: number;

  constructor(readonly baseUs: number, readonly maxUs: number = baseUs) {
    if (!(baseUs >= 0) || !(maxUs >= baseUs)) throw new RangeError(`spin budget base ${baseUs} / max ${maxUs} invalid`);
    this.budgetUs = baseUs;
  }

  /** Current budget in milliseconds (performance.now() units). */
  get ms(): number {
    return this.budgetUs / 1000;
  }

  get us(): number {
    return this.budgetUs;
  }

  /** Record how long a sleep lasted (µs) and adapt. */
  slept(us: number): void {
    if (this.maxUs === this.baseUs) return;
    if (us <= this.maxUs) this.budgetUs = Math.min(this.maxUs, Math.max(this.budgetUs * 2, 1));
    else this.budgetUs = Math.max(this.baseUs, this.budgetUs / 2);
  }
}
