/**
 * The database benchmark (issue #10), one run, every figure of the targets:
 *
 *  1. redis-benchmark SET and GET (50 clients, keyspace 10,000), -P 1 and -P 16,
 *     100 B and 4 KiB values, against the database function integrated and in a
 *     guest (thread, adaptive notification), and against redis-server with
 *     appendonly yes, each in `always` and `everysec`, data on the same disk.
 *     Median of BENCH_REPEATS runs (targets alternate within a repeat). SET and GET
 *     run separately, each with the server's CPU and read/write system calls per
 *     command (this process for storvisor, /proc for redis-server), and, for the
 *     servers in this process, JS heap bytes allocated and GC time per command.
 *  2. SET -P 1 latency (p50, p99, max) over a preloaded data set, in alternating
 *     windows without and with compaction beside the traffic (BGREWRITEAOF every
 *     100 ms, so one compaction after another), for storvisor integrated,
 *     guest/adaptive and redis-server, `always`: p99 with / without per pair of
 *     windows, median of the pairs; compactions per window and their length;
 *     the event loop's longest delay and the longest synchronous step.
 *
 *   npm run bench -- database          (results/database-*.md and .json)
 *   node --import tsx bench/database.ts
 * Environment: BENCH_SECONDS (about how long each redis-benchmark test runs, default 4),
 * BENCH_REPEATS (default 3), BENCH_DB_KEYS (preloaded keys for the compaction runs,
 * default 100,000), BENCH_DB_COMPACTION_PAIRS (pairs of windows without and with
 * compaction per target and repeat, default 4), BENCH_DB_TARGETS (a comma list of kinds to run: integrated,
 * guest/adaptive,redis-server,node floor; default all), BENCH_DB_PARTS (throughput,compaction:
 * the parts to run, default both).
 */
import { freePort } from './lib/net.ts';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { connect } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { HeapMeter } from '../src/util/heap-meter.ts';
import { FileBlockDevice } from '../src/block/file-device.ts';
import database from '../src/functions/database/index.ts';
import { DEPLOYMENTS, startDeployment } from './lib/deployment.ts';
import { processCpuSeconds, selfCpuSeconds } from './lib/cpu.ts';
import { startFloor } from './lib/resp-floor.ts';

const run = promisify(execFile);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const progress = (m: string) => process.stderr.write(`[database] ${m}\n`);

type Fsync = 'always' | 'everysec';

export interface BenchTarget {
  name: string;
  /** storvisor deployment or the peer. */
  kind: 'integrated' | 'guest/adaptive' | 'redis-server' | 'node floor' | 'map floor';
  appendfsync: Fsync;
  start(dir: string): Promise<{ port: number; stop(): Promise<void>; cpuSeconds(): number; syscalls(): number; logWrites?: () => number; inProcess?: boolean }>;
}

/** The database function inside this process on a FileBlockDevice (the bare-metal baseline). */
export function integratedTarget(appendfsync: Fsync): BenchTarget {
  return {
    name: `storvisor integrated ${appendfsync}`,
    kind: 'integrated',
    appendfsync,
    async start(dir) {
      const device = await FileBlockDevice.open(join(dir, `db-${appendfsync}.img`), 512 * 1024 * 1024);
      const fn = await database.start({
        device,
        listen: { host: '127.0.0.1', port: 0 },
        options: database.parseOptions!({ appendfsync }),
        instance: 'bench',
        log: () => {},
      });
      return {
        port: fn.address.port,
        cpuSeconds: selfCpuSeconds,
        syscalls: () => processSyscalls('self'),
        logWrites: () => Number(fn.stats?.().logBatches ?? NaN),
        inProcess: true,
        async stop() {
          await fn.stop();
          await device.close();
        },
      };
    },
  };
}

