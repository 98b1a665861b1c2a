/**
 * NFS file server benchmark: storvisor's file server and nfs-ganesha in the same
 * run, on the same workloads, with the load generator in its own process.
 *
 * Compare mode (the default; what `npm run bench -- nfs` runs):
 *   node --import tsx bench/fileserver.ts [--out results]
 * the fileserver function on a real controller (volume, block cache, O_DIRECT
 * backend), integrated and in a guest thread with adaptive polling (each started
 * fresh for each session, so nothing idles beside a measurement), and
 * nfs-ganesha (VFS FSAL on a local directory, rpcbind started if none runs; it
 * must be installed), interleaved (repeat × data set × server):
 *   fill    sequential 1 MiB UNSTABLE WRITEs to a new file (4 in flight), then COMMIT: MiB/s
 *   NULL    NFS procedure 0 round trips, 1 and 32 in flight (cached set only): no file-system
 *           work, so integrated ÷ ganesha here is the runtime and socket floor under every row
 *   GETATTR 1 and 32 in flight (cached set only): the floor plus one attribute lookup
 *   READ    4 KiB random READ, 1 and 32 in flight
 *   WRITE   4 KiB random FILE_SYNC WRITE over the filled file, 1 and 32 in flight
 * on two data sets:
 *   cached    a file that fits the controller cache and the page cache (read once
 *             before the timed passes, so both servers serve it from memory)
 *   uncached  a file 8x the controller cache (ours misses it); ganesha's file is
 *             written back and dropped from the page cache (fdatasync +
 *             posix_fadvise DONTNEED) before every timed pass, so each pass starts
 *             cold (its reads warm the page cache as the pass goes on)
 * plus fio (O_DIRECT, io_uring) on a raw file of the uncached size, the floor the
 * uncached READs stand on, and the volume's own sequential write speed (fio nbd
 * engine through the controller's export, 1 MiB, 4 in flight), the yardstick of
 * the fill. Each row: ops/s (MiB/s for fill), p50, and CPU per op of the server
 * (ours: this process, which hosts the controller and its guest threads;
 * ganesha: its daemon from /proc), median of BENCH_REPEATS (3) passes of
 * BENCH_SECONDS (4), then the targets, each with its figure, met or not.
 * Writes a Markdown table, JSON and two SVG charts (absolute, and integrated ÷
 * ganesha) to --out.
 *   BENCH_NFS_CACHE_MIB (64)  controller cache; cached file = half of it
 *   BENCH_NFS_FILE_MIB (8 x cache)  uncached file
 *
 * Driver mode (one client load against a running server; what compare mode and
 * bench/functions.ts spawn):
 *   --target HOST:NFSPORT[:MOUNTPORT] --export /path --file-mib N --seconds S
 *   --json          fill, then 4 KiB READ and FILE_SYNC WRITE at --depth (32), one JSON line
 *   --session NAME  the phases above one at a time: prints {"ready":phase}, waits for
 *                   a line on stdin, runs it and prints its result (compare mode's protocol)
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NFS, NfsClient } from '../test/fileserver/nfs/helpers/nfs-client.ts';
import { barChart } from './lib/chart.ts';
import { processCpuSeconds, selfCpuSeconds } from './lib/cpu.ts';
import { startDeployment, type DeploymentUnderTest } from './lib/deployment.ts';
import { withController } from './lib/targets.ts';
import { parseConfig } from '../src/config/config.ts';
import { median, runFio } from './lib/fio.ts';
import { evictFromPageCache, startGanesha, type Ganesha } from './lib/ganesha.ts';

const { values } = parseArgs({
  options: {
    'file-mib': { type: 'string', default: '64' },
    seconds: { type: 'string', default: process.env.BENCH_SECONDS ?? '4' },
    depth: { type: 'string', default: '32' },
    connections: { type: 'string', default: '4' },
    target: { type: 'string' },
    export: { type: 'string', default: '/export' },
    json: { type: 'boolean', default: false },
    session: { type: 'string' },
    out: { type: 'string', default: 'results' },
  },
});
const IO = 4096;
const FILL_IO = 1 << 20;
const FILL_DEPTH = 4;

// ---- driver: one client load ---------------------------------------------------------

interface PhaseResult {
  phase: string;
  ops: number;
  seconds: number;
  /** ops/s, or MiB/s for fill */
  value: number;
  p50us: number;
  p99us: number;
}

