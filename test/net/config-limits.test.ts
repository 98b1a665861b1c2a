import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/config.ts';
import database from '../../src/functions/database/index.ts';
import dedup from '../../src/functions/dedup/index.ts';
import fileserver from '../../src/functions/fileserver/index.ts';
import nbdExport from '../../src/functions/nbd-export.ts';

const fn = (extra: Record<string, unknown>) => ({
  volumes: [{ name: 'v', sizeMiB: 64 }],
  functions: [{ name: 'f', function: 'database', volume: 'v', ...extra }],
});

test('maxConnections and idleTimeoutMs of a function reach it in its start options', () => {
  const f = parseConfig(fn({ maxConnections: 32, idleTimeoutMs: 60_000, options: { appendfsync: 'everysec' } }), '/', {}).functions[0]!;
  assert.deepEqual([f.maxConnections, f.idleTimeoutMs], [32, 60_000]);
  assert.deepEqual(f.options, { appendfsync: 'everysec', maxConnections: 32, idleTimeoutMs: 60_000 });
  assert.deepEqual(database.parseOptions!(f.options), { appendfsync: 'everysec', maxBulkLength: 512 * 1024 * 1024, maxConnections: 32, idleTimeoutMs: 60_000 });
});

test('a function without the limits leaves them unset, so the protocol defaults apply', () => {
  const f = parseConfig(fn({}), '/', {}).functions[0]!;
  assert.deepEqual([f.maxConnections, f.idleTimeoutMs, f.options], [undefined, undefined, {}]);
});

test('a bad limit in the config is an error that names the field', () => {
  assert.throws(() => parseConfig(fn({ maxConnections: 0 }), '/', {}), /^ConfigError: functions\[0\]\.maxConnections: must be a number from 1 to 65536 \(got 0\)$/);
  assert.throws(() => parseConfig(fn({ idleTimeoutMs: 1.5 }), '/', {}), /^ConfigError: functions\[0\]\.idleTimeoutMs: must be a whole number \(got 1.5\)$/);
  assert.throws(() => parseConfig(fn({ options: { maxConnections: 5 } }), '/', {}), /^ConfigError: functions\[0\]\.options\.maxConnections: set it as functions\[0\]\.maxConnections$/);
});

test('every network function validates the limits in its options and names the field', () => {
  for (const f of [database, dedup, fileserver, nbdExport]) {
    assert.throws(() => f.parseOptions!({ maxConnections: -1 }), new RegExp(`^.*${f.name} option maxConnections must be an integer`));
    assert.throws(() => f.parseOptions!({ idleTimeoutMs: 'soon' }), new RegExp(`^.*${f.name} option idleTimeoutMs must be an integer`));
    assert.equal((f.parseOptions!({ maxConnections: 7 }) as { maxConnections?: number }).maxConnections, 7);
  }
});