/** The database function in a thread guest with adaptive notification, on a controller in this process. */
export function guestTarget(appendfsync: Fsync): BenchTarget {
  const d = DEPLOYMENTS.find((x) => x.label === 'guest/adaptive')!;
  return {
    name: `storvisor guest/adaptive ${appendfsync}`,
    kind: 'guest/adaptive',
    appendfsync,
    async start() {
      const dep = await startDeployment(d, { function: 'database', options: { appendfsync }, volumeMiB: 512, cacheMiB: 64 });
      return { port: dep.port, stop: dep.stop, cpuSeconds: selfCpuSeconds, syscalls: () => processSyscalls('self') };
    },
  };
}

/**
 * The runtime's floor (bench/lib/resp-floor.ts): the same process, TcpService,
 * RESP parser and reply writer as integrated, SET answered +OK and GET a fixed
 * bulk, no keyspace and no log; in `always` the group-commit write with FUA of
 * each batch on the same kind of device, no store. The ceiling of any database
 * on this runtime and socket path. `keyspace`: the map floor, the same plus a
 * Map from key strings to values (the ceiling of a keyspace kept in a V8 Map).
 */
export function floorTarget(appendfsync: Fsync, keyspace = false): BenchTarget {
  const kind = keyspace ? 'map floor' : 'node floor';
  return {
    name: `${kind} ${appendfsync}`,
    kind,
    appendfsync,
    async start(dir) {
      const device = await FileBlockDevice.open(join(dir, `${keyspace ? 'map-' : ''}floor-${appendfsync}.img`), 512 * 1024 * 1024);
      const floor = await startFloor(device, appendfsync === 'always', keyspace);
      return {
        port: floor.port,
        cpuSeconds: selfCpuSeconds,
        syscalls: () => processSyscalls('self'),
        logWrites: floor.batches,
        inProcess: true,
        async stop() {
          await floor.stop();
          await device.close();
        },
      };
    },
  };
}

export function redisTarget(appendfsync: Fsync): BenchTarget {
  return {
    name: `redis-server aof ${appendfsync}`,
    kind: 'redis-server',
    appendfsync,
    async start(dir) {
      const port = await freePort();
      const child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
          '--appendfsync', appendfsync, '--dir', dir, '--appenddirname', `aof-${appendfsync}-${port}`],
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
      child.stdout!.resume();
      return {
        port,
        cpuSeconds: () => processCpuSeconds(child.pid!),
        syscalls: () => processSyscalls(String(child.pid!)),
        async stop() {
          child.kill('SIGTERM');
          await once(child, 'exit');
        },
      };
    },
  };
}

export interface Row {
  target: string;
  test: string;
  pipeline: number;
  size: number;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  /** Server CPU per command (µs) of this test. */
  cpuUs: number;
  /** Server read and write system calls per command (socket, log and disk together). */
  syscallsPerCmd: number;
  /** JS heap bytes allocated per command (the server runs in this process: integrated, floor; else NaN). */
  heapBytesPerCmd: number;
  /** Garbage collection per command (µs; in-process servers, else NaN). */
  gcUsPerCmd: number;
  /** SET rows: SETs per log write (group commit size; NaN where the target does not count its writes). */
  setsPerWrite: number;
}

/** JS heap bytes allocated and GC time in this process between this call and the returned function's (HeapMeter). */
export function heapMeter(): () => { bytes: number; gcUs: number } {
  const meter = new HeapMeter();
  return () => {
    const { bytes, gcUs } = meter.stop();
    return { bytes, gcUs };
  };
}

/**
 * Read and write system calls a process made (/proc/PID/io syscr + syscw:
 * read, readv, pread, write, writev, pwrite...), all its threads; NaN where
 * the file cannot be read.
 */
