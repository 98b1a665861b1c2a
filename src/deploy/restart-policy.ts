import type { RestartPolicy } from '../config/config.ts';

/**
 * When to bring a stopped function back. A crash is never final: a client can
 * crash a function on purpose (a hostile request, a memory bomb), and a
 * function that stays down after a few of those is a denial of service that
 * the client chose. So a crashing function keeps coming back, and only the
 * delay grows: exponential back-off from `baseMs`, capped at `maxMs`, so a
 * crash loop costs at most one start every `maxMs`. A function that then runs
 * for `stableMs` has its back-off forgotten: its next crash restarts it fast.
 *
 * `never` stays down (the operator asked), and `on-failure` does not restart a
 * clean exit. The clock is injected so the schedule can be tested.
 */
export interface RestarterOptions {
  baseMs?: number;
  maxMs?: number;
  stableMs?: number;
  now?: () => number;
}

export interface RestartPlan {
  /** Milliseconds until the next start. */
  delayMs: number;
  /** When that start is due (epoch ms, from the injected clock). */
  at: number;
  /** Crashes since the function last ran stably, this one included. */
  consecutive: number;
}

export class Restarter {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly stableMs: number;
  private readonly now: () => number;
  private consecutive = 0;
  private lastStartAt: number | undefined;
  private pending: RestartPlan | null = null;

  constructor(
    private readonly policy: RestartPolicy,
    opts: RestarterOptions = {},
  ) {
    this.baseMs = opts.baseMs ?? 50;
    this.maxMs = opts.maxMs ?? 30_000;
    this.stableMs = opts.stableMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  /** The function is starting (first start or a restart): its uptime counts from here. */
  started(): void {
    this.lastStartAt = this.now();
    this.pending = null;
  }

  /** What to do after an exit: the restart plan, or null to stay down (policy only, never a crash count). */
  next(crashed: boolean): RestartPlan | null {
    this.pending = null;
    if (this.policy === 'never' || (this.policy === 'on-failure' && !crashed)) return null;
    const now = this.now();
    if (this.lastStartAt !== undefined && now - this.lastStartAt >= this.stableMs) this.consecutive = 0;
    this.consecutive++;
    const delayMs = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.consecutive - 1, 30));
    this.pending = { delayMs, at: now + delayMs, consecutive: this.consecutive };
    return this.pending;
  }

  /** The restart that is scheduled and not yet begun, for /status. */
  scheduled(): RestartPlan | null {
    return this.pending;
  }

  /** A stop cancels what was scheduled. */
  cancel(): void {
    this.pending = null;
  }
}

/** The scheduled restart as /status shows it, or null when none is due. */
export function restartStatus(r: Restarter): { at: string; inMs: number; consecutiveCrashes: number } | null {
  const plan = r.scheduled();
  if (!plan) return null;
  return { at: new Date(plan.at).toISOString(), inMs: Math.max(0, plan.at - Date.now()), consecutiveCrashes: plan.consecutive };
}
