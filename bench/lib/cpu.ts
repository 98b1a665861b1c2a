import { readFileSync, readdirSync } from 'node:fs';

/**
 * CPU time, for "cost next to speed": this process (the controller, with its
 * guest threads) through process.cpuUsage(), other processes (a gateway, a
 * peer server) through /proc/PID/stat. Seconds of user + system time.
 */
const TICKS = 100; // USER_HZ on Linux

/** User + system seconds from a /proc stat file (a process's, or a thread's under /proc/PID/task); throws if it is gone. */
export function statCpuSeconds(path: string): number {
  const stat = readFileSync(path, 'utf8');
  // Fields after the command name (which may hold spaces) start at the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS; // utime, stime
}

export function processCpuSeconds(pid: number): number {
  try {
    return statCpuSeconds(`/proc/${pid}/stat`);
  } catch {
    return 0;
  }
}

export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** CPU seconds used by this process and `pids` between start() and the returned function's call. */
export function cpuMeter(pids: () => number[]): () => number {
  const ps = pids();
  const before = selfCpuSeconds() + ps.reduce((a, p) => a + processCpuSeconds(p), 0);
  return () => selfCpuSeconds() + ps.reduce((a, p) => a + processCpuSeconds(p), 0) - before;
}

/** This process's live children (a gateway, a peer server), from /proc. */
export function childPids(): number[] {
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
