import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoopAwake } from '../../src/nbd/awake.ts';

/** The opt-in keep-awake after NBD replies (STORVISOR_NBD_AWAKE_US, issue #8). */

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5)); // a timer: the awake loop itself never lets the loop sleep
  }
}

test('after a reply the loop keeps turning for the budget, then stops by itself', async () => {
  const awake = new LoopAwake(200);
  awake.touch();
  assert.equal(awake.awake, true);
  await until(() => awake.passes > 0, 'a pass');
  await until(() => !awake.awake, 'the budget to run out');
  const passes = awake.passes;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(awake.passes, passes, 'a stopped loop made more passes');
});

test('a reply while awake extends the budget instead of starting a second loop', async () => {
  const awake = new LoopAwake(5);
  awake.touch();
  const started = performance.now();
  let touches = 0;
  // Keep replying for ~40 ms: one loop stays awake throughout.
  await until(() => {
    if (performance.now() - started < 40) {
      awake.touch();
      touches++;
      assert.equal(awake.awake, true);
      return false;
    }
    return true;
  }, 'the replies to end');
  assert.ok(touches > 1);
  await until(() => !awake.awake, 'the budget to run out after the last reply');
});
