/**
 * Dedup+compress volume vs a plain volume on the same backend (FileBlockDevice, page
 * cache), integrated (in-process), for data sets with 0%, 50% and 90% duplicate blocks.
 * Unique blocks are half incompressible, half compressible ~4:1 (1 KiB of entropy).
 * Measures sequential write/read throughput (256 KiB requests, write includes the final
 * flush), 4 KiB random write IOPS (QD1, final flush included) and 4 KiB random read IOPS,
 * plus hash and compression cost per block and the achieved ratios.
 * Run: node --import tsx bench/dedup.ts   (about 30 s)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../src/block/types.ts';
import { FileBlockDevice } from '../src/block/file-device.ts';
import { MemoryBlockDevice } from '../src/block/memory-device.ts';
import { DedupVolume } from '../src/functions/dedup/volume.ts';

const BLOCK = 4096;
const DATA_BYTES = 32 << 20;
const SEQ_REQUEST = 256 << 10;
const RANDOM_OPS = 3000;
const BACKING = 96 << 20;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniqueBlock(seed: number): Uint8Array {
  const r = prng(seed);
  const b = new Uint8Array(BLOCK);
  const entropy = seed % 2 === 0 ? BLOCK : 1024; // odd seeds compress ~4:1
  const w = new Uint32Array(b.buffer, 0, entropy / 4);
  for (let i = 0; i < w.length; i++) w[i] = (r() * 4294967296) >>> 0;
  return b;
}

/** `blocks` blocks where a `dup` fraction repeats earlier content. */
function dataSet(blocks: number, dup: number, seed: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(blocks * BLOCK);
  let unique = 0;
  for (let i = 0; i < blocks; i++) {
    const content = unique > 0 && r() < dup ? uniqueBlock(seed * 1e6 + Math.floor(r() * unique)) : uniqueBlock(seed * 1e6 + unique++);
    out.set(content, i * BLOCK);
  }
  return out;
}

interface Result {
  writeMBs: number;
  readMBs: number;
  writeIops: number;
  readIops: number;
}

async function measure(dev: BlockDevice, data: Uint8Array, randomData: Uint8Array, afterWrite = () => {}): Promise<Result> {
  const mb = data.length / 1e6;
  let t = performance.now();
  for (let off = 0; off < data.length; off += SEQ_REQUEST) await dev.pwrite(data.subarray(off, off + SEQ_REQUEST), off);
  await dev.flush();
  const writeMBs = mb / ((performance.now() - t) / 1000);
  afterWrite();
  const buf = new Uint8Array(SEQ_REQUEST);
  t = performance.now();
  for (let off = 0; off < data.length; off += SEQ_REQUEST) await dev.pread(buf, off);
  const readMBs = mb / ((performance.now() - t) / 1000);
  const r = prng(99);
  const blocks = data.length / BLOCK;
  t = performance.now();
  for (let i = 0; i < RANDOM_OPS; i++) {
    await dev.pwrite(randomData.subarray(i * BLOCK, (i + 1) * BLOCK), Math.floor(r() * blocks) * BLOCK);
  }
  await dev.flush();
  const writeIops = RANDOM_OPS / ((performance.now() - t) / 1000);
  const one = new Uint8Array(BLOCK);
  t = performance.now();
  for (let i = 0; i < RANDOM_OPS; i++) await dev.pread(one, Math.floor(r() * blocks) * BLOCK);
  const readIops = RANDOM_OPS / ((performance.now() - t) / 1000);
  return { writeMBs, readMBs, writeIops, readIops };
}

const fmt = (n: number, d = 0) => n.toFixed(d).padStart(8);

/** Let the JIT compile the hot paths first, so the first measured phase is not the slowest. */
async function warmUp(): Promise<void> {
  const vol = await DedupVolume.open(new MemoryBlockDevice(32 << 20), { logicalSize: 16 << 20, compression: 'lz4', dedup: true, log: () => {} });
  const data = dataSet(2048, 0.5, 99);
  for (let round = 0; round < 2; round++) {
    for (let off = 0; off < data.length; off += SEQ_REQUEST) await vol.pwrite(data.subarray(off, off + SEQ_REQUEST), off);
    const buf = new Uint8Array(SEQ_REQUEST);
    for (let off = 0; off < data.length; off += SEQ_REQUEST) await vol.pread(buf, off);
  }
  await vol.close();
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sv-bench-dedup-'));
  const started = performance.now();
  const rows: string[] = [];
  try {
    await warmUp();
    for (const dup of [0, 0.5, 0.9]) {
      const data = dataSet(DATA_BYTES / BLOCK, dup, 1 + dup * 10);
      const randomData = dataSet(RANDOM_OPS, dup, 7 + dup * 10);
      const plainDev = await FileBlockDevice.open(join(dir, `plain-${dup}.img`), DATA_BYTES);
      const plain = await measure(plainDev, data, randomData);
      await plainDev.close();
      const backing = await FileBlockDevice.open(join(dir, `dedup-${dup}.img`), BACKING);
      const vol = await DedupVolume.open(backing, { logicalSize: DATA_BYTES, compression: 'lz4', dedup: true, cacheBytes: 16 << 20 });
      let s = vol.stats();
      const dd = await measure(vol, data, randomData, () => (s = vol.stats())); // ratios of the data set as written
      const cost = vol.stats();
      await vol.close();
      await backing.close();
      const pct = `${dup * 100}%`.padStart(4);
      rows.push(`${pct}  plain  ${fmt(plain.writeMBs)} ${fmt(plain.readMBs)} ${fmt(plain.writeIops)} ${fmt(plain.readIops)}`);
      rows.push(
        `${pct}  dedup  ${fmt(dd.writeMBs)} ${fmt(dd.readMBs)} ${fmt(dd.writeIops)} ${fmt(dd.readIops)}` +
          `  ${fmt(dd.writeMBs / plain.writeMBs, 2)} ${fmt(dd.writeIops / plain.writeIops, 2)}` +
          `  ${fmt(cost.hashMicrosPerBlock!, 1)} ${fmt(cost.compressMicrosPerBlock!, 1)}  ${fmt(s.dedupRatio!, 2)} ${fmt(s.compressionRatio!, 2)}`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  console.log(`dedup+lz4 volume vs plain FileBlockDevice, ${DATA_BYTES >> 20} MiB data, integrated, one process`);
  console.log('dup   volume  write MB/s read MB/s  4K wr IOPS 4K rd IOPS  wr-ratio iops-ratio  hash us  lz4 us   dedup x  compr x');
  for (const r of rows) console.log(r);
  console.log('ratios: dedup x = logical blocks / stored fragments, compr x = stored fragments / physical blocks, after the sequential write');
  console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s; the 4K phases are QD1 and include the final flush)`);
}

await main();
