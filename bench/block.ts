import { mkdirSync, writeFileSync, mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseConfig, type FunctionConfig, type NotifyMode } from '../src/config/config.ts';
import { Controller } from '../src/controller/controller.ts';
import { runFio, median, durabilityArgs, durableLatency, type FioResult, type WriteDurability } from './lib/fio.ts';
import { barChart } from './lib/chart.ts';
import { childPids, cpuMeter, processCpuSeconds, statCpuSeconds } from './lib/cpu.ts';
import { nbdkitTarget, prefill, type Target } from './lib/targets.ts';
import os from 'node:os';
import { pinSelf, startAffinity, withAffinity } from '../src/native/sched.ts';
import { tracing, collectTraces, resetTraces, summarizeRows, medianGapUs, medianCrossGapUs, S, type TraceSnapshot } from '../src/util/trace.ts';

/**
 * The block-level comparison of issue #2: the nbd-export function in every
 * deployment, driven by fio's nbd engine, beside fio on a raw file (the
 * physical limit) and the controller's own NBD export, all in one run.
 * Process guests (issue #9) in each notification mode, and an ablation of the
 * paper's mechanisms on a process guest: all on, then each one off
 * (polling, static cores, huge pages, idle=poll, priorities), as ratios to
 * integrated in the same run.
 *
 *   npm run bench -- block            (BENCH_SECONDS=4 BENCH_REPEATS=3 by default)
 *
 * Per row, the CPU of every side per request (fio's, the controller's, the
 * guest's) and IOPS × that as a share of the machine's cores: a row near 1.0
 * is bounded by the CPU, not by the disk or a wait (issue #8).
 * With STORVISOR_TRACE=1 each QD1 row also gets its per-stage trace (medians
 * of every request's steps, per thread: see src/util/trace.ts).
 */
const MiB = 2 ** 20;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const DATA = Number(process.env.BENCH_DATA_MIB ?? 1024) * MiB; // the cache-miss working set
const CACHE = 32 * MiB;
const HOT = 8 * MiB; // the cache-hit working set
const CORES = os.cpus().length;

interface Workload {
  name: string;
  rw: 'randread' | 'randwrite';
  qd: number;
  region: number;
  warm?: boolean;
  /** A write row's durability, the same for every target (durabilityArgs). */
  durability?: WriteDurability;
}
/**
 * Two kinds of write row, so that every target is asked for the same
 * durability: "write" is plain writes, which may complete in a volatile cache
 * (NBD WRITE without FUA; buffered pwrite on the raw file), with one flush at
 * the end; "durable write" has every write made durable by a flush of its own
 * (NBD WRITE + FLUSH: fio's nbd engine cannot send FUA; O_DIRECT + O_DSYNC on
 * the raw file).
 */
const WORKLOADS: Workload[] = [
  { name: 'read hit QD1', rw: 'randread', qd: 1, region: HOT, warm: true },
  { name: 'read hit QD32', rw: 'randread', qd: 32, region: HOT, warm: true },
  { name: 'read miss QD1', rw: 'randread', qd: 1, region: DATA },
  { name: 'read miss QD32', rw: 'randread', qd: 32, region: DATA },
  { name: 'write QD1', rw: 'randwrite', qd: 1, region: DATA, durability: 'write-back' },
  { name: 'write QD32', rw: 'randwrite', qd: 32, region: DATA, durability: 'write-back' },
  { name: 'durable write QD1', rw: 'randwrite', qd: 1, region: DATA, durability: 'durable' },
  { name: 'durable write QD32', rw: 'randwrite', qd: 32, region: DATA, durability: 'durable' },
];

