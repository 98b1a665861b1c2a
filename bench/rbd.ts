/**
 * RBD volumes against fio's rbd engine on the same image: 4 KiB random read
 * and write at QD1 and QD32, median of BENCH_REPEATS runs of BENCH_SECONDS
 * each, with CPU per operation: fio's whole process tree (its librbd threads
 * included: fio's own usr/sys figures leave them out) and, for the controller
 * rows, the controller process (its librbd threads and the guest thread
 * included), each on its own column. The cluster's daemons are not counted
 * (the same OSD serves every row). The controller's CPU is also split per
 * thread (/proc/self/task): its event loop ("main": NBD, volume, cache, the
 * poller, librbd's dispatch, which runs in the caller), the guest thread, and
 * librbd's own threads (messenger, io_context). A fio run's fixed cost (start, connect,
 * open; measured once per engine with a one-request run) is taken off, and the
 * ramp's requests are counted at the measured rate: CPU µs/op is per request.
 *
 *   npm run bench -- rbd        (BENCH_SECONDS=4 BENCH_REPEATS=3 by default)
 *
 * Rows:
 * - fio rbd: fio's own librbd client on the image (the limit),
 * - controller export: fio's nbd engine -> the controller's NBD export -> the RBD volume,
 * - nbd-export guest: fio's nbd engine -> an nbd-export function in a thread guest
 *   -> the shared-memory queue -> the controller's poller -> the RBD volume.
 * - RBD backend alone: the controller's RbdBackend driven in this process (no
 *   NBD, no volume): its librbd client against fio's,
 * - controller export, cache hits: the export answering 4 KiB reads from its
 *   warmed cache, no RBD behind it: the floor any NBD path adds to librbd's
 *   latency, hence the best ratio at QD1 (printed under the table).
 * The controller's read cache is kept small (2 MiB against a 256 MiB image) so
 * reads measure the cluster, as fio's rbd engine (rbd cache off) does. Each
 * fresh controller first takes BENCH_WARMUP_SECONDS (default 1) of QD32 writes
 * and reads, not measured: otherwise V8 compiling its (and its guest's)
 * request path lands in the first rows' CPU per request.
 *
 * Under the table: the QD32 ceiling (with the cores saturated, IOPS = cores /
 * CPU per request of every process; fio rbd's sum against the least any NBD
 * path pays: fio's nbd client + a librbd client + the export's cache-hit
 * request path + the OSD, every term from this run), and per guest row the
 * poller's passes and sleeps and the guest driver's spins and sleeps per request.
 *
 * The cluster is a throwaway single-node one (scripts/ceph/cluster.sh), or
 * yours with BENCH_CEPH_CONF=/etc/ceph/ceph.conf (pool `rbd`, image
 * `storvisor-bench` created and left there).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config/config.ts';
import { Controller } from '../src/controller/controller.ts';
import { processCpuSeconds, selfCpuSeconds, statCpuSeconds } from './lib/cpu.ts';
import { median, runFio } from './lib/fio.ts';
import { openRbd } from '../src/storage/rbd-backend.ts';
import type { IoTarget } from '../src/block/types.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const IMAGE = 'storvisor-bench';
const SIZE_MIB = Number(process.env.BENCH_RBD_MIB ?? 256);
const exec = promisify(execFile);
const clusterScript = fileURLToPath(new URL('../scripts/ceph/cluster.sh', import.meta.url));

interface Sample {
  iops: number;
  p50Us: number;
  /** fio (the client) plus the controller, per request. */
  cpuUsPerOp: number;
  /** The controller process alone (NaN for fio's rbd engine). */
  controllerUsPerOp: number;
  /** fio's nbd client alone, per request (NaN for fio's rbd engine and the backend alone). */
  clientUsPerOp: number;
  /** The OSD daemon, when it runs on this machine (NaN otherwise): the same for every path, the rest of the CPU budget. */
  osdUsPerOp: number;
  /** The controller's threads (NaN for fio's rbd engine): see ThreadSplit. */
  split: ThreadSplit;
  /** Per request: the controller's poller passes and sleeps, the guest driver's spins and sleeps (guest rows; NaN otherwise). */
  queue: QueueCounts;
}

interface QueueCounts {
  passes: number;
  sleeps: number;
  driverSpins: number;
  driverSleeps: number;
}

const NO_QUEUE: QueueCounts = { passes: NaN, sleeps: NaN, driverSpins: NaN, driverSleeps: NaN };
/** Cumulative counters of the poller and the guest's driver, read before and after a run. */
type QueueMeter = () => Promise<QueueCounts>;

