import { spawn } from 'node:child_process';

/** One fio measurement: IOPS and completion-latency percentiles (µs). */
export interface FioResult {
  iops: number;
  p50Us: number;
  p99Us: number;
  /** Requests completed in the run. */
  ios: number;
  /** CPU seconds fio itself used (user + system over its run; with the rbd engine, its librbd threads too). */
  fioCpuSec: number;
}

export function runFio(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<FioResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('fio', [...args, '--output-format=json'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`fio ${args.join(' ')} failed (${code}): ${err}`));
      try {
        const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
        if (job.error) return reject(new Error(`fio job error ${job.error}`));
        const side = job.read.total_ios > 0 ? job.read : job.write;
        const pct = side.clat_ns.percentile ?? {};
        const fioCpuSec = ((job.usr_cpu + job.sys_cpu) / 100) * (job.elapsed ?? job.job_runtime / 1000);
        resolve({ iops: side.iops, p50Us: (pct['50.000000'] ?? NaN) / 1000, p99Us: (pct['99.000000'] ?? NaN) / 1000, ios: side.total_ios, fioCpuSec });
      } catch (e) {
        reject(new Error(`cannot parse fio output: ${(e as Error).message}\n${out.slice(0, 500)}`));
      }
    });
  });
}

export function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