const fn = (name: string, deploy: FunctionConfig['deploy'], notify: NotifyMode, idle: FunctionConfig['idle'] = 'adaptive', more: Partial<FunctionConfig> = {}): FunctionConfig => ({
  name,
  function: 'nbd-export',
  volume: 'bench',
  deploy,
  notify,
  memory: 64 * MiB,
  heapMiB: 256,
  queueSize: 256,
  listen: { host: '127.0.0.1', port: 0 },
  restart: 'never',
  idle,
  // No warm spare in a benchmark: it would only sit beside the measurement.
  ...(deploy === 'guest' ? { standby: false } : {}),
  options: { exportName: 'bench' },
  ...more,
});

function deployed(
  name: string,
  deploy: FunctionConfig['deploy'],
  notify: NotifyMode = 'adaptive',
  idle: FunctionConfig['idle'] = 'adaptive',
  more: Partial<FunctionConfig> = {},
  around: { before?: () => void; after?: () => void } = {},
): Target {
  const id = name.replace(/\W/g, '-');
  return {
    name,
    async setup(c) {
      around.before?.();
      const a = await c.deploy(fn(id, deploy, notify, idle, more));
      const s = await c.deployment(id)?.status();
      if (s?.guest?.kind === 'process') {
        const g = s.guest;
        process.stderr.write(`[block] ${name}: pid ${g.pid}, affinity ${JSON.stringify(g.affinity)}, nice ${JSON.stringify(g.nice)} ${JSON.stringify(g.policy)}, huge pages ${g.hugepages}${g.hugepagesWhyNot ? ` (${g.hugepagesWhyNot})` : ''}, idle ${g.idle}\n`);
      }
      return ['--ioengine=nbd', `--uri=nbd://${a.host}:${a.port}/bench`];
    },
    async teardown(c) {
      await c.undeploy(id);
      around.after?.();
    },
  };
}

