import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const RUNNER = fileURLToPath(new URL('./directory-scale-runner.ts', import.meta.url));
const N = 100_000;

test('a directory of 100,000 entries supports create, lookup and a full readdir with cookies', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', RUNNER, String(N)], { maxBuffer: 1 << 20 });
  const r = JSON.parse(stdout.trim().split('\n').at(-1)!);
  t.diagnostic(
    `wall: create ${r.createMs.toFixed(0)} ms, lookup ${r.lookupMs.toFixed(0)} ms, readdir ${r.readdirMs.toFixed(0)} ms; cpu ${r.cpuMs.toFixed(0)} ms`,
  );
  assert.equal(r.distinctInodes, N, 'every name looks up to its own inode');
  assert.equal(r.listed, N);
  assert.equal(r.distinctNames, N);
  assert.equal(r.distinctCookies, N, 'cookies are unique');
  assert.equal(r.zeroCookies, 0, 'cookies are non-zero');
  assert.deepEqual(r.fsckProblems, []);
  assert.equal(r.fsckEntries, N + 1);
  // CPU time, not wall time: the 2-core box is shared, and wall time measures the neighbours.
  // About 6 s on an idle box; the bound catches a complexity regression, not noise.
  assert.ok(r.cpuMs < 15_000, `create + lookup + readdir of ${N} entries used ${r.cpuMs} ms of CPU`);
  assert.ok(r.readdirMs < 3000, `a full readdir took ${r.readdirMs} ms`);
});
