/**
 * NFS file server benchmark: the fileserver function started integrated (in this
 * process) on a FileBlockDevice, driven by the TS RPC client over loopback TCP.
 *
 *   4 KiB random READs, many in flight, over a file larger than the filesystem's cache
 *   4 KiB random WRITEs with FILE_SYNC (the sync write path)
 *
 * Prints IOPS, p50 and p99 per workload. Options (all optional):
 *   --file-mib 64   --cache-mib 8   --seconds 4   --depth 32   --connections 4
 *   --target HOST:NFSPORT[:MOUNTPORT] --export /path   drive an already running NFSv3
 *     server instead (a peer such as nfs-ganesha or unfs3) with the same load
 *   --json   print one JSON line instead of a table (bench/functions.ts uses it)
 * Run: node --import tsx bench/fileserver.ts [options]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FileBlockDevice } from '../src/block/file-device.ts';
import { createFileServer } from '../src/functions/fileserver/index.ts';
import { openFileSystem } from '../src/functions/fileserver/fs/index.ts';
import { NfsClient } from '../test/fileserver/nfs/helpers/nfs-client.ts';

const { values } = parseArgs({
  options: {
    'file-mib': { type: 'string', default: '64' },
    'cache-mib': { type: 'string', default: '8' },
    seconds: { type: 'string', default: '4' },
    depth: { type: 'string', default: '32' },
    connections: { type: 'string', default: '4' },
    target: { type: 'string' },
    export: { type: 'string', default: '/export' },
    json: { type: 'boolean', default: false },
  },
});
const fileBytes = Number(values['file-mib']) << 20;
const cacheBlocks = (Number(values['cache-mib']) << 20) / 4096;
const seconds = Number(values.seconds);
const depth = Number(values.depth);
const connections = Number(values.connections);
const exportPath = values.export!;
const IO = 4096;

interface Result {
  workload: string;
  ops: number;
  iops: number;
  p50us: number;
  p99us: number;
}

/** Where the load goes: our function started here, or a peer server given by --target. */
interface Target {
  label: string;
  host: string;
  nfsPort: number;
  mountPort: number;
  stop(): Promise<void>;
}

async function startIntegrated(): Promise<Target> {
  const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-bench-nfs-'));
  const device = await FileBlockDevice.open(path.join(dir, 'volume.img'), fileBytes * 2 + (64 << 20));
  const fn = createFileServer((d, o) => openFileSystem(d, { ...o, cacheBlocks }));
  const running = await fn.start({
    device,
    listen: { host: '127.0.0.1', port: 0 },
    options: { exportPath },
    instance: 'bench',
    log: () => {},
  });
  return {
    label: `storvisor fileserver (integrated, FileBlockDevice, fs metadata cache ${values['cache-mib']} MiB)`,
    host: '127.0.0.1',
    nfsPort: running.address.port,
    mountPort: running.address.port,
    async stop() {
      await running.stop();
      await device.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function external(spec: string): Target {
  const [host, nfs, mount] = spec.split(':');
  if (!host || !nfs) throw new Error('--target must be HOST:NFSPORT[:MOUNTPORT]');
  return { label: `peer at ${spec}`, host, nfsPort: Number(nfs), mountPort: Number(mount ?? nfs), stop: async () => {} };
}

/** `depth` loops spread over the connections, each issuing one op at a time until the deadline. */
async function drive(workload: string, clients: NfsClient[], op: (c: NfsClient) => Promise<void>): Promise<Result> {
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
  return { workload, ops: latencies.length, iops: Math.round(latencies.length / elapsed), p50us: pct(0.5), p99us: pct(0.99) };
}

async function run(target: Target): Promise<void> {
  const clients = await Promise.all(Array.from({ length: connections }, () => NfsClient.connect(target.nfsPort, target.host)));
  try {
    const mounter = target.mountPort === target.nfsPort ? clients[0]! : await NfsClient.connect(target.mountPort, target.host);
    const root = await mounter.root(exportPath);
    if (mounter !== clients[0]) await mounter.close();
    const name = `bench-${process.pid}`;
    const created = await clients[0]!.create(root, name, 0, { mode: 0o644, size: 0 });
    if (created.status !== 0) throw new Error(`CREATE failed: nfsstat3 ${created.status}`);
    const fh = created.fh!;

    // Fill with UNSTABLE 1 MiB writes and one COMMIT: fast, and every 4 KiB block is real data.
    const fill = Buffer.alloc(1 << 20);
    const t0 = performance.now();
    for (let off = 0; off < fileBytes; off += fill.length) {
      for (let i = 0; i < fill.length; i += 8) fill.writeUInt32BE(off + i, i);
      const w = await clients[0]!.write(fh, off, fill, 0);
      if (w.status !== 0) throw new Error(`fill write failed: nfsstat3 ${w.status}`);
    }
    await clients[0]!.commit(fh);
    const fillSecs = (performance.now() - t0) / 1000;

    const blocks = fileBytes / IO;
    const randomOffset = () => Math.floor(Math.random() * blocks) * IO;
    const payload = Buffer.alloc(IO, 0xab);
    const results = [
      await drive('4K random READ', clients, async (c) => {
        const r = await c.read(fh, randomOffset(), IO);
        if (r.status !== 0 || r.count !== IO) throw new Error(`READ failed: nfsstat3 ${r.status}`);
      }),
      await drive('4K random WRITE FILE_SYNC', clients, async (c) => {
        const w = await c.write(fh, randomOffset(), payload, 2);
        if (w.status !== 0 || w.committed !== 2) throw new Error(`WRITE failed: nfsstat3 ${w.status}`);
      }),
    ];
    await clients[0]!.remove(root, name);

    if (values.json) {
      console.log(JSON.stringify({ label: target.label, fileBytes, depth, connections, seconds, results }));
      return;
    }
    console.log(
      `${target.label}: file ${fileBytes >> 20} MiB (filled at ${((fileBytes >> 20) / fillSecs).toFixed(0)} MiB/s), ` +
        `${depth} in flight over ${connections} connections, ${seconds} s per workload`,
    );
    console.table(results.map((r) => ({ workload: r.workload, ops: r.ops, IOPS: r.iops, 'p50 µs': r.p50us, 'p99 µs': r.p99us })));
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

const target = values.target ? external(values.target) : await startIntegrated();
try {
  await run(target);
} finally {
  await target.stop();
}