/** `depth` loops spread over the connections, each issuing one op at a time until the deadline. */
async function drive(phase: string, clients: NfsClient[], depth: number, seconds: number, op: (c: NfsClient) => Promise<void>): Promise<PhaseResult> {
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: depth }, async (_, i) => {
      const c = clients[i % clients.length]!;
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await op(c);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! * 1000);
  return { phase, ops: latencies.length, seconds: elapsed, value: Math.round(latencies.length / elapsed), p50us: pct(0.5), p99us: pct(0.99) };
}

class Load {
  private constructor(
    readonly clients: NfsClient[],
    readonly root: Buffer,
    readonly name: string,
    readonly fh: Buffer,
    readonly fileBytes: number,
    readonly seconds: number,
  ) {}

  static async open(spec: string, exportPath: string, name: string, fileBytes: number, seconds: number, connections: number): Promise<Load> {
    const [host, nfs, mount] = spec.split(':');
    if (!host || !nfs) throw new Error('--target must be HOST:NFSPORT[:MOUNTPORT]');
    const clients = await Promise.all(Array.from({ length: connections }, () => NfsClient.connect(Number(nfs), host)));
    const mountPort = Number(mount ?? nfs);
    const mounter = mountPort === Number(nfs) ? clients[0]! : await NfsClient.connect(mountPort, host);
    const root = await mounter.root(exportPath);
    if (mounter !== clients[0]) await mounter.close();
    const created = await clients[0]!.create(root, name, 0, { mode: 0o644, size: 0 });
    if (created.status !== 0) throw new Error(`CREATE failed: nfsstat3 ${created.status}`);
    return new Load(clients, root, name, created.fh!, fileBytes, seconds);
  }

  /** Sequential 1 MiB UNSTABLE writes, FILL_DEPTH in flight, then one COMMIT; every 4 KiB block is real data. */
  async fill(): Promise<PhaseResult> {
    const c = this.clients[0]!;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: FILL_DEPTH }, async () => {
        const buf = Buffer.alloc(FILL_IO);
        while (next < this.fileBytes) {
          const off = next;
          next += FILL_IO;
          for (let i = 0; i < FILL_IO; i += 8) buf.writeUInt32BE((off + i) >>> 0, i);
          const w = await c.write(this.fh, off, buf.subarray(0, Math.min(FILL_IO, this.fileBytes - off)), 0);
          if (w.status !== 0) throw new Error(`fill write failed: nfsstat3 ${w.status}`);
        }
      }),
    );
    const cm = await c.commit(this.fh);
    if (cm.status !== 0) throw new Error(`COMMIT failed: nfsstat3 ${cm.status}`);
    const secs = (performance.now() - t0) / 1000;
    const ops = Math.ceil(this.fileBytes / FILL_IO);
    return { phase: 'fill', ops, seconds: secs, value: Math.round((this.fileBytes / (1 << 20) / secs) * 10) / 10, p50us: NaN, p99us: NaN };
  }

  /** Read the whole file once (1 MiB READs) so a cached pass starts warm. */
  async warm(): Promise<PhaseResult> {
    const t0 = performance.now();
    for (let off = 0; off < this.fileBytes; off += FILL_IO) {
      const r = await this.clients[0]!.read(this.fh, off, FILL_IO);
      if (r.status !== 0) throw new Error(`READ failed: nfsstat3 ${r.status}`);
    }
    return { phase: 'warm', ops: this.fileBytes / FILL_IO, seconds: (performance.now() - t0) / 1000, value: NaN, p50us: NaN, p99us: NaN };
  }

  private randomOffset = () => Math.floor(Math.random() * (this.fileBytes / IO)) * IO;

  read(depth: number, phase = `READ QD${depth}`): Promise<PhaseResult> {
    return drive(phase, this.clients, depth, this.seconds, async (c) => {
      const r = await c.read(this.fh, this.randomOffset(), IO);
      if (r.status !== 0 || r.count !== IO) throw new Error(`READ failed: nfsstat3 ${r.status}`);
    });
  }

  /** NFS NULL: an RPC round trip and nothing else (the floor under every other row). */
  nullCall(depth: number): Promise<PhaseResult> {
    return drive(`NULL QD${depth}`, this.clients, depth, this.seconds, async (c) => {
      const r = await c.rpc.call(NFS, 3, 0);
      if (r.replyStat !== 0 || r.stat !== 0) throw new Error(`NULL failed: reply ${r.replyStat}/${r.stat}`);
    });
  }

  getattr(depth: number): Promise<PhaseResult> {
    return drive(`GETATTR QD${depth}`, this.clients, depth, this.seconds, async (c) => {
      const r = await c.getattr(this.fh);
      if (r.status !== 0) throw new Error(`GETATTR failed: nfsstat3 ${r.status}`);
    });
  }

  private payload = Buffer.alloc(IO, 0xab);
  write(depth: number, phase = `WRITE FILE_SYNC QD${depth}`): Promise<PhaseResult> {
    return drive(phase, this.clients, depth, this.seconds, async (c) => {
      const w = await c.write(this.fh, this.randomOffset(), this.payload, 2);
      if (w.status !== 0 || w.committed !== 2) throw new Error(`WRITE failed: nfsstat3 ${w.status}`);
    });
  }

  async close(): Promise<void> {
    await this.clients[0]!.remove(this.root, this.name);
    await Promise.all(this.clients.map((c) => c.close()));
  }
}

