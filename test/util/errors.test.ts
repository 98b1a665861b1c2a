import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as errors from '../../src/util/errors.ts';
import { ConfigError as ConfigErrorFromConfig } from '../../src/config/config.ts';

const { StorvisorError, ConfigError, errnoOf } = errors;

test('a config error is a StorvisorError with a stable code, its field path and EINVAL', () => {
  const e = new ConfigError('functions[0].listen.port', 'must be a number');
  assert.ok(e instanceof StorvisorError);
  assert.equal(e.code, 'SV_ERR_CONFIG');
  assert.equal(e.errno, 'EINVAL');
  assert.equal(e.path, 'functions[0].listen.port');
  assert.equal(String(e), 'ConfigError: functions[0].listen.port: must be a number');
  assert.equal(ConfigErrorFromConfig, ConfigError, 'config re-exports the one class');
});

test('filesystem corruption has its own code and reads as EIO on every protocol', () => {
  const e = errors.fsCorrupt('inode 7: block pointer past the end');
  assert.equal(e.code, 'SV_ERR_FS_CORRUPT');
  assert.equal(errnoOf(e), 'EIO');
});

test('every factory gives a StorvisorError whose code starts SV_ERR_ and is the same on every call', () => {
  const made: Array<[string, unknown]> = [];
  for (const [name, f] of Object.entries(errors)) {
    if (typeof f !== 'function' || f === StorvisorError || f === ConfigError || f === errnoOf) continue;
    const args = name === 'outOfRange' ? [0, 1, 0] : name === 'backendFailure' ? ['EIO', 'EIO', 'x'] : name === 'nbdWireError' ? ['EIO', 'x'] : name === 'fsError' || name === 'nfsRefused' ? ['NOENT', 'x'] : ['x'];
    const a = (f as (...a: unknown[]) => unknown)(...args);
    const b = (f as (...a: unknown[]) => unknown)(...args);
    assert.ok(a instanceof StorvisorError, name);
    assert.match(a.code, /^SV_ERR_[A-Z0-9_]+$/, name);
    assert.equal(a.code, (b as errors.StorvisorError).code, name);
    made.push([name, a.code]);
  }
  assert.ok(made.length >= 25, `only ${made.length} factories`);
});

/** Every .ts file under `dir`. */
function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (p.endsWith('.ts')) yield p;
  }
}

test('no plain Error and no error class outside util/errors.ts anywhere in src/, the functions included', () => {
  const root = new URL('../../', import.meta.url).pathname;
  const found: string[] = [];
  let functionFiles = 0;
  for (const file of sources(join(root, 'src'))) {
    const rel = relative(root, file);
    if (rel === 'src/util/errors.ts') continue;
    if (/^src\/functions\/(database|fileserver|dedup)\//.test(rel)) functionFiles++;
    readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (/new Error\(|extends Error\b/.test(line)) found.push(`${rel}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.ok(functionFiles > 50, `the scan reached only ${functionFiles} files of database, fileserver and dedup`);
  assert.deepEqual(found, []);
});
