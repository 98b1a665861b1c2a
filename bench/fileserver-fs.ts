/**
 * The on-volume filesystem alone (no NFS), integrated on a FileBlockDevice:
 * metadata ops, 4 KiB random reads that miss the page cache as little as the
 * OS allows, 4 KiB FILE_SYNC writes and unstable writes + commit.
 *
 *   node --import tsx bench/fileserver-fs.ts [seconds-per-row=2]
 *
 * Prints one table row per workload: ops/s and latency. Runs well under 60 s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileBlockDevice } from '../src/block/file-device.ts';
import { openFileSystem } from '../src/functions/fileserver/fs/index.ts';
import type { FileSystem } from '../src/functions/fileserver/fs/types.ts';

const SECONDS = Number(process.argv[2] ?? 2);
const o = { mode: 0o644, uid: 0, gid: 0 };

interface Row {
  workload: string;
  qd: number;
  ops: number;
  seconds: number;
  lat: number[];
}

/** Run `fn` from `qd` concurrent loops for SECONDS (or `count` ops); collect latencies. */
async function drive(workload: string, qd: number, fn: (i: number) => Promise<unknown>, count = Infinity): Promise<Row> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: qd }, async () => {
      while (performance.now() < end && next < count) {
        const i = next++;
        const s = performance.now();
        await fn(i);
        lat.push(performance.now() - s);
      }
    }),
  );
  return { workload, qd, ops: lat.length, seconds: (performance.now() - t0) / 1000, lat };
}

function print(rows: Row[]): void {
  const pct = (a: number[], p: number) => a[Math.min(a.length - 1, Math.floor(a.length * p))];
  console.log('| workload | QD | ops | ops/s | mean µs | p99 µs |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const sorted = r.lat.slice().sort((a, b) => a - b);
    const mean = sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length);
    console.log(
      `| ${r.workload} | ${r.qd} | ${r.ops} | ${Math.round(r.ops / r.seconds)} | ${Math.round(mean * 1000)} | ${Math.round(pct(sorted, 0.99) * 1000)} |`,
    );
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'svfs-bench-'));
  const dev = await FileBlockDevice.open(join(dir, 'fs.img'), 512 << 20);
  const fs: FileSystem = await openFileSystem(dev);
  const rows: Row[] = [];
  try {
    const d = await fs.mkdir(fs.rootIno, 1, 'bench', o);
    rows.push(await drive('create (empty file)', 32, (i) => fs.create(d.ino, d.generation, `f${i}`, { ...o, exclusive: true })));
    const created = rows[0].ops;
    rows.push(await drive('lookup', 32, (i) => fs.lookup(d.ino, d.generation, `f${i % created}`)));
    rows.push(await drive('getattr', 32, () => fs.getattr(d.ino, d.generation)));

    // A 128 MiB data file written once with big unstable writes.
    const data = await fs.create(fs.rootIno, 1, 'data', { ...o, exclusive: true });
    const chunk = new Uint8Array(1 << 20).fill(0xab);
    for (let off = 0; off < 128 << 20; off += chunk.byteLength) await fs.write(data.ino, data.generation, off, chunk, false);
    await fs.commit();
    const blocks = (128 << 20) / 4096;
    const rnd = () => Math.floor(Math.random() * blocks) * 4096;
    for (const qd of [1, 32]) rows.push(await drive('read 4 KiB random', qd, () => fs.read(data.ino, data.generation, rnd(), 4096)));
    const page = new Uint8Array(4096).fill(0xcd);
    for (const qd of [1, 16]) {
      rows.push(await drive('write 4 KiB random FILE_SYNC', qd, () => fs.write(data.ino, data.generation, rnd(), page, true)));
    }
    rows.push(
      await drive('write 4 KiB UNSTABLE (+commit/64)', 16, async (i) => {
        await fs.write(data.ino, data.generation, rnd(), page, false);
        if (i % 64 === 63) await fs.commit(data.ino, data.generation);
      }),
    );
    rows.push(await drive('remove', 32, (i) => fs.remove(d.ino, d.generation, `f${i}`), created));
  } finally {
    await fs.close();
    await dev.close();
    await rm(dir, { recursive: true, force: true });
  }
  print(rows);
}

await main();
