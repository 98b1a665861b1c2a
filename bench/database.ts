/**
 * Database benchmark: redis-benchmark SET and GET (50 clients, without and
 * with pipelining -P 16, 100-byte and 4 KiB values) against the database
 * function integrated on a FileBlockDevice, and against redis-server with
 * appendonly yes in the same durability modes, data on the same disk.
 *
 *   node --import tsx bench/database.ts [--requests N] [--keys N]
 *
 * Then SET latency (p50, p99, max) with and without compaction running beside
 * the traffic (BGREWRITEAOF every 100 ms over a preloaded data set).
 *
 * Targets are a list: a deployment (guest, gateway) is one more entry whose
 * start() returns the port it serves on.
 */
import { freePort } from './lib/net.ts';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { FileBlockDevice } from '../src/block/file-device.ts';
import database from '../src/functions/database/index.ts';

const run = promisify(execFile);

export interface BenchTarget {
  name: string;
  start(dir: string): Promise<{ port: number; stop(): Promise<void> }>;
}

export function integratedTarget(appendfsync: 'always' | 'everysec'): BenchTarget {
  return {
    name: `storvisor integrated ${appendfsync}`,
    async start(dir) {
      const device = await FileBlockDevice.open(join(dir, `db-${appendfsync}.img`), 256 * 1024 * 1024);
      const fn = await database.start({
        device,
        listen: { host: '127.0.0.1', port: 0 },
        options: database.parseOptions!({ appendfsync }),
        instance: 'bench',
        log: () => {},
      });
      return {
        port: fn.address.port,
        async stop() {
          await fn.stop();
          await device.close();
        },
      };
    },
  };
}

export function redisTarget(appendfsync: 'always' | 'everysec'): BenchTarget {
  return {
    name: `redis-server aof ${appendfsync}`,
    async start(dir) {
      const port = await freePort();
      const child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
          '--appendfsync', appendfsync, '--dir', dir, '--appenddirname', `aof-${appendfsync}`],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      await new Promise<void>((resolve, reject) => {
        let text = '';
        child.stdout!.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes('Ready to accept connections')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
      });
      return {
        port,
        async stop() {
          child.kill('SIGTERM');
          await once(child, 'exit');
        },
      };
    },
  };
}

interface Row {
  target: string;
  test: string;
  pipeline: number;
  size: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
}

async function benchOne(port: number, pipeline: number, size: number, requests: number): Promise<Row[]> {
  const { stdout } = await run(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-t', 'set,get', '-c', '50', '-P', String(pipeline), '-d', String(size),
      '-n', String(requests), '-r', '10000', '--csv'],
    { timeout: 60_000 },
  );
  return stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => JSON.parse(`[${line}]`) as string[])
    // CSV columns: test, rps, avg, min, p50, p95, p99, max (ms)
    .map(([test, rps, , , p50, , p99, max]) => ({ target: '', test, pipeline, size, rps: Number(rps), p50: Number(p50), p99: Number(p99), max: Number(max) }));
}

/** Send BGREWRITEAOF every `everyMs` until stopped (replies ignored: redis-server refuses one while another runs). */
function compactionLoop(port: number, everyMs: number): { stop(): Promise<number> } {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.on('data', () => {});
  let sent = 0;
  const timer = setInterval(() => {
    socket.write('BGREWRITEAOF\r\n');
    sent++;
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      socket.end();
      await once(socket, 'close');
      return sent;
    },
  };
}

export interface CompactionRow {
  target: string;
  compacting: boolean;
  compactions: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * SET latency with and without compaction running beside the traffic: a data
 * set of `keys` 100-byte values is loaded, then redis-benchmark SET -P 1 runs
 * twice, the second time with a compaction (BGREWRITEAOF) requested every
 * 100 ms. The target: p99 while compacting at most 2x p99 without.
 */
export async function benchCompaction(targets: BenchTarget[], requests = 5000, keys = 100_000): Promise<CompactionRow[]> {
  const rows: CompactionRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'storvisor-db-compact-'));
  try {
    for (const target of targets) {
      const server = await target.start(dir);
      try {
        await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(server.port), '-t', 'set', '-c', '50', '-P', '16', '-d', '100', '-n', String(keys), '-r', String(keys), '-q'], { timeout: 600_000 });
        for (const compacting of [false, true]) {
          const loop = compacting ? compactionLoop(server.port, 100) : null;
          const [row] = (await benchOne(server.port, 1, 100, requests)).filter((r) => r.test === 'SET');
          const compactions = loop ? await loop.stop() : 0;
          rows.push({ target: target.name, compacting, compactions, rps: row.rps, p50: row.p50, p99: row.p99, max: row.max });
        }
      } finally {
        await server.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export async function benchDatabase(targets: BenchTarget[], requests = 5000): Promise<Row[]> {
  const rows: Row[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'storvisor-db-bench-'));
  try {
    for (const target of targets) {
      const server = await target.start(dir);
      try {
        for (const pipeline of [1, 16]) {
          for (const size of [100, 4096]) {
            for (const row of await benchOne(server.port, pipeline, size, requests)) rows.push({ ...row, target: target.name });
          }
        }
      } finally {
        await server.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

function printTable(rows: Row[]): void {
  const header = ['target', 'test', '-P', 'value', 'req/s', 'p50 ms', 'p99 ms', 'max ms'];
  const lines = rows.map((r) => [r.target, r.test, String(r.pipeline), `${r.size} B`, r.rps.toFixed(0), r.p50.toFixed(3), r.p99.toFixed(3), r.max.toFixed(3)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i >= 4 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (spawnSync('which', ['redis-benchmark']).status !== 0) {
    console.error('redis-benchmark is not installed (apt-get install redis-tools)');
    process.exit(1);
  }
  const i = process.argv.indexOf('--requests');
  const requests = i > 0 ? Number(process.argv[i + 1]) : 5000;
  const targets = [integratedTarget('always'), integratedTarget('everysec')];
  if (spawnSync('which', ['redis-server']).status === 0) targets.push(redisTarget('always'), redisTarget('everysec'));
  const started = Date.now();
  printTable(await benchDatabase(targets, requests));
  console.log(`\n${requests} requests per run, 50 clients, keyspace 10000; ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  const k = process.argv.indexOf('--keys');
  const keys = k > 0 ? Number(process.argv[k + 1]) : 100_000;
  const compaction = await benchCompaction(targets.filter((x) => x.name.includes('always')), requests, keys);
  console.log('SET -P 1, 100 B, with and without compaction (BGREWRITEAOF every 100 ms) beside it');
  console.log('target                              compacting  requested  req/s     p50 ms   p99 ms   max ms');
  for (const r of compaction) {
    console.log(`${r.target.padEnd(36)}${String(r.compacting).padEnd(12)}${String(r.compactions).padEnd(11)}${r.rps.toFixed(0).padEnd(10)}${r.p50.toFixed(3).padEnd(9)}${r.p99.toFixed(3).padEnd(9)}${r.max.toFixed(3)}`);
  }
  for (const name of new Set(compaction.map((r) => r.target))) {
    const [off, on] = [false, true].map((c) => compaction.find((r) => r.target === name && r.compacting === c)!);
    console.log(`${name}: p99 while compacting / p99 without = ${(on.p99 / off.p99).toFixed(2)} (target at most 2)`);
  }
}
