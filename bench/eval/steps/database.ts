import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDeployment } from '../../lib/deployment.ts';
import { redisTarget } from '../../database.ts';
import { Samples, asDeployment, type EvalContext } from '../context.ts';
import type { Cell, Row, Section } from '../report.ts';
import { ratioOf, summarize } from '../stats.ts';
import { parseRedisCsvTests } from './network.ts';

const run = promisify(execFile);
const PEER = 'redis-server';

/**
 * Peer row for the database: redis-benchmark SET and GET, 50 clients, 100 B values,
 * without and with pipelining, against the database function in each deployment
 * and redis-server, both with every write durable before its reply (AOF always).
 */
export async function databaseStep(ctx: EvalContext): Promise<Section[]> {
  const s = new Samples();
  const columns = [...ctx.deployments.map((d) => d.label), PEER];
  const shapes = [{ pipeline: 1, requests: ctx.quick ? 2000 : 5000 * ctx.seconds }, { pipeline: 16, requests: ctx.quick ? 10000 : 50000 * ctx.seconds }];
  const names = shapes.flatMap(({ pipeline }) => ['SET', 'GET'].map((t) => `${t} -P ${pipeline}`));
  const bench = async (label: string, port: number) => {
    for (const { pipeline, requests } of shapes) {
      const { stdout } = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'set,get', '-c', '50', '-P', String(pipeline), '-d', '100', '-n', String(requests), '-r', '10000', '--csv'], { timeout: 600_000 });
      const byTest = parseRedisCsvTests(stdout);
      for (const t of ['SET', 'GET']) s.add(`${t} -P ${pipeline}`, label, byTest.get(t)?.rps ?? NaN);
      ctx.progress.step(`database ${label} -P ${pipeline}: SET ${Math.round(byTest.get('SET')?.rps ?? 0)}/s, GET ${Math.round(byTest.get('GET')?.rps ?? 0)}/s`, ctx.seconds);
    }
  };
  for (let rep = 0; rep < ctx.repeats; rep++) {
    for (const d of ctx.deployments) {
      if (d.unsupported) {
        names.forEach((n) => s.skip(n, d.label, d.unsupported!));
        continue;
      }
      const dep = await startDeployment(asDeployment(d), { function: 'database', options: { appendfsync: 'always' }, volumeMiB: 512, cacheMiB: 64 });
      try {
        await bench(d.label, dep.port);
      } finally {
        await dep.stop();
      }
    }
    const dir = mkdtempSync(join(ctx.dir, 'storvisor-eval-redis-'));
    const redis = await redisTarget('always').start(dir);
    try {
      await bench(PEER, redis.port);
    } finally {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  // Each column over redis-server, from the medians of this run.
  const ratio = (name: string): Row => {
    const peer = summarize(s.values(name, PEER));
    const cells: Record<string, Cell> = {};
    for (const c of ctx.deployments.map((d) => d.label)) {
      const own = s.cells(name, [c])[c]!;
      cells[c] = 'skipped' in own ? own : { value: ratioOf(own.value, peer) };
    }
    return { name: `${name} ÷ redis-server`, unit: 'x', better: 'higher', cells, ...(name === 'SET -P 1' ? { headline: true } : {}) };
  };
  return [{
    id: 'database',
    title: 'Database: redis-benchmark SET and GET at equal durability',
    columns,
    rows: [...names.map((n): Row => ({ name: n, unit: 'requests/s', better: 'higher', cells: s.cells(n, columns) })), ...names.map(ratio)],
    notes: ['redis-benchmark -c 50 -d 100 -r 10000; the database function with appendfsync always (a write is answered once durable on its volume) and redis-server 7 with appendonly yes, appendfsync always, on the same disk.'],
  }];
}
