import { spawn } from 'node:child_process';

/** One fio measurement: IOPS and completion-latency percentiles (µs). */
export interface FioResult {
  iops: number;
  p50Us: number;
  p99Us: number;
  /** Requests completed in the run. */
  ios: number;
  /**
   * CPU seconds of the whole fio process tree over its life (user + system:
   * the main process, the job processes and every thread, librbd's included),
   * from the shell's `times` after fio exits. fio's own usr_cpu/sys_cpu are
   * RUSAGE_THREAD figures: they leave out the rbd engine's librbd threads,
   * about 4/5 of its CPU (measured in #17).
   */
  fioCpuSec: number;
}

export function runFio(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<FioResult> {
  return new Promise((resolve, reject) => {
    // `times` prints the shell's children's CPU (fio and everything it waited for) on fd 3.
    const child = spawn('bash', ['-c', 'fio "$@"; rc=$?; times >&3; exit $rc', 'fio', ...args, '--output-format=json'], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    let times = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    child.stdio[3]!.on('data', (d) => (times += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`fio ${args.join(' ')} failed (${code}): ${err}`));
      try {
        const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
        if (job.error) return reject(new Error(`fio job error ${job.error}`));
        const side = job.read.total_ios > 0 ? job.read : job.write;
        const pct = side.clat_ns.percentile ?? {};
        const fioCpuSec = childrenCpuSeconds(times);
        resolve({ iops: side.iops, p50Us: (pct['50.000000'] ?? NaN) / 1000, p99Us: (pct['99.000000'] ?? NaN) / 1000, ios: side.total_ios, fioCpuSec });
      } catch (e) {
        reject(new Error(`cannot parse fio output: ${(e as Error).message}\n${out.slice(0, 500)}`));
      }
    });
  });
}

/** The second line of bash's `times` ("0m1.234s 0m0.567s": children's user and system time) in seconds. */
function childrenCpuSeconds(times: string): number {
  const line = times.trim().split('\n')[1] ?? '';
  let sum = 0;
  for (const m of line.matchAll(/(\d+)m([\d.]+)s/g)) sum += Number(m[1]) * 60 + Number(m[2]);
  return sum;
}

export function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
