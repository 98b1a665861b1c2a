import { StayAwake } from '../net/stay-awake.ts';
import { CoreContention } from '../native/contention.ts';
import { RunnableMeter, eitherMeter, lazyMeter } from '../native/runnable-meter.ts';

/**
 * The NBD server's stay-awake after a reply (net/stay-awake.ts, the file
 * server's too): a QD1 client's next request then finds this thread running
 * instead of asleep in epoll_wait. Traced on this VM, a 4 KiB read miss's
 * io_uring_enter took 18–19 µs from a loop that never sleeps and 28–31 µs
 * after a 1 ms sleep, and every request paid the thread's wake-up; with a
 * 150 µs budget the controller export's read hit QD1 p50 went 55 → 41 µs and
 * its miss p50 142 → 114 µs (issue #8, block bench, same machine).
 *
 * Bounds: the spin's own (budget per reply, waste share per window), and no
 * spin while another thread wants this core or the machine's runnable threads
 * outnumber its cores (the meters are made on first use, on the serving
 * thread). STORVISOR_NBD_AWAKE_US sets the budget, 0 turns it off.
 */
const DEFAULT_AWAKE_US = 150;
const awakeUs = Number(process.env.STORVISOR_NBD_AWAKE_US ?? DEFAULT_AWAKE_US);

/** This thread's stay-awake, or null when turned off. */
export const loopAwake: StayAwake | null =
  Number.isFinite(awakeUs) && awakeUs > 0
    ? new StayAwake({ budgetUs: Math.min(awakeUs, 1000), contention: lazyMeter(() => eitherMeter(new CoreContention(), new RunnableMeter())) })
    : null;
