import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileBlockDevice } from '../../src/block/file-device.ts';
import { DedupVolume } from '../../src/functions/dedup/volume.ts';
import { BLOCK, contentFor, digest, scaledSeed, workload } from './data.ts';

const LOGICAL_BLOCKS = 512;
const BACKING = 3 << 20; // ~500 data blocks: without reclaiming (or with early reuse) the load fails
const OPS = 4000;
const CHILD = new URL('./crash-child.ts', import.meta.url).pathname;
const LANES_CHILD = new URL('./crash-lanes-child.ts', import.meta.url).pathname;
const LANES = 8;
const LANE_BLOCKS = LOGICAL_BLOCKS / LANES;
const LANE_OPS = 600;

/** Run the workload in a child and SIGKILL it once `acks` acknowledgements arrived. Returns the last ack. */
async function runAndKill(file: string, seed: number, acks: number): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, file, String(BACKING), String(LOGICAL_BLOCKS), String(seed), String(OPS)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = once(child, 'exit');
  let last = -1;
  let seen = 0;
  for await (const line of createInterface({ input: child.stdout })) {
    const m = /^ack (\d+)$/.exec(line);
    if (m) {
      last = Number(m[1]);
      if (++seen === acks) child.kill('SIGKILL');
    }
  }
  const [code, signal] = await exited;
  assert.equal(signal, 'SIGKILL', `child ended on its own (code ${code}): ${stderr}`);
  return last;
}

/**
 * Every block must hold what the acknowledged prefix of the workload left there, or what
 * a later (unacknowledged, maybe durable) write put there: nothing else.
 */
function allowedContents(base: string[], seed: number, lastAck: number): { expected: string[]; alternatives: Set<string>[] } {
  const expected = base.slice();
  const alternatives = base.map(() => new Set<string>());
  const zero = digest(new Uint8Array(BLOCK));
  workload(seed, OPS, LOGICAL_BLOCKS).forEach((op, i) => {
    for (let k = 0; k < op.count; k++) {
      const value = op.kind === 'zero' ? zero : op.kind === 'write' ? digest(contentFor(op.seeds[k]!)) : null;
      if (value === null) continue;
      if (i <= lastAck) expected[op.lbn + k] = value;
      else alternatives[op.lbn + k]!.add(value);
    }
  });
  return { expected, alternatives };
}

async function readAll(vol: DedupVolume): Promise<string[]> {
  const buf = new Uint8Array(LOGICAL_BLOCKS * BLOCK);
  await vol.pread(buf, 0);
  return Array.from({ length: LOGICAL_BLOCKS }, (_, b) => digest(buf.subarray(b * BLOCK, (b + 1) * BLOCK)));
}

test('after kill -9 during a mixed write load, every acknowledged block reads back, refcounts check and overwritten space is reclaimed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sv-dedup-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'backing.img');
  let state = Array.from({ length: LOGICAL_BLOCKS }, () => digest(new Uint8Array(BLOCK)));

  for (const [round, seed] of [1, 2].entries()) {
    const lastAck = await runAndKill(file, seed, 150);
    assert.ok(lastAck > 0, 'the child acknowledged writes before it was killed');
    const device = await FileBlockDevice.open(file, BACKING);
    const vol = await DedupVolume.open(device, { logicalSize: LOGICAL_BLOCKS * BLOCK, compression: 'lz4', dedup: true, log: () => {} });
    const actual = await readAll(vol);
    const { expected, alternatives } = allowedContents(state, seed, lastAck);
    const wrong = actual.flatMap((d, b) => (d === expected[b] || alternatives[b]!.has(d) ? [] : [b]));
    assert.deepEqual(wrong, [], `round ${round}: blocks with neither the acknowledged nor a later value`);
    assert.deepEqual(await vol.check(), { ok: true, problems: [] });
    // Reclaimed: physical blocks never exceed the distinct contents actually mapped.
    const distinct = new Set(actual.filter((d) => d !== digest(new Uint8Array(BLOCK)))).size;
    const s = vol.stats();
    assert.ok(s.physicalBlocksUsed! <= distinct, `round ${round}: ${s.physicalBlocksUsed} physical blocks for ${distinct} distinct blocks`);
    assert.ok(s.logicalBytesUsed! > 0);
    state = actual;
    await vol.close();
    await device.close();
  }
});

/** Run the lanes child and SIGKILL it once `acks` acknowledgements arrived. Returns each lane's last ack. */
async function runLanesAndKill(file: string, seed: number, acks: number, scale = 1, backing = BACKING, workers = 1): Promise<number[]> {
  const args = [LANES_CHILD, file, String(backing), String(LANES), String(LANE_BLOCKS), String(seed), String(LANE_OPS), String(scale), String(workers)];
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = once(child, 'exit');
  const last = new Array<number>(LANES).fill(-1);
  let seen = 0;
  for await (const line of createInterface({ input: child.stdout })) {
    const m = /^ack (\d+) (\d+)$/.exec(line);
    if (m) {
      last[Number(m[1])] = Number(m[2]);
      if (++seen === acks) child.kill('SIGKILL');
    }
  }
  const [code, signal] = await exited;
  assert.equal(signal, 'SIGKILL', `child ended on its own (code ${code}): ${stderr}`);
  return last;
}

