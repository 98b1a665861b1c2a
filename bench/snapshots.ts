/**
 * What a snapshot or a clone costs a write, counted in I/Os (which survive a
 * noisy machine) and, for what it is worth, timed: 4 KiB random writes at
 * queue depth 8 on a controller volume (written in full first, so no write
 * lands in a hole of the volume's own image), in five states:
 *
 *   plain            no snapshot (the baseline)
 *   snapshot, first  every write is the first to its block since the snapshot (copy-on-write each time)
 *   snapshot, again  every block already copied (the steady state)
 *   clone, first     every write is the clone's first to its block (a map update each time)
 *   clone, again     every block already the clone's own
 *
 *   npm run bench -- snapshots          (BENCH_SECONDS per state, default 5)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockCache } from '../src/storage/block-cache.ts';
import { VolumeStore } from '../src/storage/volume-store.ts';
import type { Volume } from '../src/storage/volume.ts';
import type { LayeredBackend } from '../src/storage/snapshots/layered.ts';

const B = 4096;
const SIZE = 64 << 20;
const QD = 8;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);

interface Io {
  reads: number;
  writes: number;
  syncs: number;
}

function ios(v: Volume): Io {
  const backend = (v as unknown as { backend: LayeredBackend & { raw?: LayeredBackend['raw'] } }).backend;
  const raw = backend.raw ?? (backend as unknown as LayeredBackend['raw']);
  const out = { reads: raw.stats.reads, writes: raw.stats.writes, syncs: raw.stats.syncs };
  for (const l of backend.chain ?? []) {
    out.reads += l.delta.stats.reads;
    out.writes += l.delta.stats.writes + l.map.stats().writes;
  }
  if (backend.own) out.writes += backend.own.stats().writes;
  return out;
}

/** Write 4 KiB blocks from `order` (each once, in that order) for SECONDS; returns writes done. */
async function load(v: Volume, order: Int32Array): Promise<{ writes: number; seconds: number }> {
  const data = Buffer.alloc(B, 0xab);
  let next = 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < end && next < order.length) await v.pwrite(data, order[next++]! * B);
  };
  await Promise.all(Array.from({ length: QD }, worker));
  return { writes: next, seconds: (performance.now() - t0) / 1000 };
}

function shuffled(n: number, seed: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  let s = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

interface Row {
  state: string;
  iops: number;
  readsPerWrite: number;
  writesPerWrite: number;
  cpuUsPerWrite: number;
  mapBytes: number;
}

async function measure(state: string, v: Volume, order: Int32Array, mapBytes: () => number): Promise<Row> {
  const before = ios(v);
  const cpu0 = process.cpuUsage();
  const r = await load(v, order);
  const cpu = process.cpuUsage(cpu0);
  const after = ios(v);
  return {
    state,
    iops: r.writes / r.seconds,
    readsPerWrite: (after.reads - before.reads) / r.writes,
    writesPerWrite: (after.writes - before.writes) / r.writes,
    cpuUsPerWrite: (cpu.user + cpu.system) / r.writes,
    mapBytes: mapBytes(),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'storvisor-bench-snap-'));
try {
  const s = new VolumeStore(dir, new BlockCache(16 << 20));
  s.create('v', SIZE);
  const v = s.openVolume('v');
  const blocks = SIZE / B;
  const rows: Row[] = [];
  const head = () => (v as unknown as { backend: LayeredBackend }).backend;
  // Allocate the whole volume first (a write into a hole costs the filesystem an allocation:
  // that is not what is measured), which also warms up the JIT and the engine.
  const chunk = Buffer.alloc(128 * 1024, 0x11);
  for (let off = 0; off < SIZE; off += chunk.length * QD) {
    await Promise.all(Array.from({ length: QD }, (_, i) => (off + i * chunk.length < SIZE ? v.pwrite(chunk, off + i * chunk.length) : undefined)));
  }
  rows.push(await measure('plain', v, shuffled(blocks, 1), () => 0));
  await s.snapshots.create('v', 'bench');
  const first = shuffled(blocks, 2);
  const r1 = await measure('snapshot, first write to a block', v, first, () => head().chain[0]!.map.bytes);
  rows.push(r1);
  // The blocks just copied, again: no copy any more.
  const done = first.subarray(0, Math.round(r1.iops * SECONDS));
  rows.push(await measure('snapshot, block already copied', v, done, () => head().chain[0]!.map.bytes));

  await s.snapshots.clone('v', 'bench', 'c');
  const c = s.openVolume('c');
  const chead = () => (c as unknown as { backend: LayeredBackend }).backend;
  const cfirst = shuffled(blocks, 3);
  const c1 = await measure('clone, first write to a block', c, cfirst, () => chead().own!.bytes);
  rows.push(c1);
  rows.push(await measure('clone, block already its own', c, cfirst.subarray(0, Math.round(c1.iops * SECONDS)), () => chead().own!.bytes));
  await s.closeAll();

  const base = rows[0]!;
  console.log(`## Snapshot and clone cost per 4 KiB write (QD ${QD}, ${SECONDS} s per state, ${SIZE >> 20} MiB volume)\n`);
  console.log('| state | writes/s | vs plain | backend reads per write | backend writes per write (data + delta + map) | CPU µs per write (this process) | block-map memory |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.state} | ${r.iops.toFixed(0)} | ${(r.iops / base.iops).toFixed(2)} | ${r.readsPerWrite.toFixed(2)} | ${r.writesPerWrite.toFixed(2)} | ${r.cpuUsPerWrite.toFixed(0)} | ${(r.mapBytes / 1024).toFixed(0)} KiB |`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
