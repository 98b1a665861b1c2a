import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { VolumeStore } from '../../src/storage/volume-store.ts';
import { tempDir } from '../helpers/tmp.ts';
import { B, block } from './helpers/blocks.ts';

/**
 * kill -9 in the middle of writes to a volume with snapshots and to a clone,
 * while snapshots are taken and deleted: after a restart every acknowledged
 * write is there, no block is torn, the base snapshot and the clone's shared
 * blocks are intact, and every snapshot the chain lists holds a point in time.
 */
const BLOCKS = 256;
const CHILD = fileURLToPath(new URL('./snap-crash-child.ts', import.meta.url));

async function gens(v: { pread(buf: Uint8Array, off: number): Promise<void> }): Promise<number[]> {
  const out: number[] = [];
  const buf = Buffer.alloc(B);
  for (let b = 0; b < BLOCKS; b++) {
    await v.pread(buf, b * B);
    const gen = buf.readUInt32LE(4);
    assert.ok(block(b, gen).equals(buf), `block ${b} is torn or misplaced`);
    out.push(gen);
  }
  return out;
}

interface Seen {
  acked: Record<string, number[]>;
  /** Per snapshot: the acknowledged generations when it was about to be taken. */
  before: Map<string, number[]>;
  taken: Set<string>;
  /** Deletions begun (a crash may leave one half done: then it is finished at the next operation). */
  deleting: Set<string>;
  deleted: Set<string>;
}

/** The child's writes: durable (O_DSYNC), or unsynced (left to a flush, as an NBD client's plain WRITE). */
type Mode = 'durable' | 'unsynced';

/** Run the child until it has acknowledged `acks` writes, then kill -9 it. */
function runAndKill(dir: string, acks: number, mode: Mode): Promise<Seen> {
  const seen: Seen = { acked: { v: new Array(BLOCKS).fill(0), c: new Array(BLOCKS).fill(0) }, before: new Map(), taken: new Set(), deleting: new Set(), deleted: new Set() };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, String(BLOCKS), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let n = 0;
    let rest = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d: Buffer) => {
      const lines = (rest + d.toString()).split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        const [kind, a, b, g] = line.split(' ');
        if (kind === 'A') {
          seen.acked[a!]![Number(b)] = Number(g);
          n++;
        } else if (kind === 'P') seen.before.set(a!, [...seen.acked.v!]);
        else if (kind === 'S') seen.taken.add(a!);
        else if (kind === 'X') seen.deleting.add(a!);
        else if (kind === 'D') seen.deleted.add(a!);
      }
      if (n >= acks && !killed) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && killed) resolve(seen);
      else reject(new Error(`child ended by itself (${code ?? signal}):\n${stderr}`));
    });
  });
}

for (const [acks, mode] of [[150, 'durable'], [700, 'durable'], [700, 'unsynced']] as const) {
  test(`kill -9 after ${acks} acknowledged ${mode === 'unsynced' ? 'unsynced ' : ''}writes leaves the volume, its snapshots and its clone consistent`, async (t) => {
    const dir = tempDir(t);
    let s = new VolumeStore(dir, new BlockCache(1 << 20));
    s.create('v', BLOCKS * B);
    const v0 = s.openVolume('v');
    await Promise.all(Array.from({ length: BLOCKS }, (_, b) => v0.pwrite(block(b, 1), b * B)));
    await s.snapshots.create('v', 'base');
    await s.snapshots.clone('v', 'base', 'c');
    await s.closeAll();

    const seen = await runAndKill(dir, acks, mode);
    s = new VolumeStore(dir, new BlockCache(1 << 20));
    t.after(() => s.closeAll());
    const v = await gens(s.openVolume('v'));
    const c = await gens(s.openVolume('c'));
    for (let b = 0; b < BLOCKS; b++) {
      assert.ok(v[b]! >= seen.acked.v![b]!, `v block ${b}: ${v[b]} lost the acknowledged ${seen.acked.v![b]}`);
      assert.ok(v[b] === 1 || (v[b]! > 1_000_000 && v[b]! < 2_000_000), `v block ${b}: ${v[b]} is not the volume's`);
      assert.ok(c[b]! >= seen.acked.c![b]!, `c block ${b}: ${c[b]} lost the acknowledged ${seen.acked.c![b]}`);
      assert.ok(c[b] === 1 || c[b]! > 2_000_000, `c block ${b}: ${c[b]} is not the clone's`);
    }
    assert.deepEqual(await gens(s.openVolume('v@base')), new Array(BLOCKS).fill(1));
    const listed = s.snapshots.list('v').map((i) => i.name);
    for (const name of seen.taken) if (!seen.deleting.has(name)) assert.ok(listed.includes(name), `snapshot ${name} was taken and not deleted, but is gone`);
    for (const name of listed) {
      if (name === 'base') continue;
      const got = await gens(s.openVolume(`v@${name}`));
      const before = seen.before.get(name)!;
      for (let b = 0; b < BLOCKS; b++) {
        assert.ok(got[b]! >= before[b]!, `snapshot ${name} block ${b}: ${got[b]} is older than ${before[b]}, acknowledged before it`);
        assert.ok(got[b]! <= v[b]!, `snapshot ${name} block ${b}: ${got[b]} is newer than the volume's ${v[b]}`);
      }
    }
    for (const name of seen.deleted) assert.ok(!listed.includes(name), `snapshot ${name} was deleted, but is listed`);
    // Still usable: a write and a new snapshot after the restart (which also finishes a deletion the crash cut short).
    const vol = s.openVolume('v');
    await vol.pwrite(block(7, 1_999_999), 7 * B);
    await s.snapshots.create('v', 'after');
    assert.equal((await gens(s.openVolume('v@after')))[7], 1_999_999);
    for (const name of s.snapshots.list('v').map((i) => i.name)) {
      if (name === 'base' || name === 'after') continue;
      const got = await gens(s.openVolume(`v@${name}`));
      const before = seen.before.get(name)!;
      for (let b = 0; b < BLOCKS; b++) assert.ok(got[b]! >= before[b]!, `snapshot ${name} block ${b} changed when a deletion was finished`);
    }
    assert.deepEqual(await gens(s.openVolume('v@base')), new Array(BLOCKS).fill(1));
    const chain = JSON.parse(readFileSync(join(s.dir, '.snapshots', 'v.chain.json'), 'utf8'));
    assert.deepEqual(chain.snapshots.filter((e: { state: string }) => e.state !== 'ready'), [], 'a deletion the crash cut short was finished');
  });
}