/** µs per request of this process's threads, by side. */
interface ThreadSplit {
  /** The event loop: NBD, volume, cache, poller, and librbd's request dispatch (it runs in the caller). */
  main: number;
  /** The guest's thread (Node threads that appeared while the controller started). */
  guest: number;
  /** librbd's and librados' own threads (messenger workers, io_context, timers). */
  librbd: number;
  /** Node's other threads: V8's GC and compiler helpers, the libuv pool. */
  other: number;
}

const NO_SPLIT: ThreadSplit = { main: NaN, guest: NaN, librbd: NaN, other: NaN };

/** CPU seconds and name of each thread of this process. */
function threadCpu(): Map<number, { sec: number; name: string }> {
  const out = new Map<number, { sec: number; name: string }>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      out.set(Number(t), { sec: statCpuSeconds(`/proc/self/task/${t}/stat`), name: readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Node's threads (main, V8 helpers, libuv, workers) are named "node" (V8's profiler "v8:..."); the rest are librbd's. */
const isLibrbd = (name: string) => name !== 'node' && !name.startsWith('v8:') && !name.startsWith('libuv');

/** Per-thread CPU between this call and the returned one's, per request; `guests`: the guest's thread ids. */
function splitMeter(guests: Set<number>): (ops: number) => ThreadSplit {
  const t0 = threadCpu();
  return (ops) => {
    const out = { main: 0, guest: 0, librbd: 0, other: 0 };
    for (const [tid, t] of threadCpu()) {
      const d = t.sec - (t0.get(tid)?.sec ?? 0);
      if (tid === process.pid) out.main += d;
      else if (guests.has(tid)) out.guest += d;
      else if (isLibrbd(t.name)) out.librbd += d;
      else out.other += d;
    }
    return { main: (out.main / ops) * 1e6, guest: (out.guest / ops) * 1e6, librbd: (out.librbd / ops) * 1e6, other: (out.other / ops) * 1e6 };
  };
}

/** Node's threads started since `before` (taken before the controller started: its guest's). */
function newNodeThreads(before: Set<number>): Set<number> {
  const out = new Set<number>();
  for (const [tid, t] of threadCpu()) if (!before.has(tid) && t.name === 'node') out.add(tid);
  return out;
}

/** The local OSD's pid (a cluster started by scripts/ceph/cluster.sh, or yours if its pid file is there), or 0. */
function osdPid(conf: string): number {
  try {
    return Number(readFileSync(join(dirname(conf), 'run', 'osd.0.pid'), 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/** Run a measurement and the OSD's CPU seconds during it (NaN without a local OSD). */
async function withOsdCpu<T>(conf: string, fn: () => Promise<T>): Promise<[T, number]> {
  const pid = osdPid(conf);
  const before = pid ? processCpuSeconds(pid) : NaN;
  const r = await fn();
  return [r, pid ? processCpuSeconds(pid) - before : NaN];
}

const RAMP_SECONDS = 1;
/** Requests a time-based run made, its ramp included (fio reports only those after the ramp). */
const allIos = (ios: number) => (ios * (SECONDS + RAMP_SECONDS)) / SECONDS;

const WORKLOADS = [
  { name: '4k randread QD1', rw: 'randread', depth: 1 },
  { name: '4k randread QD32', rw: 'randread', depth: 32 },
  { name: '4k randwrite QD1', rw: 'randwrite', depth: 1 },
  { name: '4k randwrite QD32', rw: 'randwrite', depth: 32 },
];

const BACKEND = 'RBD backend alone';
const EXPORT = 'controller export';
const GUEST = 'nbd-export guest';
/** Seconds of unmeasured load on a fresh controller before its rows (0: none). */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 1);
/** The cache-hit row: an export's own cost with no RBD request behind it. */
const FLOOR = 'controller export, cache hits';
const FLOOR_MIB = 16;

type Workload = (typeof WORKLOADS)[number] & { sizeMiB?: number };
const common = (w: Workload) => [
  '--name=bench',
  `--rw=${w.rw}`,
  '--bs=4k',
  `--iodepth=${w.depth}`,
  `--runtime=${SECONDS}`,
  '--time_based=1',
  `--ramp_time=${RAMP_SECONDS}`,
  `--size=${w.sizeMiB ?? SIZE_MIB}M`,
  '--randrepeat=0',
];

const rbdEngine = () => ['--ioengine=rbd', '--clientname=admin', '--pool=rbd', `--rbdname=${IMAGE}`];
const oneRequest = ['--name=fixed', '--rw=randread', '--bs=4k', '--iodepth=1', `--size=${SIZE_MIB}M`, '--io_size=4k'];
/** CPU seconds of a fio run that is all fixed cost (one request), per engine: taken off every run of that engine. */
const fixedCpu = new Map<string, number>();

async function fioRbd(conf: string, w: (typeof WORKLOADS)[number]): Promise<Sample> {
  const env = { ...process.env, CEPH_CONF: conf };
  if (!fixedCpu.has('rbd')) fixedCpu.set('rbd', (await runFio([...oneRequest, ...rbdEngine()], env)).fioCpuSec);
  const [r, osdSec] = await withOsdCpu(conf, () => runFio([...common(w), ...rbdEngine()], env));
  const ops = allIos(r.ios);
  return { iops: r.iops, p50Us: r.p50Us, cpuUsPerOp: (Math.max(0, r.fioCpuSec - fixedCpu.get('rbd')!) / ops) * 1e6, controllerUsPerOp: NaN, clientUsPerOp: NaN, osdUsPerOp: (osdSec / ops) * 1e6, split: NO_SPLIT, queue: NO_QUEUE };
}

async function fioNbd(conf: string, uri: string, w: Workload, guests: Set<number>, queueMeter?: QueueMeter): Promise<Sample> {
  if (!fixedCpu.has('nbd')) fixedCpu.set('nbd', (await runFio([...oneRequest, '--ioengine=nbd', `--uri=${uri}`])).fioCpuSec);
  const q0 = await queueMeter?.();
  const split = splitMeter(guests);
  const cpu0 = selfCpuSeconds();
  const [r, osdSec] = await withOsdCpu(conf, () => runFio([...common(w), '--ioengine=nbd', `--uri=${uri}`], process.env));
  const controllerSec = selfCpuSeconds() - cpu0;
  const ops = allIos(r.ios);
  const threads = split(ops);
  const fioSec = Math.max(0, r.fioCpuSec - fixedCpu.get('nbd')!);
  let queue = NO_QUEUE;
  if (q0 && queueMeter) {
    const q1 = await queueMeter();
    queue = { passes: (q1.passes - q0.passes) / ops, sleeps: (q1.sleeps - q0.sleeps) / ops, driverSpins: (q1.driverSpins - q0.driverSpins) / ops, driverSleeps: (q1.driverSleeps - q0.driverSleeps) / ops };
  }
  return {
    iops: r.iops,
    p50Us: r.p50Us,
    cpuUsPerOp: ((fioSec + controllerSec) / ops) * 1e6,
    controllerUsPerOp: (controllerSec / ops) * 1e6,
    clientUsPerOp: (fioSec / ops) * 1e6,
    osdUsPerOp: (osdSec / ops) * 1e6,
    split: threads,
    queue,
  };
}

/**
 * The RBD backend alone, driven in this process at the workload's depth (no
 * NBD, no volume, no cache): what the controller's librbd client costs next
 * to fio's, and the part of each controller row that is not RBD's.
 */
async function backendAlone(conf: string, w: Workload): Promise<Sample> {
  const b = await openRbd({ conf, user: 'admin', pool: 'rbd', image: IMAGE, timeoutSec: 30 }, { controller: 'bench-rbd-backend', volume: 'bench', takeover: true });
  try {
    const blocks = Math.floor(Math.min(b.size(), SIZE_MIB * 2 ** 20) / 4096);
    const slab = b.alloc(4096 * w.depth).buf;
    const write = w.rw === 'randwrite';
    const started = new Float64Array(w.depth);
    const lat: number[] = [];
    let ops = 0;
    let measuring = false;
    let stopping = false;
    let outstanding = 0;
    let failed: Error | undefined;
    let finished: () => void = () => {};
    const issue = (slot: number) => {
      started[slot] = performance.now();
      outstanding++;
      const pos = Math.floor(Math.random() * blocks) * 4096;
      if (write) b.writeFrom(slab, slot * 4096, 4096, pos, target, slot);
      else b.readTo(slab, slot * 4096, 4096, pos, target, slot);
    };
    const target: IoTarget = {
      ioDone: (slot, result) => {
        outstanding--;
        if (result < 0) failed ??= new Error(`rbd ${w.rw} failed: ${result}`);
        if (measuring) {
          ops++;
          lat.push((performance.now() - started[slot]!) * 1000);
        }
        if (!stopping && !failed) issue(slot);
        else if (outstanding === 0) finished();
      },
    };
    const done = new Promise<void>((resolve) => (finished = resolve));
    for (let i = 0; i < w.depth; i++) issue(i);
    await new Promise((r) => setTimeout(r, RAMP_SECONDS * 1000));
    const split = splitMeter(new Set());
    const cpu0 = selfCpuSeconds();
    const t0 = performance.now();
    measuring = true;
    const [, osdSec] = await withOsdCpu(conf, () => new Promise((r) => setTimeout(r, SECONDS * 1000)));
    measuring = false;
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = selfCpuSeconds() - cpu0;
    const threads = split(ops);
    stopping = true;
    await done;
    if (failed) throw failed;
    return { iops: ops / elapsed, p50Us: median(lat), cpuUsPerOp: (cpu / ops) * 1e6, controllerUsPerOp: (cpu / ops) * 1e6, clientUsPerOp: NaN, osdUsPerOp: (osdSec / ops) * 1e6, split: threads, queue: NO_QUEUE };
  } finally {
    await b.close();
  }
}

async function withController(
  conf: string,
  dataDir: string,
  guest: boolean,
  fn: (uri: string, guests: Set<number>, queueMeter: QueueMeter) => Promise<void>,
  cacheMiB = 2,
  warmUp = true,
): Promise<void> {
  const config = parseConfig(
    {
      dataDir,
      cacheMiB,
      api: null,
      nbd: { port: 0 },
      volumes: [{ name: 'rbd', sizeMiB: SIZE_MIB, backend: 'rbd', rbd: { conf, image: IMAGE } }],
      functions: guest ? [{ name: 'g', function: 'nbd-export', volume: 'rbd', deploy: 'guest', options: { exportName: 'g' } }] : [],
    },
    dataDir,
    {},
  );
  const before = new Set(threadCpu().keys());
  const c = await Controller.start(config);
  try {
    const guests = guest ? newNodeThreads(before) : new Set<number>();
    const status = await c.status();
    const vol = status.volumes[0] as { error?: string };
    if (vol.error) throw new Error(`the RBD volume did not open: ${vol.error}`);
    let uri: string;
    if (guest) {
      const a = status.functions[0]!.address!;
      uri = `nbd://${a.host}:${a.port}/g`;
    } else {
      const a = c.nbdEndpoint();
      uri = `nbd://${a.host}:${a.port}/rbd`;
    }
    // A fresh controller (and guest) runs its request path interpreted at first: one warm-up
    // run per direction, not measured, so the rows count the steady state and not V8's compiler.
    if (warmUp && WARMUP_SECONDS > 0) {
      for (const rw of ['randwrite', 'randread']) {
        await runFio(['--name=warm', `--rw=${rw}`, '--bs=4k', '--iodepth=32', `--runtime=${WARMUP_SECONDS}`, '--time_based=1', `--size=${SIZE_MIB}M`, '--ioengine=nbd', `--uri=${uri}`]);
      }
    }
    const queueMeter: QueueMeter = async () => {
      const p = c.poller.counters;
      const d = guest ? (((await c.status()).functions[0]?.stats ?? {}) as Record<string, number>) : {};
      return { passes: p.iterations, sleeps: p.sleeps, driverSpins: d.driver_spins ?? NaN, driverSleeps: d.driver_interruptsWaited ?? NaN };
    };
    await fn(uri, guests, queueMeter);
  } finally {
    await c.stop();
  }
}

type Rows = Map<string, Map<string, Sample[]>>;

/** The median of one figure of one row, NaN when the row is missing. */
function fig(rows: Rows, how: string, w: string, f: (s: Sample) => number): number {
  const s = rows.get(how)?.get(w);
  return s ? median(s.map(f)) : NaN;
}

/**
 * The QD32 ceiling: with the cores saturated, IOPS = cores / CPU per request
 * (every process on this machine, the OSD included). fio's rbd engine pays its
 * own librbd client and the OSD; any NBD path pays at least fio's nbd client,
 * a librbd client (the backend alone), the NBD request path (the export's
 * cache-hit controller CPU: parse, reply, socket, no RBD behind it) and the
 * OSD. Every term is measured in this run; the ratio of the two sums is the
 * best any NBD path could reach here, whatever the controller does.
 */
function ceilingLines(rows: Rows): string[] {
  const cores = availableParallelism();
  const out = ['', `QD32 ceiling on ${cores} cores (IOPS <= cores / CPU µs per request of every process, the OSD's included; terms measured in this run):`, ''];
  out.push('| workload | fio rbd: client + OSD | µs/op | IOPS bound | NBD path: nbd client + backend alone + export cache hit + OSD | µs/op | IOPS bound | best x fio rbd | measured export / guest x fio rbd |');
  out.push('|---|---|---:|---:|---|---:|---:|---:|---:|');
  const hit = fig(rows, FLOOR, '4k randread QD32', (x) => x.controllerUsPerOp);
  for (const w of WORKLOADS.filter((x) => x.depth === 32)) {
    const fioCpu = fig(rows, 'fio rbd engine', w.name, (x) => x.cpuUsPerOp);
    const fioOsd = fig(rows, 'fio rbd engine', w.name, (x) => x.osdUsPerOp);
    const client = fig(rows, EXPORT, w.name, (x) => x.clientUsPerOp);
    const backend = fig(rows, BACKEND, w.name, (x) => x.cpuUsPerOp);
    const osd = fig(rows, BACKEND, w.name, (x) => x.osdUsPerOp);
    const a = fioCpu + fioOsd;
    const b = client + backend + hit + osd;
    const base = fig(rows, 'fio rbd engine', w.name, (x) => x.iops);
    const measured = (how: string) => (fig(rows, how, w.name, (x) => x.iops) / base).toFixed(2);
    const f = (v: number) => v.toFixed(0);
    out.push(
      `| ${w.name} | ${f(fioCpu)} + ${f(fioOsd)} | ${f(a)} | ${f((cores / a) * 1e6)} | ${f(client)} + ${f(backend)} + ${f(hit)} + ${f(osd)} | ${f(b)} | ${f((cores / b) * 1e6)} | ${(a / b).toFixed(2)} | ${measured(EXPORT)} / ${measured(GUEST)} |`,
    );
  }
  out.push(
    '',
    "The write rows use the read cache-hit figure for the NBD request path (a write has no cache-hit form: it always goes to RBD; its NBD parse and reply cost about what a read hit's does). The backend alone's OSD figure stands for the OSD's work per request of an NBD path (the same librbd requests).",
  );
  return out;
}

/** Guest rows: does anything spin while RBD requests are in flight? Passes and sleeps per request on each side of the queue. */
function queueLines(rows: Rows): string[] {
  const out = ['', 'nbd-export guest, per request: the controller poller\'s passes and sleeps, the guest driver\'s spin passes and sleeps:', ''];
  out.push('| workload | poller passes | poller sleeps | driver spins | driver sleeps |', '|---|---:|---:|---:|---:|');
  for (const w of WORKLOADS) {
    const q = (k: keyof QueueCounts) => fig(rows, GUEST, w.name, (x) => x.queue[k]).toFixed(2);
    out.push(`| ${w.name} | ${q('passes')} | ${q('sleeps')} | ${q('driverSpins')} | ${q('driverSleeps')} |`);
  }
  return out;
}

async function main(): Promise<void> {
  let conf = process.env.BENCH_CEPH_CONF;
  let clusterDir: string | undefined;
  if (!conf) {
    conf = (await exec(clusterScript, ['start'], { timeout: 180_000 })).stdout.trim().split('\n').pop()!;
    clusterDir = join(conf, '..');
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'storvisor-bench-rbd-'));
  try {
    // Create the image through the controller once, then fill it, so reads meet real objects (not holes).
    await withController(conf, dataDir, false, async () => {}, 2, false);
    await runFio(['--name=fill', '--ioengine=rbd', '--clientname=admin', '--pool=rbd', `--rbdname=${IMAGE}`, '--rw=write', '--bs=1M', '--iodepth=8', `--size=${SIZE_MIB}M`], { ...process.env, CEPH_CONF: conf });

    const rows = new Map<string, Map<string, Sample[]>>();
    const add = (how: string, w: string, s: Sample) => {
      if (!rows.has(how)) rows.set(how, new Map());
      const m = rows.get(how)!;
      if (!m.has(w)) m.set(w, []);
      m.get(w)!.push(s);
    };
    for (let rep = 0; rep < REPEATS; rep++) {
      // fio's librbd needs the image's lock: no controller holds it during these runs.
      for (const w of WORKLOADS) add('fio rbd engine', w.name, await fioRbd(conf, w));
      for (const w of WORKLOADS) add(BACKEND, w.name, await backendAlone(conf, w));
      await withController(conf, dataDir, false, async (uri, guests) => {
        for (const w of WORKLOADS) add(EXPORT, w.name, await fioNbd(conf!, uri, w, guests));
      });
      await withController(conf, dataDir, true, async (uri, guests, queueMeter) => {
        for (const w of WORKLOADS) add(GUEST, w.name, await fioNbd(conf!, uri, w, guests, queueMeter));
      });
      // The NBD floor: the same export answering 4 KiB reads from its cache (16 MiB, warmed), no RBD at all.
      await withController(
        conf,
        dataDir,
        false,
        async (uri, guests) => {
          await runFio(['--name=warm', '--ioengine=nbd', `--uri=${uri}`, '--rw=read', '--bs=1M', `--size=${FLOOR_MIB}M`]);
          for (const w of WORKLOADS.filter((x) => x.rw === 'randread')) add(FLOOR, w.name, await fioNbd(conf!, uri, { ...w, sizeMiB: FLOOR_MIB }, guests));
        },
        4 * FLOOR_MIB,
      );
    }

    const limit = rows.get('fio rbd engine')!;
    const lines = [
      `## RBD volumes against fio's rbd engine (same image, ${SIZE_MIB} MiB; ${SECONDS} s runs, median of ${REPEATS})`,
      '',
      '| path | workload | IOPS | x fio rbd | p50 µs | CPU µs/op | controller µs/op | main | guest | librbd | other | CPU x fio rbd | OSD µs/op |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ];
    for (const [how, m] of rows) {
      for (const w of WORKLOADS) {
        const s = m.get(w.name);
        if (!s) continue;
        const iops = median(s.map((x) => x.iops));
        const base = median(limit.get(w.name)!.map((x) => x.iops));
        const cpu = median(s.map((x) => x.cpuUsPerOp));
        const baseCpu = median(limit.get(w.name)!.map((x) => x.cpuUsPerOp));
        const ctl = median(s.map((x) => x.controllerUsPerOp));
        const osd = median(s.map((x) => x.osdUsPerOp));
        const part = (k: keyof ThreadSplit) => {
          const v = median(s.map((x) => x.split[k]));
          return Number.isNaN(v) ? '—' : v.toFixed(0);
        };
        lines.push(
          `| ${how} | ${w.name} | ${iops.toFixed(0)} | ${(iops / base).toFixed(2)} | ${median(s.map((x) => x.p50Us)).toFixed(0)} | ${cpu.toFixed(1)} | ${Number.isNaN(ctl) ? '—' : ctl.toFixed(1)} | ${part('main')} | ${part('guest')} | ${part('librbd')} | ${part('other')} | ${(cpu / baseCpu).toFixed(2)} | ${Number.isNaN(osd) ? '—' : osd.toFixed(1)} |`,
        );
      }
    }
    lines.push(
      '',
      "CPU µs/op: fio's process tree (librbd's threads included for the rbd engine) plus, for the controller rows, the controller process (its librbd threads and guest thread included); controller µs/op: that process alone, split per thread into main (the event loop: NBD, volume, cache, poller, librbd's dispatch), guest (the guest's thread), librbd (its messenger and io_context threads) and other (V8's GC helpers, the libuv pool). Ceph's daemons are not in CPU µs/op; OSD µs/op is the local OSD's (the rest of a 2-core machine's budget: at QD32 IOPS is bounded by cores / (CPU + OSD) per request).",
    );
    // Where the limit is at QD1: an NBD path adds at least the floor's latency to librbd's own.
    const p50 = (how: string, w: string) => median(rows.get(how)!.get(w)!.map((x) => x.p50Us));
    const rbdLat = p50('fio rbd engine', '4k randread QD1');
    const floorLat = p50(FLOOR, '4k randread QD1');
    lines.push(
      '',
      `QD1 limit of any NBD path: fio rbd p50 ${rbdLat.toFixed(0)} µs + the export's cache-hit p50 ${floorLat.toFixed(0)} µs ` +
        `(client wake-up, loopback TCP both ways, the controller's request path) -> at best ${(rbdLat / (rbdLat + floorLat)).toFixed(2)}x fio rbd at 4 KiB read QD1.`,
    );
    lines.push(...ceilingLines(rows), ...queueLines(rows));
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    if (clusterDir) await exec(clusterScript, ['stop', clusterDir], { timeout: 60_000 });
  }
}

await main();
