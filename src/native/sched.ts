import { readdirSync, readFileSync } from 'node:fs';
import { native } from './addon.ts';

/**
 * Where threads run and at what priority: applied through the addon, read
 * back from /proc (what was really applied, not what was asked).
 */
export type PriorityRequest = { nice: number } | { policy: 'fifo' | 'rr'; rtPriority: number };

/** What /proc says about one process (its threads can differ; this is the union / the set of values seen). */
export interface SchedReadback {
  pid: number;
  threads: number;
  /** Cpus_allowed_list of every thread, distinct values ("0", "0-1"). */
  affinity: string[];
  /** Nice values seen across threads. */
  nice: number[];
  /** Scheduling policies seen across threads (other, fifo, rr, batch, idle). */
  policy: string[];
  rtPriority: number[];
}

const POLICIES = ['other', 'fifo', 'rr', 'batch', 'iso', 'idle', 'deadline'];

/** The CPUs this process may run on, as it started (before anything here pinned a thread). */
export const startAffinity: number[] = (() => {
  try {
    return native?.getAffinity() ?? [];
  } catch {
    return [];
  }
})();

function tids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

/** A CPU list as Linux prints it ("0-2,5"). */
export function formatCpuList(cpus: number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

export function readSched(pid: number): SchedReadback {
  const affinity = new Set<string>();
  const nice = new Set<number>();
  const policy = new Set<string>();
  const rt = new Set<number>();
  let threads = 0;
  for (const tid of tids(pid)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(status);
      if (m) affinity.add(m[1]!);
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces): state is field 3.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      nice.add(Number(f[19 - 3]));
      rt.add(Number(f[40 - 3]));
      policy.add(POLICIES[Number(f[41 - 3])] ?? `policy ${f[41 - 3]}`);
      threads++;
    } catch {
      // The thread ended while we looked.
    }
  }
  return { pid, threads, affinity: [...affinity], nice: [...nice], policy: [...policy], rtPriority: [...rt] };
}

/**
 * Pin every thread of `pid` to `cpus` (threads created later inherit from
 * their creator). Returns the error message of the first refusal, or null.
 */
export function pinProcess(pid: number, cpus: number[]): string | null {
  if (!native) return 'the native addon is not available';
  let refused: string | null = null;
  for (const tid of tids(pid)) {
    try {
      native.setThreadAffinity(tid, cpus);
    } catch (err) {
      refused ??= (err as Error).message;
    }
  }
  return refused;
}

/** Apply a priority to every thread of `pid` (or, with pid 0, to the calling thread only). Returns a refusal or null. */
export function prioritise(pid: number, p: PriorityRequest): string | null {
  if (!native) return 'the native addon is not available';
  const apply = (tid: number) => {
    if ('nice' in p) {
      native!.setThreadScheduler(tid, 0, 0);
      native!.setThreadNice(tid, p.nice);
    } else {
      native!.setThreadScheduler(tid, p.policy === 'fifo' ? 1 : 2, p.rtPriority);
    }
  };
  let refused: string | null = null;
  for (const tid of pid === 0 ? [0] : tids(pid)) {
    try {
      apply(tid);
    } catch (err) {
      refused ??= (err as Error).message;
    }
  }
  return refused;
}

/**
 * Run `fn` (a spawn) with the calling thread pinned to `cpus`, then restore
 * its mask: the child is born on its cores, so no thread of it ever ran
 * elsewhere. Without the addon, runs fn unpinned.
 */
export function withAffinity<T>(cpus: number[] | undefined, fn: () => T): T {
  if (!native) return fn();
  const before = native.getAffinity();
  const want = cpus ?? (startAffinity.length ? startAffinity : before);
  const same = want.length === before.length && want.every((c, i) => c === before[i]);
  if (same) return fn();
  native.setAffinity(want);
  try {
    return fn();
  } finally {
    native.setAffinity(before);
  }
}

/** Pin and prioritise the calling thread (the controller's poller). */
export function pinSelf(cpus: number[] | undefined, p: PriorityRequest | undefined): { refused: string[]; tid: number } {
  const refused: string[] = [];
  if (!native) return { refused: ['the native addon is not available'], tid: process.pid };
  if (cpus) {
    try {
      native.setAffinity(cpus);
    } catch (err) {
      refused.push(`affinity: ${(err as Error).message}`);
    }
  }
  if (p) {
    const r = prioritise(0, p);
    if (r) refused.push(`priority: ${r}`);
  }
  return { refused, tid: native.gettid() };
}

/** One thread's affinity and priority as /proc shows them. */
export function readThread(pid: number, tid: number): { affinity: string; nice: number; policy: string; rtPriority: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      affinity: /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? '?',
      nice: Number(f[19 - 3]),
      policy: POLICIES[Number(f[41 - 3])] ?? `policy ${f[41 - 3]}`,
      rtPriority: Number(f[40 - 3]),
    };
  } catch {
    return null;
  }
}
