import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clientUrlOf, exportNameOf, functionNames, hasFunction, loadFunction, parseOptions } from '../../src/functions/registry.ts';
import type { StorageFunction } from '../../src/functions/types.ts';
import { StorvisorError } from '../../src/util/errors.ts';
import { tempDir } from '../helpers/tmp.ts';

const at = { host: '127.0.0.1', port: 10809 };

test('the registry lists the four built-in functions by their config names', () => {
  assert.deepEqual(functionNames(), ['database', 'dedup', 'fileserver', 'nbd-export']);
});

test('every built-in function loads as a descriptor whose name is its registry name', async () => {
  for (const name of functionNames()) {
    const fn = await loadFunction(name);
    assert.equal(fn.name, name);
    assert.equal(fn.apiVersion, 1);
    assert.equal(typeof fn.start, 'function');
    assert.equal(typeof fn.parseOptions, 'function', `${name} has an option schema`);
  }
});

test('an unknown function name fails with SV_ERR_NOT_FOUND naming the known ones', async () => {
  assert.equal(hasFunction('nope'), false);
  assert.equal(hasFunction('toString'), false, 'an Object.prototype key is not a function');
  await assert.rejects(loadFunction('toString'), (e: unknown) => e instanceof StorvisorError && e.code === 'SV_ERR_NOT_FOUND' && /database, dedup/.test(e.message));
});

test('the block-exporting functions name their export from their options, with their own defaults', async () => {
  const nbd = await loadFunction('nbd-export');
  const dedup = await loadFunction('dedup');
  assert.equal(exportNameOf(nbd, {}), 'export');
  assert.equal(exportNameOf(nbd, { exportName: 'vol7' }), 'vol7');
  assert.equal(exportNameOf(dedup, {}), 'dedup');
  assert.equal(exportNameOf(dedup, { exportName: 'dd' }), 'dd');
});

test('a function that exports no block device cannot provide a volume', async () => {
  for (const name of ['fileserver', 'database']) {
    const fn = await loadFunction(name);
    assert.throws(() => exportNameOf(fn, {}), (e: unknown) => e instanceof StorvisorError && e.code === 'SV_ERR_NOT_SUPPORTED');
  }
});

test('each function builds the URL its real clients use', async () => {
  assert.equal(clientUrlOf(await loadFunction('nbd-export'), at, { exportName: 'v' }), 'nbd://127.0.0.1:10809/v');
  assert.equal(clientUrlOf(await loadFunction('dedup'), at, {}), 'nbd://127.0.0.1:10809/dedup');
  assert.equal(clientUrlOf(await loadFunction('database'), at, {}), 'redis://127.0.0.1:10809');
  assert.equal(
    clientUrlOf(await loadFunction('fileserver'), at, { exportPath: '/srv' }),
    'nfs://127.0.0.1/srv?nfsport=10809&mountport=10809&version=3',
  );
});

test('the option schema rejects an unknown option before the function starts', async () => {
  for (const name of functionNames()) {
    const fn = await loadFunction(name);
    assert.throws(() => parseOptions(fn, { noSuchOption: 1 }), /noSuchOption/, name);
  }
});

test('connection limits pass every function schema', async () => {
  for (const name of functionNames()) {
    const fn = await loadFunction(name);
    const o = parseOptions(fn, { maxConnections: 3, idleTimeoutMs: 1000 }) as Record<string, unknown>;
    assert.equal(o.maxConnections, 3, name);
  }
});

test('a user module without a schema, export or URL gets raw options, no volume and a tcp URL', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'mine.mjs');
  writeFileSync(path, `export default { name: 'mine', apiVersion: 1, description: 'x', start: async () => ({}) };\n`);
  assert.equal(hasFunction(path), true);
  const fn: StorageFunction<any> = await loadFunction(path);
  assert.deepEqual(parseOptions(fn, { a: 1 }), { a: 1 });
  assert.equal(clientUrlOf(fn, at, {}), 'tcp://127.0.0.1:10809');
  assert.throws(() => exportNameOf(fn, {}), /exports no block device/);
});

test('a module that is not a descriptor is refused with SV_ERR_INVALID_ARGUMENT', async (t) => {
  const path = join(tempDir(t), 'bad.mjs');
  writeFileSync(path, `export default { name: 'bad' };\n`);
  await assert.rejects(loadFunction(path), (e: unknown) => e instanceof StorvisorError && e.code === 'SV_ERR_INVALID_ARGUMENT');
});