test('after kill -9 during concurrent writers on different blocks, every acknowledged block reads back and refcounts check', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sv-dedup-crash-lanes-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'backing.img');
  let state = Array.from({ length: LOGICAL_BLOCKS }, () => digest(new Uint8Array(BLOCK)));
  for (const [round, seed] of [3].entries()) {
    const last = await runLanesAndKill(file, seed, 120);
    assert.ok(last.some((i) => i > 0), 'the lanes acknowledged writes before the kill');
    const device = await FileBlockDevice.open(file, BACKING);
    const vol = await DedupVolume.open(device, { logicalSize: LOGICAL_BLOCKS * BLOCK, compression: 'lz4', dedup: true, workers: 1, log: () => {} });
    const actual = await readAll(vol);
    const wrong: number[] = [];
    for (let k = 0; k < LANES; k++) {
      const base = k * LANE_BLOCKS;
      const laneState = state.slice(base, base + LANE_BLOCKS);
      const expected = laneState.slice();
      const alternatives = laneState.map(() => new Set<string>());
      const zero = digest(new Uint8Array(BLOCK));
      workload(seed * 100 + k, LANE_OPS, LANE_BLOCKS).forEach((op, i) => {
        for (let j = 0; j < op.count; j++) {
          const value = op.kind === 'zero' ? zero : op.kind === 'write' ? digest(contentFor(op.seeds[j]!)) : null;
          if (value === null) continue;
          if (i <= last[k]!) expected[op.lbn + j] = value;
          else alternatives[op.lbn + j]!.add(value);
        }
      });
      for (let b = 0; b < LANE_BLOCKS; b++) {
        const d = actual[base + b]!;
        if (d !== expected[b] && !alternatives[b]!.has(d)) wrong.push(base + b);
      }
    }
    assert.deepEqual(wrong, [], `round ${round}: blocks with neither the acknowledged nor a later value`);
    assert.deepEqual(await vol.check(), { ok: true, problems: [] });
    const distinct = new Set(actual.filter((d) => d !== digest(new Uint8Array(BLOCK)))).size;
    assert.ok(vol.stats().physicalBlocksUsed! <= distinct, `round ${round}: more physical blocks than distinct contents`);
    state = actual;
    await vol.close();
    await device.close();
  }
});

test('after kill -9 during parallel pipelined writes of many chunks each (compression in two workers), every acknowledged block reads back and refcounts check', async (t) => {
  const SCALE = 16; // writes of 16..128 blocks: up to 3 chunks each, 8 lanes at once
  const blocks = LOGICAL_BLOCKS * SCALE;
  const backing = 48 << 20;
  const dir = await mkdtemp(join(tmpdir(), 'sv-dedup-crash-pipeline-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'backing.img');
  const seed = 5;
  const last = await runLanesAndKill(file, seed, 24, SCALE, backing, 2);
  assert.ok(last.some((i) => i > 0), 'the lanes acknowledged writes before the kill');
  const device = await FileBlockDevice.open(file, backing);
  t.after(() => device.close());
  const vol = await DedupVolume.open(device, { logicalSize: blocks * BLOCK, compression: 'lz4', dedup: true, workers: 2, log: () => {} });
  const buf = new Uint8Array(blocks * BLOCK);
  await vol.pread(buf, 0);
  const zero = digest(new Uint8Array(BLOCK));
  const wrong: number[] = [];
  for (let k = 0; k < LANES; k++) {
    const base = k * LANE_BLOCKS * SCALE;
    const expected = new Array<string>(LANE_BLOCKS * SCALE).fill(zero);
    const alternatives = expected.map(() => new Set<string>());
    workload(seed * 100 + k, LANE_OPS, LANE_BLOCKS).forEach((op, i) => {
      if (op.kind === 'flush') return;
      for (let j = 0; j < op.count; j++) {
        for (let m = 0; m < SCALE; m++) {
          const value = op.kind === 'zero' ? zero : digest(contentFor(scaledSeed(op.seeds[j]!, m, SCALE)));
          const b = (op.lbn + j) * SCALE + m;
          if (i <= last[k]!) expected[b] = value;
          else alternatives[b]!.add(value);
        }
      }
    });
    for (let b = 0; b < expected.length; b++) {
      const d = digest(buf.subarray((base + b) * BLOCK, (base + b + 1) * BLOCK));
      if (d !== expected[b] && !alternatives[b]!.has(d)) wrong.push(base + b);
    }
  }
  assert.deepEqual(wrong, [], 'blocks with neither the acknowledged nor a later value');
  assert.deepEqual(await vol.check(), { ok: true, problems: [] });
  assert.ok(vol.stats().physicalBlocksUsed! > 0);
  await vol.close();
});
