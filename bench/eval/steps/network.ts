import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDeployment } from '../../lib/deployment.ts';
import { freePort } from '../../lib/net.ts';
import { redisTarget } from '../../database.ts';
import { Samples, asDeployment, overheadRow, type EvalContext } from '../context.ts';
import type { Section } from '../report.ts';
import { hasTool } from '../tools.ts';

const run = promisify(execFile);

/** redis-benchmark's CSV, one entry per test (SET, GET, ...): requests per second and p50/p99 in µs. */
export function parseRedisCsvTests(csv: string): Map<string, { rps: number; p50Us: number; p99Us: number }> {
  const out = new Map<string, { rps: number; p50Us: number; p99Us: number }>();
  for (const l of csv.trim().split('\n')) {
    if (!l.startsWith('"') || l.startsWith('"test"')) continue;
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    const cols = l.split(',').map((x) => x.replace(/"/g, ''));
    const f = cols.map(Number);
    if (Number.isFinite(f[1])) out.set(cols[0]!, { rps: f[1]!, p50Us: (f[4] ?? NaN) * 1000, p99Us: (f[6] ?? NaN) * 1000 });
  }
  if (out.size === 0) throw new Error(`cannot read redis-benchmark output: ${csv.slice(0, 200)}`);
  return out;
}

/** redis-benchmark's CSV line for its first test: requests per second and the p50 latency in µs. */
export function parseRedisCsv(csv: string): { rps: number; p50Us: number } {
  const { rps, p50Us } = [...parseRedisCsvTests(csv).values()][0]!;
  return { rps, p50Us };
}

/** sockperf ping-pong's percentile 50 (it reports one-way latency: half the round trip). */
export function parseSockperf(text: string): { rttUs: number } {
  const m = /percentile 50\.000\s*=\s*([\d.]+)/.exec(text);
  if (!m) throw new Error(`cannot read sockperf output: ${text.slice(-300)}`);
  return { rttUs: Number(m[1]) * 2 };
}

/**
 * Rows 4 and 5: round trips of a tiny request (RESP PING, one client) to the
 * database function in each deployment, against redis-server and sockperf (C,
 * the machine's limit); and a stream of data through a function (NBD
 * sequential reads from the cache), against iperf3 on loopback.
 */
export async function networkStep(ctx: EvalContext): Promise<Section[]> {
  const requests = ctx.quick ? 2000 : 20000;
  const s = new Samples();
  const peers = ['redis-server', 'sockperf (C)'];
  const columns = [...ctx.deployments.map((d) => d.label), ...peers];
  const [P50, TPS] = ['ping round trip p50', 'request-response rate'];
  const ping = async (label: string, port: number) => {
    const { stdout } = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-c', '1', '-n', String(requests), '-t', 'ping_mbulk', '--csv'], { timeout: 300_000 });
    const r = parseRedisCsv(stdout);
    s.add(P50, label, r.p50Us);
    s.add(TPS, label, r.rps);
    ctx.progress.step(`network ping ${label}: ${r.p50Us.toFixed(0)} µs, ${Math.round(r.rps)}/s`, requests / 10000);
  };
  for (let rep = 0; rep < ctx.repeats; rep++) {
    for (const d of ctx.deployments) {
      if (d.unsupported) {
        s.skip(P50, d.label, d.unsupported);
        s.skip(TPS, d.label, d.unsupported);
        continue;
      }
      const dep = await startDeployment(asDeployment(d), { function: 'database', options: { appendfsync: 'always' }, volumeMiB: 128, cacheMiB: 16 });
      try {
        await ping(d.label, dep.port);
      } finally {
        await dep.stop();
      }
    }
    const dir = mkdtempSync(join(ctx.dir, 'storvisor-eval-redis-'));
    const redis = await redisTarget('always').start(dir);
    try {
      await ping('redis-server', redis.port);
    } finally {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    if (hasTool('sockperf')) {
      const port = await freePort();
      const server = spawn('sockperf', ['sr', '--tcp', '-i', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
      try {
        let out = '';
        for (let attempt = 0; attempt < 50 && !out.includes('percentile'); attempt++) {
          const r = await run('sockperf', ['pp', '--tcp', '-i', '127.0.0.1', '-p', String(port), '-t', String(Math.max(1, Math.round(ctx.seconds)))]).catch((e) => ({ stdout: String(e.stdout ?? '') }));
          out = r.stdout;
          if (!out.includes('percentile')) await sleep(100); // the server is still binding
        }
        const { rttUs } = parseSockperf(out);
        s.add(P50, 'sockperf (C)', rttUs);
        s.add(TPS, 'sockperf (C)', 1e6 / rttUs);
        ctx.progress.step(`network sockperf: ${rttUs.toFixed(0)} µs round trip`, ctx.seconds);
      } finally {
        server.kill('SIGTERM');
        if (server.exitCode === null) await once(server, 'exit');
      }
    } else {
      s.skip(P50, 'sockperf (C)', 'sockperf is not installed (apt-get install sockperf)');
      s.skip(TPS, 'sockperf (C)', 'sockperf is not installed (apt-get install sockperf)');
    }
  }
  const overhead = overheadRow(s, P50, ctx.deployments.map((d) => d.label), 'guest overhead over integrated, ping round trip', '0%');
  return [{
    id: 'network',
    title: 'Network latency: ping round trips to a function',
    columns,
    rows: [
      { name: P50, unit: 'µs', better: 'lower', cells: s.cells(P50, columns) },
      overhead,
      { name: TPS, unit: 'requests/s', better: 'higher', cells: s.cells(TPS, columns), paper: 'netperf overhead negligible' },
    ],
    notes: [
      `redis-benchmark -c 1 -n ${requests} -t ping_mbulk against the database function (appendfsync always; PING touches no disk) and redis-server 7; sockperf ping-pong over loopback TCP is the machine's limit (its one-way figure doubled).`,
    ],
  }, ...(await streamSection(ctx))];
}

/** Row 5, stream half: MB/s through an nbd-export function from the cache, and iperf3 on loopback. */
async function streamSection(ctx: EvalContext): Promise<Section[]> {
  const { runFio } = await import('../../lib/fio.ts');
  const s = new Samples();
  const columns = [...ctx.deployments.map((d) => d.label), 'iperf3'];
  const row = 'stream';
  for (let rep = 0; rep < ctx.repeats; rep++) {
    for (const d of ctx.deployments) {
      if (d.unsupported) {
        s.skip(row, d.label, d.unsupported);
        continue;
      }
      const dep = await startDeployment(asDeployment(d), { function: 'nbd-export', options: { exportName: 'vol' }, volumeMiB: 64, cacheMiB: 64 });
      try {
        const uri = [`--ioengine=nbd`, `--uri=nbd://${dep.host}:${dep.port}/vol`];
        const common = ['--name=s', '--bs=1M', '--iodepth=4', '--size=32M', ...uri];
        await runFio([...common, '--rw=write']); // data, then the timed pass reads it from the cache
        const r = await runFio([...common, '--rw=read', '--time_based', `--runtime=${ctx.seconds}`]);
        s.add(row, d.label, r.iops); // 1 MiB requests: IOPS are MiB/s
        ctx.progress.step(`stream ${d.label}: ${Math.round(r.iops)} MiB/s`, ctx.seconds);
      } finally {
        await dep.stop();
      }
    }
    if (hasTool('iperf3')) {
      const port = await freePort();
      const server = spawn('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
      try {
        let bps = NaN;
        for (let attempt = 0; attempt < 50 && !Number.isFinite(bps); attempt++) {
          try {
            const { stdout } = await run('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(Math.max(1, Math.round(ctx.seconds))), '-J']);
            bps = JSON.parse(stdout).end.sum_received.bits_per_second;
          } catch {
            await sleep(100); // the server is still binding
          }
        }
        s.add(row, 'iperf3', bps / 8 / 2 ** 20);
        ctx.progress.step(`stream iperf3: ${Math.round(bps / 8 / 2 ** 20)} MiB/s`, ctx.seconds);
      } finally {
        server.kill('SIGTERM');
        if (server.exitCode === null) await once(server, 'exit');
      }
    } else s.skip(row, 'iperf3', 'iperf3 is not installed (apt-get install iperf3)');
  }
  return [{
    id: 'stream',
    title: 'Network stream through a function',
    columns,
    rows: [{ name: 'sequential read from the cache over NBD', unit: 'MiB/s', better: 'higher', cells: s.cells(row, columns) }],
    notes: ['fio nbd engine, 1 MiB reads, 4 in flight, 32 MiB already in the controller cache; iperf3 over loopback TCP is the limit.'],
  }];
}
