import { performance } from 'node:perf_hooks';

/**
 * The controller process's own cost, for /status, /metrics and `storvisor top`:
 * CPU time (all threads: the poller, the engine, thread guests), memory, and
 * the main thread's event-loop utilisation. Cumulative values only, so a
 * reader computes rates and shares over its own interval.
 *
 * The main thread is where the poller runs: while it spins (or works) the
 * event loop is active; while every queue sleeps it is idle in epoll. So the
 * share of event-loop idle time over an interval is the poller's sleep share,
 * and the rest is its spin-or-work share (the poller's busy/idle pass counts
 * tell work from spin).
 */
export interface ProcessSample {
  pid: number;
  uptimeSeconds: number;
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  residentBytes: number;
  heapUsedBytes: number;
  /** Cumulative event-loop time since start, ms: active (spinning or working) and idle (asleep). */
  eventLoopActiveMs: number;
  eventLoopIdleMs: number;
}

export function processStats(): ProcessSample {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  const elu = performance.eventLoopUtilization();
  return {
    pid: process.pid,
    uptimeSeconds: process.uptime(),
    cpuUserSeconds: cpu.user / 1e6,
    cpuSystemSeconds: cpu.system / 1e6,
    residentBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    eventLoopActiveMs: elu.active,
    eventLoopIdleMs: elu.idle,
  };
}
