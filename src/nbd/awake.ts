import { StayAwake } from '../net/stay-awake.ts';

/**
 * The NBD export's stay-awake after a reply (net/stay-awake.ts, the file
 * server's too): a QD1 client's next request then finds this thread running
 * instead of asleep in epoll_wait. Opt-in (STORVISOR_NBD_AWAKE_US, default 0:
 * off) until it measures as a gain on a quiet machine (issue #8).
 *
 * Why it may pay: traced on this VM, a 4 KiB read miss's io_uring_enter took
 * 18–19 µs from a loop that never sleeps and 28–31 µs after a 1 ms sleep, and
 * its completion 28–32 µs against 39–44 µs: after a sleep the vCPU is cold.
 * Why it may not: on 2 cores shared with the client the spin takes the core
 * from whatever else runs there (under load it showed no consistent gain).
 */
const awakeUs = Number(process.env.STORVISOR_NBD_AWAKE_US ?? 0);

/** This thread's stay-awake, or null when off (the default). */
export const loopAwake: StayAwake | null = Number.isFinite(awakeUs) && awakeUs > 0 ? new StayAwake({ budgetUs: Math.min(awakeUs, 1000) }) : null;
