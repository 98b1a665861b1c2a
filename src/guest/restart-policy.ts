import type { RestartPolicy } from '../config/config.ts';

/**
 * When to bring a stopped guest back: per policy, with exponential backoff, and
 * not at all once it has crashed too often in a short window (a crash loop is
 * reported, not hidden).
 */
export class Restarter {
  private crashes: number[] = [];

  constructor(
    private readonly policy: RestartPolicy,
    private readonly maxCrashes = 5,
    private readonly windowMs = 60_000,
  ) {}

  /** Delay before restarting after an exit, or null to stay down. */
  next(crashed: boolean, now = Date.now()): number | null {
    if (this.policy === 'never' || (this.policy === 'on-failure' && !crashed)) return null;
    this.crashes = this.crashes.filter((t) => now - t < this.windowMs);
    if (this.crashes.length >= this.maxCrashes) return null;
    this.crashes.push(now);
    return Math.min(5000, 50 * 2 ** (this.crashes.length - 1));
  }
}