const SESSION_PHASES = ['fill', 'warm', 'NULL QD1', 'NULL QD32', 'GETATTR QD1', 'GETATTR QD32', 'READ QD1', 'READ QD32', 'WRITE FILE_SYNC QD1', 'WRITE FILE_SYNC QD32'] as const;
type Phase = (typeof SESSION_PHASES)[number];
/** Phases that touch no file data: the same on both data sets, so they run on the cached set only. */
const FLOOR_PHASES: ReadonlySet<Phase> = new Set(['NULL QD1', 'NULL QD32', 'GETATTR QD1', 'GETATTR QD32']);

function runPhase(load: Load, phase: Phase): Promise<PhaseResult> {
  switch (phase) {
    case 'fill':
      return load.fill();
    case 'warm':
      return load.warm();
    case 'NULL QD1':
      return load.nullCall(1);
    case 'NULL QD32':
      return load.nullCall(32);
    case 'GETATTR QD1':
      return load.getattr(1);
    case 'GETATTR QD32':
      return load.getattr(32);
    case 'READ QD1':
      return load.read(1);
    case 'READ QD32':
      return load.read(32);
    case 'WRITE FILE_SYNC QD1':
      return load.write(1);
    case 'WRITE FILE_SYNC QD32':
      return load.write(32);
  }
}

async function driver(): Promise<void> {
  const fileBytes = Number(values['file-mib']) << 20;
  const seconds = Number(values.seconds);
  const name = values.session ?? `bench-${process.pid}`;
  const load = await Load.open(values.target!, values.export!, name, fileBytes, seconds, Number(values.connections));
  try {
    if (values.session) {
      const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
      const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
      for (const phase of SESSION_PHASES) {
        say({ ready: phase });
        const go = await lines.next();
        if (go.done || go.value.trim() === 'skip') continue;
        say({ result: await runPhase(load, phase) });
      }
      say({ done: true });
      return;
    }
    // bench/functions.ts's load: fill, then READ and FILE_SYNC WRITE at --depth.
    const depth = Number(values.depth);
    const fill = await load.fill();
    const results = [await load.read(depth, '4K random READ'), await load.write(depth, '4K random WRITE FILE_SYNC')].map((r) => ({
      workload: r.phase,
      ops: r.ops,
      iops: r.value,
      p50us: r.p50us,
      p99us: r.p99us,
    }));
    if (values.json) {
      console.log(JSON.stringify({ label: `peer at ${values.target}`, fileBytes, depth, seconds, fillMiBps: fill.value, results }));
      return;
    }
    console.log(`${values.target}: file ${fileBytes >> 20} MiB filled at ${fill.value} MiB/s, ${depth} in flight, ${seconds} s per workload`);
    console.table(results);
  } finally {
    await load.close();
  }
}

// ---- compare mode: both servers, both data sets, same run ------------------------------------

