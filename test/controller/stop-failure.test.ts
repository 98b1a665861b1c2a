import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';
import { tempDir } from '../helpers/tmp.ts';

const stopFails = fileURLToPath(new URL('./fixtures/stop-fails.ts', import.meta.url));

test('a function whose stop fails is logged and counted, and the controller still stops everything else and unlocks', async (t) => {
  const dataDir = tempDir(t);
  const config = parseConfig({
    cacheMiB: 16, api: null, nbd: { port: 0 }, dataDir,
    volumes: [{ name: 'a', sizeMiB: 8 }, { name: 'b', sizeMiB: 8 }],
    functions: [
      { name: 'bad', function: stopFails, volume: 'a', deploy: 'integrated' },
      { name: 'good', function: 'nbd-export', volume: 'b', deploy: 'integrated', listen: { port: 0 } },
    ],
  }, dataDir, {});
  const logs: string[] = [];
  const c = await Controller.start(config, (m) => logs.push(m));
  await c.stop();
  assert.equal(c.counters.stopFailures, 1);
  assert.ok(logs.some((l) => /function bad: stop failed: stop-fails fixture: the final flush failed/.test(l)), logs.join('\n'));
  assert.equal(c.store.openVolumes().length, 0, 'every volume was closed all the same');
  // The data directory lock was released: a second controller starts on it.
  const again = await Controller.start({ ...config, functions: [] });
  await again.stop();
});