export function processSyscalls(pid: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'latin1');
    const field = (k: string) => Number(new RegExp(`^${k}: (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    return field('syscr') + field('syscw');
  } catch {
    return NaN;
  }
}

/** Requests for about SECONDS per test: redis-benchmark counts requests, not time (a guess of the rate, floored). */
function requestsFor(pipeline: number): number {
  const rate = pipeline === 1 ? 25_000 : 150_000;
  return Math.max(1000, Math.round((SECONDS * rate) / 1000) * 1000);
}

async function benchOne(port: number, tests: string, pipeline: number, size: number, requests: number, keyspace = 10_000): Promise<Omit<Row, 'target' | 'cpuUs' | 'syscallsPerCmd' | 'setsPerWrite' | 'heapBytesPerCmd' | 'gcUsPerCmd'>[]> {
  const { stdout } = await run(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-t', tests, '-c', '50', '-P', String(pipeline), '-d', String(size),
      '-n', String(requests), '-r', String(keyspace), '--csv'],
    { timeout: 600_000 },
  );
  return stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => JSON.parse(`[${line}]`) as string[])
    // CSV columns: test, rps, avg, min, p50, p95, p99, max (ms)
    .map(([test, rps, , , p50, , p99, max]) => ({ test, pipeline, size, requests, rps: Number(rps), p50: Number(p50), p99: Number(p99), max: Number(max) }));
}

/** Every SET/GET case on one target (started once), with server CPU per command. */
export async function benchDatabase(targets: BenchTarget[]): Promise<Row[]> {
  const rows: Row[] = [];
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-db-bench-'));
  try {
    for (const target of targets) {
      const server = await target.start(dir);
      try {
        for (const pipeline of [1, 16]) {
          for (const size of [100, 4096]) {
            const requests = requestsFor(pipeline);
            // GET after SET: the keys it reads exist, with values of this size.
            for (const test of ['set', 'get']) {
              const cpu0 = server.cpuSeconds();
              const sys0 = server.syscalls();
              const writes0 = server.logWrites?.() ?? NaN;
              const heap = server.inProcess ? heapMeter() : null;
              const got = await benchOne(server.port, test, pipeline, size, requests).catch((e: Error & { stderr?: string }) => {
                // Say which server and case failed: the suite runs many of them.
                throw new Error(`${target.name}, ${test.toUpperCase()} -P ${pipeline} -d ${size}: ${e.stderr?.trim() || e.message}`, { cause: e });
              });
              const cpuUs = ((server.cpuSeconds() - cpu0) * 1e6) / requests;
              const syscallsPerCmd = (server.syscalls() - sys0) / requests;
              const h = heap?.() ?? { bytes: NaN, gcUs: NaN };
              const setsPerWrite = test === 'set' ? requests / ((server.logWrites?.() ?? NaN) - writes0) : NaN;
              for (const row of got) rows.push({ ...row, target: target.name, cpuUs, syscallsPerCmd, setsPerWrite, heapBytesPerCmd: h.bytes / requests, gcUsPerCmd: h.gcUs / requests });
            }
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

/** Send BGREWRITEAOF at once and every `everyMs` until stopped; counts the rewrites that started (others are refused while one runs). */
function compactionLoop(port: number, everyMs: number): { stop(): Promise<number> } {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let started = 0;
  socket.on('data', (d: Buffer) => (started += d.toString('latin1').split('rewriting started').length - 1));
  socket.write('BGREWRITEAOF\r\n');
  const timer = setInterval(() => socket.write('BGREWRITEAOF\r\n'), everyMs);
  return {
    async stop() {
      clearInterval(timer);
      socket.end();
      await once(socket, 'close');
      return started;
    },
  };
}

/** INFO persistence as fields (both servers answer it: aof_rewrites, aof_rewrite_in_progress; storvisor adds log_compaction_*). */
async function persistenceInfo(port: number): Promise<Record<string, string>> {
  const socket = connect(port, '127.0.0.1');
  socket.write('INFO persistence\r\n');
  let text = '';
  const deadline = setTimeout(() => socket.destroy(new Error('INFO persistence: no answer in 10 s')), 10_000);
  try {
    for await (const chunk of socket) {
      text += (chunk as Buffer).toString('latin1');
      const m = /^\$(\d+)\r\n/.exec(text);
      if (m && text.length >= m[0].length + Number(m[1]) + 2) break;
    }
  } finally {
    clearTimeout(deadline);
    socket.destroy();
  }
  const fields: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1);
  }
  return fields;
}

/** Wait (bounded) until no compaction runs, so a window without one starts clean. */
async function compactionsSettled(port: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await persistenceInfo(port)).aof_rewrite_in_progress === '1') {
    if (Date.now() > deadline) throw new Error('a compaction did not end within 30 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface CompactionRow {
  target: string;
  repeat: number;
  /** Windows alternate without and with compaction; a pair is one of each, next to each other. */
  pair: number;
  compacting: boolean;
  requests: number;
  seconds: number;
  /** Compactions started in the window (BGREWRITEAOF answered "started"); those that ended in it, and their mean length (ms; storvisor only). */
  started: number;
  compactions: number;
  compactionMs: number;
  rps: number;
  p50: number;
  p99: number;
  /** redis-benchmark's max: the longest a client waited for a reply in the window. */
  max: number;
  /** The longest the event loop was held up in the window (ms; integrated only: the database runs in this process). */
  loopMaxMs: number;
}

/** Pairs of windows per target and repeat (BENCH_DB_COMPACTION_PAIRS). */
const COMPACTION_PAIRS = Number(process.env.BENCH_DB_COMPACTION_PAIRS ?? 4);

/**
 * SET latency with and without compaction beside the traffic: `keys` 100-byte
 * values are loaded, then redis-benchmark SET -P 1 runs in windows of about
 * SECONDS each, alternating without and with a compaction requested every
 * 100 ms (BGREWRITEAOF; one right after another), COMPACTION_PAIRS pairs, the
 * order within a pair swapped every pair. A window is sized in requests from
 * a warm-up run's rate; a window without compaction starts only once the last
 * one ended. The target, p99 while compacting at most 2x p99 without,
 * is read per pair (two neighbouring windows see the same machine) and the
 * median of the pairs taken: one run's p99 moved 10-15 ms between runs on a
 * shared machine, more than the effect measured.
 */
export async function benchCompaction(targets: BenchTarget[], keys: number, repeat = 0): Promise<CompactionRow[]> {
  const rows: CompactionRow[] = [];
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-db-compact-'));
  try {
    for (const target of targets) {
      const server = await target.start(dir);
      const loop = target.kind === 'integrated' ? monitorEventLoopDelay({ resolution: 1 }) : null;
      try {
        await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(server.port), '-t', 'set', '-c', '50', '-P', '16', '-d', '100', '-n', String(keys * 2), '-r', String(keys), '-q'], { timeout: 600_000 });
        // Warm-up (not counted), and the rate that sizes the windows.
        const warm = Math.max(1000, Math.round(requestsFor(1) / 4));
        const t = performance.now();
        await benchOne(server.port, 'set', 1, 100, warm, keys);
        const rate = warm / ((performance.now() - t) / 1000);
        const requests = Math.max(2000, Math.round((rate * SECONDS) / 100) * 100);
        for (let pair = 0; pair < COMPACTION_PAIRS; pair++) {
          for (const compacting of pair % 2 === 0 ? [false, true] : [true, false]) {
            if (!compacting) await compactionsSettled(server.port);
            const before = await persistenceInfo(server.port);
            const bg = compacting ? compactionLoop(server.port, 100) : null;
            loop?.reset();
            loop?.enable();
            const t0 = performance.now();
            const [row] = await benchOne(server.port, 'set', 1, 100, requests, keys);
            const seconds = (performance.now() - t0) / 1000;
            loop?.disable();
            const started = (await bg?.stop()) ?? 0;
            const after = await persistenceInfo(server.port);
            const compactions = Number(after.aof_rewrites) - Number(before.aof_rewrites);
            const ms = Number(after.log_compaction_ms_total) - Number(before.log_compaction_ms_total);
            rows.push({
              target: target.name, repeat, pair, compacting, requests, seconds, started, compactions,
              compactionMs: compactions > 0 ? ms / compactions : NaN,
              rps: row.rps, p50: row.p50, p99: row.p99, max: row.max,
              loopMaxMs: loop ? loop.max / 1e6 : NaN,
            });
          }
        }
        const info = await persistenceInfo(server.port);
        longestStep.set(target.name, Math.max(longestStep.get(target.name) ?? 0, Number(info.log_compaction_longest_step_ms ?? NaN)));
      } finally {
        await server.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** The longest synchronous step of any compaction per target (ms, from INFO; storvisor only). */
const longestStep = new Map<string, number>();

const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '-');

function table(header: string[], lines: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`, ...lines.map((l) => `| ${l.join(' | ')} |`)];
}

