import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { CoreContention } from '../../src/native/contention.ts';

/** A schedstat file we write ourselves: "on-cpu-ns run-delay-ns timeslices". */
function fakeSchedstat(): { path: string; set(delayNs: number): void; done(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'sv-schedstat-'));
  const path = join(dir, 'schedstat');
  const set = (delayNs: number) => writeFileSync(path, `123456789 ${delayNs} 42\n`);
  set(0);
  return { path, set, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('a thread that waits for a CPU most of the time becomes contended, and uncontended once it stops waiting', () => {
  const f = fakeSchedstat();
  const c = new CoreContention(f.path);
  try {
    let now = 1000;
    let delay = 0;
    assert.equal(c.contended(now), false);
    const verdicts: boolean[] = [];
    for (let i = 0; i < 12; i++) {
      now += 10; // 10 ms of wall time...
      delay += 8e6; // ...of which 8 ms waiting on a run queue
      f.set(delay);
      verdicts.push(c.contended(now));
    }
    assert.equal(verdicts.at(-1), true, `share ${c.runDelayShare}`);
    assert.ok(!verdicts.slice(0, 3).includes(true), 'a few samples are not enough (smoothed)');
    for (let i = 0; i < 20; i++) {
      now += 10;
      f.set(delay); // no more waiting
      c.contended(now);
    }
    assert.equal(c.contended(now), false, `share ${c.runDelayShare}`);
  } finally {
    c.close();
    f.done();
  }
});

test('samples closer together than 5 ms are not taken', () => {
  const f = fakeSchedstat();
  const c = new CoreContention(f.path);
  try {
    c.contended(1000);
    f.set(1e9);
    assert.equal(c.contended(1001), false);
    assert.equal(c.samples, 0);
  } finally {
    c.close();
    f.done();
  }
});

test('where schedstat cannot be read, a thread is never contended', () => {
  const c = new CoreContention('/nonexistent/schedstat');
  assert.equal(c.contended(1000), false);
  assert.equal(c.contended(2000), false);
  c.close();
});

test('this thread’s own schedstat can be read', () => {
  const c = new CoreContention();
  c.contended(performance.now());
  c.contended(performance.now() + 10);
  assert.equal(c.samples, 1);
  c.close();
});
