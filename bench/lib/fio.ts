import { spawn } from 'node:child_process';

/** One fio measurement: IOPS and completion-latency percentiles (µs). */
export interface FioResult {
  iops: number;
  p50Us: number;
  p99Us: number;
  /** Requests completed in the run. */
  ios: number;
  /** Flushes (fio's syncs: --fsync, --end_fsync) completed, and their latency percentiles (µs; NaN without any). */
  flushes: number;
  flushP50Us: number;
  flushP99Us: number;
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
        const sync = job.sync ?? {};
        const spct = sync.lat_ns?.percentile ?? {};
        resolve({
          iops: side.iops, p50Us: (pct['50.000000'] ?? NaN) / 1000, p99Us: (pct['99.000000'] ?? NaN) / 1000, ios: side.total_ios, fioCpuSec,
          flushes: sync.total_ios ?? 0, flushP50Us: (spct['50.000000'] ?? NaN) / 1000, flushP99Us: (spct['99.000000'] ?? NaN) / 1000,
        });
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

/**
 * How durable a write row's writes are, asked of every target alike:
 * - 'write-back': plain writes, which may complete in a volatile cache (the
 *   page cache), then one flush at the end (--end_fsync=1);
 * - 'durable': every write durable before the next flush completes, one flush
 *   per write (--fsync=1).
 */
export type WriteDurability = 'write-back' | 'durable';

/**
 * fio's arguments for `durability`, after the target's own (later options win).
 * fio's nbd engine (engines/nbd.c) sends every WRITE with flags 0, so it cannot
 * ask for FUA; its DDIR_SYNC is nbd_aio_flush (an NBD FLUSH), which --fsync=N
 * and --end_fsync issue; DDIR_DATASYNC (--fdatasync) is refused with EINVAL. So
 * a durable NBD write is a WRITE and a FLUSH. On the raw file a durable write is
 * O_DIRECT + O_DSYNC (--sync=dsync), and a write-back one goes through the page
 * cache (--direct=0, what a server's plain write does) with an fsync at the end.
 */
export function durabilityArgs(rawFile: boolean, durability: WriteDurability): string[] {
  // The raw file's durable write is O_DSYNC: its latency is the write's. An NBD one is a WRITE and then its FLUSH (see durableLatency).
  if (durability === 'durable') return rawFile ? ['--sync=dsync'] : ['--fsync=1'];
  return rawFile ? ['--direct=0', '--end_fsync=1'] : ['--end_fsync=1'];
}

/**
 * A durable write's latency percentiles (µs): the write's, plus its flush's
 * where the write and its flush are two requests (fio's nbd engine). A sum of
 * percentiles, not a percentile of sums: at QD1 the write and its flush are
 * sequential, so the p50s add up to about the pair's p50.
 */
export function durableLatency(r: FioResult): { p50Us: number; p99Us: number } {
  if (r.flushes < r.ios / 2) return { p50Us: r.p50Us, p99Us: r.p99Us };
  return { p50Us: r.p50Us + r.flushP50Us, p99Us: r.p99Us + r.flushP99Us };
}
