import { yieldCpu } from '../native/libc.ts';

/**
 * Keep this thread's event loop turning for a short while after a reply, so
 * the client's next request (a QD1 client answers within tens of µs) finds a
 * thread that is running instead of one asleep in epoll_wait: haltpoll's
 * idea, for the NBD export's socket side. Opt-in (STORVISOR_NBD_AWAKE_US,
 * default 0: off) until measured on a quiet machine (issue #8).
 *
 * Why it may pay: traced on this VM, a 4 KiB read miss's io_uring_enter took
 * 18–19 µs from a loop that never sleeps and 28–31 µs after a 1 ms sleep, and
 * its completion 28–32 µs against 39–44 µs: after a sleep the vCPU is cold
 * (and must be woken). A controller export at QD1 sleeps between every two
 * requests. Why it may not: each pass is a sched_yield and an Immediate; on
 * 2 cores shared with the client the spin takes the core from whatever else
 * runs there (under load it showed no consistent gain).
 *
 * While the loop turns, libuv polls its descriptors with a zero timeout each
 * pass (an Immediate is pending), so socket data is read as it arrives.
 */
export class LoopAwake {
  private until = 0;
  private running = false;
  /** Passes made (for tests and stats). */
  passes = 0;

  constructor(private readonly budgetMs: number) {}

  /** A reply went out: stay awake for the budget from now. */
  touch(): void {
    this.until = performance.now() + this.budgetMs;
    if (this.running) return;
    this.running = true;
    setImmediate(this.pass);
  }

  get awake(): boolean {
    return this.running;
  }

  private readonly pass = (): void => {
    if (performance.now() >= this.until) {
      this.running = false;
      return;
    }
    this.passes++;
    yieldCpu();
    setImmediate(this.pass);
  };
}

const awakeUs = Number(process.env.STORVISOR_NBD_AWAKE_US ?? 0);

/** This thread's keep-awake, or null when off (the default). */
export const loopAwake: LoopAwake | null = Number.isFinite(awakeUs) && awakeUs > 0 ? new LoopAwake(awakeUs / 1000) : null;