interface Server {
  label: string;
  target: string;
  exportPath: string;
  /** Path of a file created at the export root, on this machine (ganesha), for eviction. */
  localFile?: (name: string) => string;
  cpuSeconds(): number;
  /** The file server's counters (ours only), for the stay-awake spins per op. */
  stats?(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** A server for the run: ganesha starts once; ours start fresh for each session (nothing idle beside a measurement). */
interface ServerKind {
  label: string;
  start(): Promise<Server>;
  /** Stop what start() left running for the whole run (ganesha). */
  close(): Promise<void>;
}

interface Cell {
  value: number;
  p50us: number;
  cpuUsPerOp: number;
  /** Calls a stay-awake spin caught, per op (ours; NaN for ganesha). */
  awakeHitsPerOp: number;
  /** Spins not started because the cores were wanted, per op. */
  awakeContendedPerOp: number;
}

const DRIVER = fileURLToPath(import.meta.url);
const progress = (m: string) => process.stderr.write(`[nfs] ${m}\n`);

/** One session of the driver against `server`: each phase runs when this side says go. */
async function session(server: Server, fileMiB: number, seconds: number, cached: boolean, onResult: (phase: Phase, c: Cell) => void): Promise<void> {
  const name = `bench-${cached ? 'cached' : 'uncached'}-${process.pid}`;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', DRIVER, '--target', server.target, '--export', server.exportPath, '--file-mib', String(fileMiB), '--seconds', String(seconds), '--session', name],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let cpu0 = 0;
  let stats0: Record<string, number> = {};
  let phase: Phase | null = null;
  for await (const line of createInterface({ input: child.stdout! })) {
    const msg = JSON.parse(line) as { ready?: Phase; result?: PhaseResult; done?: boolean };
    if (msg.ready) {
      phase = msg.ready;
      if ((phase === 'warm' || FLOOR_PHASES.has(phase)) && !cached) {
        child.stdin!.write('skip\n');
        continue;
      }
      // Uncached: ganesha's file leaves the page cache before every timed pass (ours is 8x the controller cache).
      if (!cached && phase !== 'fill' && server.localFile) await evictFromPageCache(server.localFile(name));
      stats0 = (await server.stats?.()) ?? {};
      cpu0 = server.cpuSeconds();
      child.stdin!.write('go\n');
    } else if (msg.result) {
      const cpu = server.cpuSeconds() - cpu0;
      const r = msg.result;
      const stats1 = server.stats ? await server.stats() : null;
      const perOp = (k: string) => (stats1 && stats1[k] !== undefined ? (stats1[k]! - (stats0[k] ?? 0)) / r.ops : NaN);
      if (phase !== 'warm') {
        onResult(phase!, {
          value: r.value,
          p50us: r.p50us,
          cpuUsPerOp: (cpu / r.ops) * 1e6,
          awakeHitsPerOp: perOp('fn_awakeHits'),
          awakeContendedPerOp: perOp('fn_awakeContended'),
        });
      }
    } else if (msg.done) {
      child.stdin!.end();
    }
  }
  const code = await exited;
  if (code !== 0) throw new Error(`load generator against ${server.label} exited with ${code}`);
}

function ours(d: DeploymentUnderTest, volumeMiB: number, cacheMiB: number): ServerKind {
  const label = `storvisor ${d.label}`;
  return {
    label,
    async start() {
      const dep = await startDeployment(d, { function: 'fileserver', options: { exportPath: '/export' }, volumeMiB, cacheMiB });
      // The controller and the function (integrated, or a guest thread) run in this process; the load generator does not.
      return { label, target: `${dep.host}:${dep.port}`, exportPath: '/export', cpuSeconds: selfCpuSeconds, stats: dep.stats, stop: dep.stop };
    },
    close: async () => {},
  };
}

function ganeshaKind(): ServerKind {
  let g: Ganesha | null = null;
  const label = 'nfs-ganesha (VFS)';
  return {
    label,
    async start() {
      g ??= await startGanesha();
      const s = g;
      return {
        label,
        target: `${s.host}:${s.nfsPort}:${s.mountPort}`,
        exportPath: s.exportPath,
        localFile: (name) => path.join(s.exportPath, name),
        cpuSeconds: () => processCpuSeconds(s.pid),
        stop: async () => {},
      };
    },
    async close() {
      await g?.stop();
      g = null;
    },
  };
}

/**
 * The volume's own sequential write speed, the yardstick for the fill: fio's nbd
 * engine writes `mib` MiB sequentially in 1 MiB requests, FILL_DEPTH in flight
 * (as the fill), to a fresh volume of the same controller setup through the
 * controller's NBD export over loopback (the same transport cost as NFS), then fsyncs.
 */
async function volumeSequentialWrite(mib: number, cacheMiB: number): Promise<{ mibps: number; cpuUsPerMiB: number }> {
  const dir = mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-nfs-vol-'));
  try {
    const config = parseConfig({ dataDir: dir, cacheMiB, api: null, nbd: { port: 0 }, volumes: [{ name: 'seq', sizeMiB: mib + 64 }] }, dir, {});
    return await withController(config, async (c) => {
      const { host, port } = c.nbdEndpoint();
      const cpu0 = selfCpuSeconds();
      const t0 = performance.now();
      await runFio(['--name=seq', '--ioengine=nbd', `--uri=nbd://${host}:${port}/seq`, '--rw=write', '--bs=1M', `--iodepth=${FILL_DEPTH}`, `--size=${mib}M`, '--end_fsync=1']);
      const secs = (performance.now() - t0) / 1000;
      return { mibps: mib / secs, cpuUsPerMiB: ((selfCpuSeconds() - cpu0) / mib) * 1e6 };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function compare(): Promise<void> {
  const seconds = Number(values.seconds);
  const repeats = Number(process.env.BENCH_REPEATS ?? 3);
  const cacheMiB = Number(process.env.BENCH_NFS_CACHE_MIB ?? 64);
  const cachedMiB = Math.max(1, cacheMiB >> 1);
  const uncachedMiB = Number(process.env.BENCH_NFS_FILE_MIB ?? cacheMiB * 8);
  const volumeMiB = cachedMiB + uncachedMiB + 256;
  const integrated = ours({ label: 'integrated', deploy: 'integrated' }, volumeMiB, cacheMiB);
  const adaptive = ours({ label: 'guest/adaptive', deploy: 'guest', notify: 'adaptive' }, volumeMiB, cacheMiB);
  const peer = ganeshaKind();
  const kinds = [integrated, adaptive, peer];
  // rows[dataSet + phase][server] = cells of every repeat
  const rows = new Map<string, Map<string, Cell[]>>();
  const add = (row: string, server: string, c: Cell) => {
    if (!rows.has(row)) rows.set(row, new Map());
    const m = rows.get(row)!;
    m.set(server, [...(m.get(server) ?? []), c]);
  };
  const sets = [
    { label: 'cached', cached: true, mib: cachedMiB },
    { label: 'uncached', cached: false, mib: uncachedMiB },
  ];
  const volumeSeq: Array<{ mibps: number; cpuUsPerMiB: number }> = [];
  try {
    for (let r = 0; r < repeats; r++) {
      for (const set of sets) {
        // Alternate which server goes first, so none always meets the warmer machine.
        const order = r % 2 === 0 ? kinds : [...kinds].reverse();
        for (const k of order) {
          const s = await k.start();
          try {
            await session(s, set.mib, seconds, set.cached, (phase, c) => add(`${set.label} ${phase}`, k.label, c));
          } finally {
            await s.stop();
          }
          progress(`${r + 1}/${repeats} ${set.label} ${set.mib} MiB ${k.label}: done`);
        }
      }
      volumeSeq.push(await volumeSequentialWrite(uncachedMiB, cacheMiB));
      progress(`${r + 1}/${repeats} volume sequential write: ${volumeSeq.at(-1)!.mibps.toFixed(1)} MiB/s`);
    }
  } finally {
    for (const k of kinds) await k.close();
  }

  // fio on a raw file of the uncached size: what the disk gives 4 KiB random reads.
  const fioDir = mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), 'storvisor-nfs-fio-'));
  const fio: Record<string, number> = {};
  try {
    for (const qd of [1, 32]) {
      const res = await runFio([
        '--name=raw', `--filename=${path.join(fioDir, 'raw')}`, `--size=${uncachedMiB}M`, '--direct=1', '--rw=randread', '--bs=4k',
        '--ioengine=io_uring', `--iodepth=${qd}`, `--runtime=${seconds}`, '--time_based',
      ]);
      fio[`uncached READ QD${qd}`] = res.iops;
    }
  } finally {
    rmSync(fioDir, { recursive: true, force: true });
  }

  const med = (cells: Cell[] | undefined, k: keyof Cell) => median((cells ?? []).map((c) => c[k]));
  const table = [...rows].map(([row, cols]) => {
    const o = cols.get(integrated.label);
    const a = cols.get(adaptive.label);
    const g = cols.get(peer.label);
    return {
      row,
      unit: row.endsWith('fill') ? 'MiB/s' : 'ops/s',
      ours: med(o, 'value'),
      adaptive: med(a, 'value'),
      peer: med(g, 'value'),
      oursP50: med(o, 'p50us'),
      adaptiveP50: med(a, 'p50us'),
      peerP50: med(g, 'p50us'),
      oursCpu: med(o, 'cpuUsPerOp'),
      oursAwake: med(o, 'awakeHitsPerOp'),
      oursAwakeContended: med(o, 'awakeContendedPerOp'),
      adaptiveAwake: med(a, 'awakeHitsPerOp'),
      adaptiveCpu: med(a, 'cpuUsPerOp'),
      peerCpu: med(g, 'cpuUsPerOp'),
      fio: fio[row] ?? NaN,
    };
  });
  const volume = { mibps: median(volumeSeq.map((v) => v.mibps)), cpuUsPerMiB: median(volumeSeq.map((v) => v.cpuUsPerMiB)) };
  const f0 = (x: number) => (Number.isFinite(x) ? String(Math.round(x)) : '-');
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
  const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
  const v = (t: (typeof table)[number], x: number) => (t.unit === 'MiB/s' ? f1(x) : f0(x));
  const find = (row: string) => table.find((t) => t.row === row);
  const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
  // The targets, each with its figure, met or not.
  const targets: string[] = [];
  const isFloor = (row: string) => /^cached (NULL|GETATTR) /.test(row);
  for (const t of table.filter((x) => x.unit === 'ops/s' && !isFloor(x.row))) {
    targets.push(`- integrated ≥ nfs-ganesha, ${t.row}: ${f2(t.ours / t.peer)}x (${met(t.ours >= t.peer)})`);
  }
  // The floor: NULL does no file-system work, so its ratio is the most any other row can reach
  // without a faster runtime or socket path; each READ/WRITE row beside the NULL row of its depth.
  const floor: string[] = [];
  for (const qd of [1, 32]) {
    const n = find(`cached NULL QD${qd}`);
    if (!n) continue;
    const g = find(`cached GETATTR QD${qd}`);
    const rowsAt = table.filter((t) => t.row.endsWith(` QD${qd}`) && !isFloor(t.row));
    floor.push(
      `- QD${qd}: NULL integrated ÷ ganesha ${f2(n.ours / n.peer)}x (CPU µs/op ${f0(n.oursCpu)} / ${f0(n.peerCpu)}, p50 µs ${f0(n.oursP50)} / ${f0(n.peerP50)})` +
        (g ? `; GETATTR ${f2(g.ours / g.peer)}x` : '') +
        rowsAt.map((t) => `; ${t.row} ${f2(t.ours / t.peer)}x`).join(''),
    );
  }
  const fillU = find('uncached fill');
  if (fillU) targets.push(`- sequential 1 MiB UNSTABLE writes to a new file ≥ 0.5x the volume's sequential write: ${f1(fillU.ours)} ÷ ${f1(volume.mibps)} MiB/s = ${f2(fillU.ours / volume.mibps)}x (${met(fillU.ours >= 0.5 * volume.mibps)})`);
  for (const t of table.filter((x) => !isFloor(x.row))) targets.push(`- guest/adaptive ≥ 0.95x integrated, ${t.row}: ${f2(t.adaptive / t.ours)}x (${met(t.adaptive >= 0.95 * t.ours)})`);
  for (const qd of [1, 32]) {
    const t = find(`uncached READ QD${qd}`);
    if (t) targets.push(`- uncached READ QD${qd} ÷ fio on the raw file: integrated ${f2(t.ours / t.fio)}x, guest/adaptive ${f2(t.adaptive / t.fio)}x, nfs-ganesha ${f2(t.peer / t.fio)}x (reported, no target)`);
  }
  const lines = [
    `# nfs: storvisor vs nfs-ganesha, same run, median of ${repeats} × ${seconds} s`,
    '',
    '| data set | workload | unit | integrated | guest/adaptive | ganesha | integrated ÷ ganesha | adaptive ÷ integrated | p50 µs i / a / g | CPU µs/op i / a / g | spin hits/op i / a (contended/op i) | fio raw | integrated ÷ fio |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...table.map((t) => {
      const [set, ...w] = t.row.split(' ');
      return `| ${set} | ${w.join(' ')} | ${t.unit} | ${v(t, t.ours)} | ${v(t, t.adaptive)} | ${v(t, t.peer)} | ${f2(t.ours / t.peer)} | ${f2(t.adaptive / t.ours)} | ${f0(t.oursP50)} / ${f0(t.adaptiveP50)} / ${f0(t.peerP50)} | ${f0(t.oursCpu)} / ${f0(t.adaptiveCpu)} / ${f0(t.peerCpu)} | ${f2(t.oursAwake)} / ${f2(t.adaptiveAwake)} (${f2(t.oursAwakeContended)}) | ${f0(t.fio)} | ${f2(t.ours / t.fio)} |`;
    }),
    `| volume | sequential write 1 MiB QD${FILL_DEPTH} (fio nbd, controller export) | MiB/s | ${f1(volume.mibps)} | | | | | | ${f0(volume.cpuUsPerMiB)} per MiB | | | |`,
    '',
    '## Targets (issue #11)',
    '',
    ...targets,
    '',
    '## The RPC floor (NULL: no file-system work; reported, no target)',
    '',
    ...floor,
    '',
    `cached: a ${cachedMiB} MiB file, read once before the timed passes; it fits the controller cache (${cacheMiB} MiB) and the page cache.`,
    `uncached: a ${uncachedMiB} MiB file, ${(uncachedMiB / cacheMiB).toFixed(0)}x the controller cache; ganesha's copy is fdatasync'd and dropped from the page cache (posix_fadvise DONTNEED) before each timed pass, and its reads warm the page cache again as the pass goes on.`,
    'NULL, GETATTR: NFS procedures 0 and 1 (GETATTR of the cached file) on the cached run only, over 4 connections: NULL is the RPC round trip alone, the floor under every other row.',
    `fill: sequential 1 MiB UNSTABLE WRITEs to a new file, ${FILL_DEPTH} in flight on one connection, then COMMIT. READ/WRITE: 4 KiB at random offsets, over 4 connections; WRITE is FILE_SYNC over the filled file.`,
    `volume: fio (nbd engine) writes ${uncachedMiB} MiB sequentially to a fresh volume through the controller's NBD export, 1 MiB requests, ${FILL_DEPTH} in flight, then fsync: the yardstick for the uncached fill.`,
    'CPU µs/op: server CPU time (user + system) during the pass ÷ operations (fill: per 1 MiB WRITE). storvisor runs on a controller volume (O_DIRECT backend) started fresh for each session; its CPU includes the whole controller (and the guest thread), whose poller spins while I/O of at most 64 KiB is outstanding (so at low op rates, QD1 most, it is mostly polling; the fill\'s 128 KiB volume pieces complete through the eventfd, engine SPIN_MAX_BYTES), and the file server\'s own stay-awake spin (up to 150 µs after a reply leaves with nothing in flight, option stayAwakeUs, counted in its awake* stats).',
    'fio raw: fio O_DIRECT io_uring randread on a raw file of the uncached size, the same disk.',
    'spin hits/op: calls that found the file server awake because it spun after its previous reply (stay-awake, fn_awakeHits ÷ ops; QD1 at best 1.00); contended/op: spins not started because the cores were wanted (fn_awakeContended ÷ ops): on a quiet machine QD1 rows should show hits near 1 and contended near 0.',
  ];
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync(values.out!, { recursive: true });
  const stem = path.join(values.out!, `nfs-compare-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(`${stem}.md`, text);
  writeFileSync(`${stem}.json`, JSON.stringify({ seconds, repeats, cacheMiB, cachedMiB, uncachedMiB, volume, table, targets, floor }, null, 2));
  const ops = table.filter((t) => t.unit === 'ops/s');
  const series = [
    { label: integrated.label, values: ops.map((t) => t.ours) },
    { label: adaptive.label, values: ops.map((t) => t.adaptive) },
    { label: peer.label, values: ops.map((t) => t.peer) },
  ];
  writeFileSync(`${stem}.svg`, barChart({ title: `NFS 4 KiB ops/s, median of ${repeats}`, unit: 'ops/s', groups: ops.map((t) => t.row), series }));
  writeFileSync(
    `${stem}-ratio.svg`,
    barChart({ title: 'storvisor integrated ÷ nfs-ganesha (1.0 = parity)', unit: 'x', groups: table.map((t) => `${t.row} (${t.unit})`), series: [{ label: 'integrated ÷ ganesha', values: table.map((t) => t.ours / t.peer) }] }),
  );
  progress(`wrote ${stem}.md, .json, .svg and -ratio.svg`);
}

if (values.target) await driver();
else await compare();
