import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bufferVerdict, fullCollector, nextBufferCheckMs } from '../../src/deploy/guest/guest-runtime.ts';

const MiB = 2 ** 20;
const LIMIT = 256 * MiB;

test('an idle guest backs its buffer check off from 100 ms to once a second', () => {
  let ms = 100;
  const seen: number[] = [];
  for (let i = 0; i < 6; i++) {
    ms = nextBufferCheckMs(ms, 10 * MiB, 10 * MiB, LIMIT);
    seen.push(ms);
  }
  assert.deepEqual(seen, [200, 400, 800, 1000, 1000, 1000]);
});

test('buffer memory that moves by a MiB brings the 100 ms check back at once', () => {
  assert.equal(nextBufferCheckMs(1000, 10 * MiB, 11 * MiB, LIMIT), 100);
  assert.equal(nextBufferCheckMs(1000, 11 * MiB, 10 * MiB, LIMIT), 100);
});

test('a quiet guest past half its buffer limit keeps checking every 100 ms', () => {
  assert.equal(nextBufferCheckMs(1000, 200 * MiB, 200 * MiB, LIMIT), 100);
});

test('over its buffer limit a guest first forces a full collection, and ends only if still over after it', () => {
  assert.equal(bufferVerdict(200 * MiB, LIMIT, false, true), 'ok');
  assert.equal(bufferVerdict(300 * MiB, LIMIT, false, true), 'collect');
  assert.equal(bufferVerdict(300 * MiB, LIMIT, true, true), 'fatal', 'still over after the collection: live memory');
  assert.equal(bufferVerdict(200 * MiB, LIMIT, true, true), 'ok', 'the collection brought it under');
  assert.equal(bufferVerdict(300 * MiB, LIMIT, false, false), 'fatal', 'no collector: over the limit ends it at once');
});

test('the forced collection frees Buffers nobody references and keeps the live ones in the count', async () => {
  const collect = fullCollector();
  assert.ok(collect, 'a collector can be had at run time');
  const settled = async (cond: (bytes: number) => boolean): Promise<number> => {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const bytes = process.memoryUsage().arrayBuffers;
      if (cond(bytes)) return bytes;
      assert.ok(Date.now() < deadline, `arrayBuffers stayed at ${(bytes / MiB).toFixed(0)} MiB`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  collect();
  // The base once the sweeper is done: two readings 20 ms apart within half a MiB.
  let last = -Infinity;
  const base = await settled((bytes) => {
    const still = Math.abs(bytes - last) < MiB / 2;
    last = bytes;
    return still;
  });
  const live = Array.from({ length: 5_000 }, () => Buffer.alloc(4096)); // 19.5 MiB kept
  for (let i = 0; i < 50_000; i++) Buffer.allocUnsafeSlow(4096).fill(i); // ~195 MiB dropped at once
  collect();
  const after = await settled((bytes) => bytes < base + 40 * MiB);
  assert.ok(after >= base + 19 * MiB, `the live Buffers still count: ${((after - base) / MiB).toFixed(1)} MiB above the base`);
  assert.equal(live.length, 5_000);
});