/** BENCH_DB_TARGETS=integrated,redis-server,... runs only those kinds (a missing one's cells read '-'); default all. */
const TARGET_KINDS = process.env.BENCH_DB_TARGETS?.split(',').map((k) => k.trim()).filter((k) => k !== '') ?? null;
const wanted = (t: BenchTarget): boolean => TARGET_KINDS === null || TARGET_KINDS.includes(t.kind);
/** BENCH_DB_PARTS=throughput,compaction runs only those parts (default both). */
const PARTS = process.env.BENCH_DB_PARTS?.split(',').map((k) => k.trim()) ?? ['throughput', 'compaction'];

/** `npm run bench -- database`: both parts, median of REPEATS, written to resultsDir. */
export async function databaseSuite(resultsDir: string): Promise<void> {
  for (const tool of ['redis-benchmark', 'redis-server']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not installed (apt-get install redis-tools redis-server)`);
  }
  const started = Date.now();
  const modes: Fsync[] = ['always', 'everysec'];
  const targets = modes.flatMap((m) => [integratedTarget(m), guestTarget(m), redisTarget(m), floorTarget(m), floorTarget(m, true)]).filter(wanted);
  const all: Row[] = [];
  for (let r = 0; r < (PARTS.includes('throughput') ? REPEATS : 0); r++) {
    // Alternate the order between repeats so no target always runs first.
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const row of await benchDatabase(order)) all.push(row);
    progress(`repeat ${r + 1}/${REPEATS} done`);
  }
  const cell = (target: BenchTarget | undefined, test: string, p: number, size: number) => {
    const rs = all.filter((x) => x.target === target?.name && x.test === test && x.pipeline === p && x.size === size);
    return {
      rps: median(rs.map((x) => x.rps)),
      p99: median(rs.map((x) => x.p99)),
      cpuUs: median(rs.map((x) => x.cpuUs)),
      syscalls: median(rs.map((x) => x.syscallsPerCmd)),
      setsPerWrite: median(rs.map((x) => x.setsPerWrite)),
      heapBytes: median(rs.map((x) => x.heapBytesPerCmd)),
      gcUs: median(rs.map((x) => x.gcUsPerCmd)),
      runs: rs.map((x) => Math.round(x.rps)),
    };
  };
  const out: string[] = [`# database bench: median of ${REPEATS} runs, about ${SECONDS} s per test (requests/s)`, ''];
  const json: Record<string, unknown>[] = [];
  for (const mode of PARTS.includes('throughput') ? modes : []) {
    const [integ, guest, redis, floor, mapFloor] = (['integrated', 'guest/adaptive', 'redis-server', 'node floor', 'map floor'] as const).map((k) => targets.find((t) => t.appendfsync === mode && t.kind === k));
    const lines: string[][] = [];
    for (const test of ['SET', 'GET']) {
      for (const p of [1, 16]) {
        for (const size of [100, 4096]) {
          const [i, g, x, f, m] = [integ, guest, redis, floor, mapFloor].map((t) => cell(t, test, p, size));
          lines.push([test, `-P ${p} ${size} B`, fmt(i.rps), fmt(g.rps), fmt(x.rps), fmt(f.rps), fmt(m.rps), fmt(i.rps / x.rps, 2), fmt(g.rps / i.rps, 2), fmt(i.rps / f.rps, 2), fmt(f.rps / x.rps, 2), fmt(m.rps / x.rps, 2), fmt(i.rps / m.rps, 2), fmt(i.p99, 3), fmt(x.p99, 3), fmt(i.cpuUs, 1), fmt(f.cpuUs, 1), fmt(m.cpuUs, 1), fmt(x.cpuUs, 1), fmt(i.syscalls, 3), fmt(f.syscalls, 3), fmt(x.syscalls, 3), fmt(i.setsPerWrite, 1), fmt(f.setsPerWrite, 1), fmt(i.heapBytes), fmt(f.heapBytes), fmt(i.gcUs, 2), fmt(f.gcUs, 2)]);
          json.push({ appendfsync: mode, test, pipeline: p, size, integrated: i, guestAdaptive: g, redisServer: x, nodeFloor: f, mapFloor: m });
        }
      }
    }
    out.push(`## appendfsync ${mode}`, '');
    out.push(...table(['test', 'case', 'integrated', 'guest/adaptive', 'redis-server', 'node floor', 'map floor', 'integrated / redis (target ≥ 1.0)', 'guest / integrated (target ≥ 0.95)', 'integrated / floor', 'floor / redis', 'map floor / redis', 'integrated / map floor', 'integrated p99 ms', 'redis p99 ms', 'integrated CPU µs/cmd', 'floor CPU µs/cmd', 'map floor CPU µs/cmd', 'redis CPU µs/cmd', 'integrated syscalls/cmd', 'floor syscalls/cmd', 'redis syscalls/cmd', 'integrated SETs/log write', 'floor SETs/write', 'integrated heap B/cmd', 'floor heap B/cmd', 'integrated GC µs/cmd', 'floor GC µs/cmd'], lines), '');
  }
  if (PARTS.includes('throughput')) out.push('redis-benchmark -c 50 -r 10000, SET then GET as separate runs; CPU µs/cmd: server CPU over the run / its requests (storvisor and the floor: this whole process, including the controller; redis-server: its process); syscalls/cmd: read and write system calls (/proc/PID/io syscr + syscw: socket reads and writes, log writes and syncs of data) / those requests; SETs/log write: the SET run\'s requests / the log\'s writes during it (group commit size: in always, one FUA write each); heap B/cmd and GC µs/cmd: JS heap bytes allocated and GC time in this process (v8 GCProfiler) / the run\'s requests, for the servers that run in it (a thread guest allocates in its own heap). CPU depends on the machine\'s load; syscalls, heap bytes and GC per command much less.', '');
  if (PARTS.includes('throughput')) out.push('node floor (bench/lib/resp-floor.ts): the integrated process model, TcpService, RESP parser and reply writer, answering SET +OK and GET a fixed bulk, with no keyspace and no log; under `always` each batch of SETs waits for one group-commit pwrite with FUA (fdatasync) as large as its records, no store, and gathers as the log does; under `everysec` the same pwrite without FUA at the log\'s size or time window, replies at once. Its rate is the ceiling of any database on this runtime and socket path: floor / redis well under 1 is the runtime\'s limit, integrated / floor what the database itself costs. map floor: the same plus a keyspace as a plain JS program keeps one (a Map from key strings to value bytes: SET stores a copy, GET replies with it), still no log records and no commands: map floor / redis is the ceiling of a database whose keys live in a V8 Map, integrated / map floor what the rest of the database costs.', '');

  const keys = Number(process.env.BENCH_DB_KEYS ?? 100_000);
  const compactionTargets = [integratedTarget('always'), guestTarget('always'), redisTarget('always')].filter(wanted);
  const crows: CompactionRow[] = [];
  for (let r = 0; r < (PARTS.includes('compaction') ? REPEATS : 0); r++) {
    crows.push(...(await benchCompaction(r % 2 === 0 ? compactionTargets : [...compactionTargets].reverse(), keys, r)));
    progress(`compaction repeat ${r + 1}/${REPEATS} done`);
  }
  const clines: string[][] = [];
  for (const t of compactionTargets) {
    const rs = crows.filter((x) => x.target === t.name);
    const [off, on] = [false, true].map((c) => {
      const w = rs.filter((x) => x.compacting === c);
      return {
        windows: w.length, rps: median(w.map((x) => x.rps)), p50: median(w.map((x) => x.p50)), p99: median(w.map((x) => x.p99)),
        max: median(w.map((x) => x.max)), worstMax: Math.max(...w.map((x) => x.max)), loopMaxMs: median(w.map((x) => x.loopMaxMs)),
        started: median(w.map((x) => x.started)), compactions: median(w.map((x) => x.compactions)), compactionMs: median(w.map((x) => x.compactionMs).filter(Number.isFinite)), seconds: median(w.map((x) => x.seconds)),
      };
    });
    // Each pair's ratio: its two windows ran next to each other.
    const ratios: number[] = [];
    for (const w of rs.filter((x) => x.compacting)) {
      const o = rs.find((x) => !x.compacting && x.repeat === w.repeat && x.pair === w.pair);
      if (o) ratios.push(w.p99 / o.p99);
    }
    const ratio = median(ratios);
    const step = longestStep.get(t.name);
    clines.push([t.name, 'no', String(off.windows), fmt(off.seconds, 1), '-', '-', fmt(off.rps), fmt(off.p50, 3), fmt(off.p99, 3), fmt(off.max, 1), fmt(off.worstMax, 1), fmt(off.loopMaxMs, 1), '', '', '']);
    clines.push([t.name, 'yes', String(on.windows), fmt(on.seconds, 1), `${fmt(on.started, 1)} / ${fmt(on.compactions, 1)}`, fmt(on.compactionMs, 0), fmt(on.rps), fmt(on.p50, 3), fmt(on.p99, 3), fmt(on.max, 1), fmt(on.worstMax, 1), fmt(on.loopMaxMs, 1),
      fmt(step ?? NaN, 2), fmt(ratio, 2), ratios.length ? `${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)}` : '-']);
    json.push({ compaction: t.name, without: off, with: on, pairRatios: ratios, ratio, longestStepMs: step ?? null });
  }
  out.push(`## SET -P 1, 100 B, ${keys} keys preloaded, windows without and with compaction (BGREWRITEAOF every 100 ms), appendfsync always`, '');
  out.push(...table(['target', 'compacting', 'windows', 's per window', 'compactions started / ended per window', 'ms per compaction', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'worst max ms', 'event loop max delay ms', 'longest synchronous step ms', 'p99 with / without, median of pairs (target ≤ 2)', 'pair ratios min–max'], clines), '');
  out.push(`Windows of about ${SECONDS} s (requests from a warm-up run's rate), alternating without and with compaction, ${COMPACTION_PAIRS} pairs per target and repeat (order swapped every pair); a window without compaction starts once the last one ended. p50, p99, max, rates, compactions and event loop delay: median over windows; worst max: the largest over windows; p99 ratio: per pair of neighbouring windows, then the median. max ms is the longest a client waited for one reply; event loop max delay (integrated only, monitorEventLoopDelay in the process running the database) is the longest the database's loop was held; longest synchronous step: the longest snapshot slice, save ahead of the walk, carry slice or flip step of any compaction (INFO log_compaction_longest_step_ms; a slice longer than its 1 ms budget was preempted or hit by a GC pause).`, '');
  out.push(`${((Date.now() - started) / 1000).toFixed(0)} s in all.`);

  const text = out.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync(resultsDir, { recursive: true });
  const stem = join(resultsDir, `database-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(`${stem}.json`, JSON.stringify({ seconds: SECONDS, repeats: REPEATS, keys, rows: json, raw: all, compaction: crows }, null, 2));
  writeFileSync(`${stem}.md`, text);
  progress(`wrote ${stem}.json and .md`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await databaseSuite(resolve(process.env.BENCH_RESULTS ?? 'results'));
  process.exit(0);
}