/** Busy and total jiffies of the whole machine (/proc/stat's cpu line): who else used the cores. */
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3]! + (f[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

/** CPU seconds of each thread of this process (user + system, from /proc/self/task/TID/stat). */
function threadCpu(): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const t of tids) {
    try {
      out.set(Number(t), statCpuSeconds(`/proc/self/task/${t}/stat`));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * CPU per side between start and the returned call (seconds): the controller's
 * thread (the poller, the engine, the device side of every queue), the guest
 * (the threads that appeared while the target was set up: a thread guest's
 * worker; or the child processes: a process guest, a gateway, nbdkit), and the
 * rest of this process (V8's GC helpers, the libuv pool).
 */
function sideMeter(guestTids: Set<number>): () => { controller: number; guest: number; other: number } {
  const t0 = threadCpu();
  const pids = childPids();
  const c0 = pids.reduce((a, p) => a + processCpuSeconds(p), 0);
  return () => {
    const t1 = threadCpu();
    const side = { controller: 0, guest: pids.reduce((a, p) => a + processCpuSeconds(p), 0) - c0, other: 0 };
    for (const [tid, s] of t1) {
      const d = s - (t0.get(tid) ?? 0);
      if (tid === process.pid) side.controller += d;
      else if (guestTids.has(tid)) side.guest += d;
      else side.other += d;
    }
    return side;
  };
}

/**
 * The ablation: a process guest with every mechanism on (poll, static cores:
 * guest on the last CPU and the poller on CPU 0, huge pages, idle=poll,
 * priorities: nice -5 for guest and poller), then each turned off alone.
 */
const ABLATION = [
  { label: 'all on', off: '' },
  { label: '- polling', off: 'polling' },
  { label: '- static cores', off: 'cores' },
  { label: '- huge pages', off: 'hugepages' },
  { label: '- idle=poll', off: 'idle' },
  { label: '- priorities', off: 'priority' },
] as const;

function ablationTargets(): Target[] {
  const cpus = os.cpus().length;
  return ABLATION.map(({ label, off }) => {
    const cores = off !== 'cores' && cpus >= 2;
    const priority = off !== 'priority';
    const more: Partial<FunctionConfig> = {
      kind: 'process',
      hugepages: off !== 'hugepages',
      ...(cores ? { cores: [cpus - 1] } : {}),
      ...(priority ? { priority: { nice: -5 } } : {}),
    };
    return deployed(`ablation: ${label}`, 'guest', off === 'polling' ? 'notify' : 'poll', off === 'idle' ? 'adaptive' : 'poll', more, {
      // The poller is this process's main thread: pinned and prioritised for the rows that have those on.
      before: () => {
        const r = pinSelf(cores ? [0] : startAffinity, { nice: priority ? -5 : 0 });
        for (const why of r.refused) process.stderr.write(`[block] ablation ${label}: poller ${why}\n`);
      },
      after: () => void pinSelf(startAffinity, { nice: 0 }),
    });
  });
}

/** Reserve huge pages for the ablation's regions where permitted (root); returns a restore function. */
function reserveHugePages(pages: number): () => void {
  const file = '/proc/sys/vm/nr_hugepages';
  try {
    const before = Number(readFileSync(file, 'utf8'));
    writeFileSync(file, String(before + pages));
    return () => writeFileSync(file, String(before));
  } catch (err) {
    process.stderr.write(`[block] cannot reserve huge pages (${(err as Error).message}): the ablation's huge-page rows fall back, and say so\n`);
    return () => {};
  }
}

export async function blockBench(resultsDir: string): Promise<void> {
  const progress = (m: string) => process.stderr.write(`[block] ${m}\n`);
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-bench-'));
  try {
    const rawFile = join(dir, 'raw.img');
    progress(`preparing ${DATA / MiB} MiB of data twice (volume and raw file) in ${dir}`);
    prefill(rawFile, DATA);
    mkdirSync(join(dir, 'data', 'volumes'), { recursive: true });
    prefill(join(dir, 'data', 'volumes', 'bench.img'), DATA);
    writeFileSync(join(dir, 'data', 'volumes', 'bench.json'), JSON.stringify({ name: 'bench', uuid: 'bench', size: DATA, createdAt: new Date().toISOString() }));
    const config = parseConfig({ dataDir: join(dir, 'data'), cacheMiB: CACHE / MiB, api: null, nbd: { port: 0 }, volumes: [{ name: 'bench', size: DATA }] }, dir, {});
    const controller = await Controller.start(config);

    const targets: Target[] = [
      {
        name: 'fio raw file',
        setup: async () => [`--filename=${rawFile}`, '--direct=1'],
        teardown: async () => {},
      },
      nbdkitTarget(rawFile),
      {
        name: 'controller export',
        setup: async (c) => ['--ioengine=nbd', `--uri=nbd://${c.nbdEndpoint().host}:${c.nbdEndpoint().port}/bench`],
        teardown: async () => {},
      },
      deployed('integrated', 'integrated'),
      deployed('guest/poll', 'guest', 'poll'),
      deployed('guest/adaptive', 'guest', 'adaptive'),
      deployed('guest/notify', 'guest', 'notify'),
      // The spin matrix: which side spins (guest, controller, both, neither), and the guest's idle=poll.
      deployed('guest/poll+idle', 'guest', 'poll', 'poll'),
      deployed('guest/poll-guest', 'guest', 'poll-guest'),
      deployed('guest/poll-guest+idle', 'guest', 'poll-guest', 'poll'),
      deployed('guest/poll-controller', 'guest', 'poll-controller'),
      deployed('process/poll', 'guest', 'poll', 'adaptive', { kind: 'process' }),
      deployed('process/adaptive', 'guest', 'adaptive', 'adaptive', { kind: 'process' }),
      deployed('process/notify', 'guest', 'notify', 'adaptive', { kind: 'process' }),
      deployed('gateway/NBD', 'gateway'),
      ...ablationTargets(),
    ];
    // A 64 MiB region in 2 MiB pages, plus its queue: 34 pages (one guest at a time).
    const restoreHugePages = reserveHugePages(40);
    // BENCH_TARGETS / BENCH_WORKLOADS (comma-separated substrings, or =name for exactly that one) narrow a run while tuning.
    const pick = <T extends { name: string }>(all: T[], env: string | undefined) =>
      env ? all.filter((x) => env.split(',').some((p) => (p.startsWith('=') ? x.name === p.slice(1) : x.name.includes(p)))) : all;
    targets.splice(0, targets.length, ...pick(targets, process.env.BENCH_TARGETS));
    const workloads = pick(WORKLOADS, process.env.BENCH_WORKLOADS);
    const samples = new Map<string, Array<FioResult & { cpuMsPerK: number; ctlUs: number; guestUs: number; otherUs: number; idlePasses: number; sleepsPerK: number; clientUs: number; totalUs: number; coreShare: number; machineShare: number }>>();
    /** fio's CPU for a run that is all fixed cost (one request), per engine: taken off each run's, leaving the client's CPU per request. */
    const fixedFio = new Map<string, number>();
    const traceLines: string[] = [];
    const total = REPEATS * targets.length * workloads.length;
    let done = 0;
    const t0 = Date.now();
    for (let r = 0; r < REPEATS; r++) {
      for (const target of targets) {
        const before = new Set(threadCpu().keys());
        const reach = await target.setup(controller);
        const guestTids = new Set([...threadCpu().keys()].filter((t) => !before.has(t)));
        for (const w of workloads) {
          const raw = target.name === 'fio raw file';
          const engine = raw ? [w.qd === 1 ? '--ioengine=psync' : '--ioengine=libaio'] : [];
          // After the target's own arguments: the raw file's write-back row turns its O_DIRECT off.
          const sync = w.durability !== undefined ? durabilityArgs(raw, w.durability) : [];
          const common = ['--name=b', `--bs=4k`, `--iodepth=${w.qd}`, `--size=${w.region}`, '--norandommap', '--randrepeat=0', ...engine, ...reach, ...sync];
          // fio is spawned on every CPU this process started with, not on a pinned poller's core.
          if (w.warm) await withAffinity(undefined, () => runFio([...common, '--rw=read', '--iodepth=16']));
          const engineKey = `${raw ? engine[0] : 'nbd'}${sync.join('')}`;
          if (!fixedFio.has(engineKey)) {
            const one = await withAffinity(undefined, () => runFio([...common, `--rw=${w.rw}`, '--io_size=4k']));
            fixedFio.set(engineKey, one.fioCpuSec);
          }
          const traced = tracing && w.qd === 1;
          if (traced) resetTraces();
          const meter = cpuMeter(childPids);
          const sides = sideMeter(guestTids);
          const machine0 = machineJiffies();
          const poller0 = { ...controller.poller.counters };
          const run = await withAffinity(undefined, () => runFio([...common, `--rw=${w.rw}`, '--time_based', `--runtime=${SECONDS}`]));
          // A durable NBD write's latency is its WRITE's and its FLUSH's.
          const fio = w.durability === 'durable' ? { ...run, ...durableLatency(run) } : run;
          // Server-side CPU per 1,000 requests (ms); fio on the raw file has no server.
          const side = sides();
          const perReq = (sec: number) => (raw ? NaN : (sec * 1e6) / Math.max(1, fio.ios));
          // The poller's empty passes and sleeps per request: how much the controller spun, counted (noise-free) rather than timed.
          const pc = controller.poller.counters;
          const idlePasses = (pc.idlePasses - poller0.idlePasses) / Math.max(1, fio.ios);
          const sleepsPerK = ((pc.sleeps - poller0.sleeps) * 1000) / Math.max(1, fio.ios);
          const machine1 = machineJiffies();
          const machineShare = (machine1.busy - machine0.busy) / Math.max(1, machine1.total - machine0.total);
          const serverUs = perReq(meter());
          // The client's CPU (fio and libnbd) per request; the server's (this process and its children) beside it.
          const clientUs = (Math.max(0, fio.fioCpuSec - fixedFio.get(engineKey)!) * 1e6) / Math.max(1, fio.ios);
          const totalUs = clientUs + (raw ? 0 : serverUs);
          const res = { ...fio, cpuMsPerK: serverUs, ctlUs: perReq(side.controller), guestUs: perReq(side.guest), otherUs: perReq(side.other), idlePasses, sleepsPerK, clientUs, totalUs, coreShare: (fio.iops * totalUs) / 1e6 / CORES, machineShare };
          if (traced && r === 0) traceLines.push(...traceReport(`${target.name}, ${w.name}`, await collectTraces(), fio.p50Us));
          const key = `${target.name}|${w.name}`;
          samples.set(key, [...(samples.get(key) ?? []), res]);
          done++;
          const eta = ((Date.now() - t0) / done) * (total - done);
          progress(`${done}/${total} ${target.name.padEnd(17)} ${w.name.padEnd(16)} ${Math.round(res.iops).toString().padStart(7)} IOPS  p50 ${res.p50Us.toFixed(0)} µs  (eta ${Math.round(eta / 1000)} s)`);
        }
        await target.teardown(controller);
      }
    }
    await controller.stop();
    restoreHugePages();

    const rows = targets.map((t) => ({
      deployment: t.name,
      workloads: Object.fromEntries(
        workloads.map((w) => {
          const s = samples.get(`${t.name}|${w.name}`) ?? [];
          return [w.name, { iops: median(s.map((x) => x.iops)), p50Us: median(s.map((x) => x.p50Us)), p99Us: median(s.map((x) => x.p99Us)), cpuMsPerK: median(s.map((x) => x.cpuMsPerK)), ctlUs: median(s.map((x) => x.ctlUs)), guestUs: median(s.map((x) => x.guestUs)), otherUs: median(s.map((x) => x.otherUs)), idlePasses: median(s.map((x) => x.idlePasses)), sleepsPerK: median(s.map((x) => x.sleepsPerK)), clientUs: median(s.map((x) => x.clientUs)), totalUs: median(s.map((x) => x.totalUs)), coreShare: median(s.map((x) => x.coreShare)), machineShare: median(s.map((x) => x.machineShare)), runs: s.map((x) => Math.round(x.iops)) }];
        }),
      ),
    }));
    const missing = { iops: NaN, p50Us: NaN, p99Us: NaN, cpuMsPerK: NaN, ctlUs: NaN, guestUs: NaN, otherUs: NaN, idlePasses: NaN, sleepsPerK: NaN, clientUs: NaN, totalUs: NaN, coreShare: NaN, machineShare: NaN, runs: [] as number[] };
    const at = (d: string, w: string) => rows.find((r) => r.deployment === d)?.workloads[w] ?? missing;
    const lines: string[] = [];
    lines.push(`# block bench: 4 KiB, median of ${REPEATS} runs of ${SECONDS} s, cache ${CACHE / MiB} MiB, data ${DATA / MiB} MiB`);
    for (const w of workloads) {
      lines.push(`\n## ${w.name}\n`);
      if (w.durability === 'write-back') lines.push('Plain writes (NBD WRITE without FUA; buffered pwrite on the raw file), which may complete in a volatile cache; one flush at the end.\n');
      if (w.durability === 'durable') lines.push('Every write made durable by a flush of its own (NBD WRITE + FLUSH, since fio\'s nbd engine cannot send FUA; O_DIRECT + O_DSYNC on the raw file); p50/p99 are the write\'s plus its flush\'s.\n');
      // CPU µs per request by side (= ms per 1k): the controller's thread, the guest (its thread or process), the rest (GC helpers, pool).
      // total = fio (client) + this process + its children, per request; IOPS × total as a share of the cores: near 1.0, CPU-bound.
      // The machine's busy share beside it: well above ours, someone else had the cores (a shared machine).
      lines.push(`| deployment | IOPS | p50 µs | p99 µs | vs integrated | CPU ms / 1k req | controller µs/req | guest µs/req | other µs/req | fio µs/req | total CPU µs/req | IOPS × total / ${CORES} cores | machine busy share | poller empty passes / req | poller sleeps / 1k req | runs |`);
      lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
      const base = at('integrated', w.name).iops;
      for (const r of rows) {
        const x = r.workloads[w.name]!;
        const us = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '—');
        const share = Number.isFinite(x.coreShare) ? x.coreShare.toFixed(2) : '—';
        lines.push(`| ${r.deployment} | ${Math.round(x.iops)} | ${x.p50Us.toFixed(0)} | ${x.p99Us.toFixed(0)} | ${(x.iops / base).toFixed(2)} | ${us(x.cpuMsPerK)} | ${us(x.ctlUs)} | ${us(x.guestUs)} | ${us(x.otherUs)} | ${us(x.clientUs)} | ${us(x.totalUs)} | ${share} | ${Number.isFinite(x.machineShare) ? x.machineShare.toFixed(2) : '—'} | ${us(x.idlePasses)} | ${us(x.sleepsPerK)} | ${x.runs.join(', ')} |`);
      }
    }
    const ablated = rows.filter((r) => r.deployment.startsWith('ablation: '));
    if (ablated.length > 0) {
      lines.push('\n## ablation: a process guest with each mechanism off alone (ratios to integrated, same run)\n');
      for (const w of workloads) {
        const base = at('integrated', w.name);
        lines.push(`\n### ${w.name}\n`);
        lines.push('| process guest | IOPS / integrated | p50 / integrated | p99 / integrated | IOPS / all on | CPU ms / 1k req |');
        lines.push('|---|---:|---:|---:|---:|---:|');
        const all = at('ablation: all on', w.name);
        for (const r of ablated) {
          const x = r.workloads[w.name]!;
          lines.push(`| ${r.deployment.slice('ablation: '.length)} | ${(x.iops / base.iops).toFixed(2)} | ${(x.p50Us / base.p50Us).toFixed(2)} | ${(x.p99Us / base.p99Us).toFixed(2)} | ${(x.iops / all.iops).toFixed(2)} | ${Number.isFinite(x.cpuMsPerK) ? x.cpuMsPerK.toFixed(1) : '—'} |`);
        }
      }
    }
    const ratio = (a: string, b: string, w: string) => at(a, w).iops / at(b, w).iops;
    const latency = (a: string, b: string, w: string) => at(a, w).p50Us / at(b, w).p50Us;
    const checks = [
      ['guest/poll / integrated, read miss QD1 (target >= 0.95)', ratio('guest/poll', 'integrated', 'read miss QD1')],
      ['guest/poll / integrated, read miss QD32 (target >= 0.95)', ratio('guest/poll', 'integrated', 'read miss QD32')],
      ['guest/poll / integrated, read hit QD1 (target >= 0.80)', ratio('guest/poll', 'integrated', 'read hit QD1')],
      ['guest/poll / integrated, read hit QD32 (target >= 0.80)', ratio('guest/poll', 'integrated', 'read hit QD32')],
      ['guest/poll / guest/notify, read hit QD1 (target >= 5)', ratio('guest/poll', 'guest/notify', 'read hit QD1')],
      ['guest/poll / guest/notify, read miss QD1 (target >= 5)', ratio('guest/poll', 'guest/notify', 'read miss QD1')],
      ['controller export / fio raw, read miss QD32 (target >= 0.80)', ratio('controller export', 'fio raw file', 'read miss QD32')],
      ['guest/adaptive / integrated, read miss QD1', ratio('guest/adaptive', 'integrated', 'read miss QD1')],
      ['gateway / integrated, read miss QD1', ratio('gateway/NBD', 'integrated', 'read miss QD1')],
      ['process/poll / integrated, read miss QD1 (target >= 0.95)', ratio('process/poll', 'integrated', 'read miss QD1')],
      ['process/poll / integrated, read miss QD32 (target >= 0.95)', ratio('process/poll', 'integrated', 'read miss QD32')],
      ['process/poll p50 / integrated p50, durable write QD1 (target <= 1.05)', latency('process/poll', 'integrated', 'durable write QD1')],
      ['ablation all on / integrated, read miss QD1 (target >= 0.95)', ratio('ablation: all on', 'integrated', 'read miss QD1')],
      ['ablation all on p50 / integrated p50, durable write QD1 (target <= 1.05)', latency('ablation: all on', 'integrated', 'durable write QD1')],
    ] as [string, number][];
    // Issue #8: adaptive picks the winner by itself, and polling pays in every row.
    for (const w of workloads) {
      const best = Math.max(at('guest/poll', w.name).iops, at('guest/notify', w.name).iops);
      checks.push([`guest/adaptive / best of poll and notify, ${w.name} (target >= 0.95)`, at('guest/adaptive', w.name).iops / best]);
      checks.push([`guest/poll / guest/notify, ${w.name} (target >= 1)`, ratio('guest/poll', 'guest/notify', w.name)]);
    }
    if (traceLines.length > 0) lines.push('\n## traces (QD1, first repeat; median µs per step over the run\'s requests)\n', ...traceLines);
    lines.push('\n## ratios (same run)\n');
    for (const [name, v] of checks) lines.push(`- ${name}: ${v.toFixed(2)}`);
    const text = lines.join('\n') + '\n';
    process.stdout.write(text);

    mkdirSync(resultsDir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const base = join(resultsDir, `block-${stamp}`);
    writeFileSync(`${base}.json`, JSON.stringify({ seconds: SECONDS, repeats: REPEATS, cacheBytes: CACHE, dataBytes: DATA, rows, ratios: Object.fromEntries(checks) }, null, 2));
    writeFileSync(`${base}.md`, text);
    writeFileSync(
      `${base}.svg`,
      barChart({
        title: `4 KiB IOPS by deployment (median of ${REPEATS})`,
        unit: 'IOPS',
        groups: workloads.map((w) => w.name),
        series: rows.map((r) => ({ label: r.deployment, values: workloads.map((w) => r.workloads[w.name]!.iops) })),
      }),
    );
    progress(`wrote ${base}.json, .md and .svg`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * One QD1 row's traces as Markdown: per thread that traced requests, per kind
 * of request (cache hit, cache miss, write, guest queue), the median of each
 * step, the request's time in the thread, and the time outside it (from one
 * reply's writev to the next request's bytes: the client and the loopback).
 */
function traceReport(title: string, snapshots: TraceSnapshot[], fioP50Us: number): string[] {
  const out = [`\n### ${title} (fio p50 ${fioP50Us.toFixed(1)} µs)\n`];
  const kinds: Array<[string, (row: Array<number | null>) => boolean]> = [
    ['read hit', (r) => r[S.cacheHit] !== null],
    ['read miss', (r) => r[S.cacheMiss] !== null],
    ['write', (r) => r[S.volWrite] !== null],
    ['guest driver', (r) => r[S.drvPublished] !== null],
  ];
  for (const snap of snapshots) {
    for (const [kind, keep] of kinds) {
      const n = snap.rows.filter(keep).length;
      if (n < 20) continue;
      const first = snap.rows.find(keep)!;
      const from = first[S.data] !== null ? 'data' : 'devTaken';
      const to = first[S.written] !== null ? 'written' : 'devFlushed';
      const inThread = medianGapUs(snap, from, to, keep);
      const outside = from === 'data' ? `; outside (written → next data) ${medianCrossGapUs(snap, 'written', 'data').toFixed(1)} µs` : '';
      out.push(`- thread ${snap.threadId}, ${kind}, ${n} requests: ${from} → ${to} ${inThread.toFixed(1)} µs${outside}`);
      for (const st of summarizeRows(snap, keep)) if (st.count >= n / 10) out.push(`  - ${st.step}: ${st.medianUs.toFixed(1)} µs (${st.count})`);
    }
  }
  return out;
}
