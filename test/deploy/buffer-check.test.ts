import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextBufferCheckMs } from '../../src/deploy/guest/guest-runtime.ts';

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
