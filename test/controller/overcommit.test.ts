import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statfsSync } from 'node:fs';
import { VolumeStore } from '../../src/storage/volume-store.ts';
import { BlockCache } from '../../src/storage/block-cache.ts';
import { parseConfig, ConfigError } from '../../src/config/config.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * Thin volumes cannot be overcommitted without limit: creating or growing one
 * past `overcommit` x (free space + what the volumes use) is refused with
 * SV_ERR_OVERCOMMIT (ENOSPC), and nothing is created or changed.
 */
const TiB = 2 ** 40;
const MiB = 2 ** 20;

function room(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

test('creating a thin volume far larger than the filesystem is refused with a clear ENOSPC error and leaves nothing behind', (t) => {
  const dir = tempDir(t);
  const store = new VolumeStore(dir, new BlockCache(0));
  const size = Math.ceil((room(dir) * 2) / TiB) * TiB + 15 * TiB;
  assert.throws(
    () => store.create('huge', size),
    (err: any) => err.code === 'SV_ERR_OVERCOMMIT' && err.errno === 'ENOSPC' && /creating 'huge'.*more than the limit.*overcommit 1 x/.test(err.message),
  );
  assert.equal(store.exists('huge'), false);
  assert.deepEqual(store.list(), []);
});

test('growing a thin volume past the limit is refused and its size is unchanged, while growing within it succeeds', async (t) => {
  const dir = tempDir(t);
  const store = new VolumeStore(dir, new BlockCache(0));
  store.create('v', 4 * MiB);
  await assert.rejects(store.resize('v', Math.ceil((room(dir) * 2) / MiB) * MiB + TiB), (err: any) => err.code === 'SV_ERR_OVERCOMMIT' && /growing 'v' from 4 MiB/.test(err.message));
  assert.equal(store.manifest('v').size, 4 * MiB);
  assert.equal((await store.resize('v', 8 * MiB)).size, 8 * MiB);
});

test('the sum of all volumes counts, not each volume alone, and a larger overcommit ratio admits more', (t) => {
  const dir = tempDir(t);
  const half = Math.floor((room(dir) * 0.6) / MiB) * MiB;
  const strict = new VolumeStore(dir, new BlockCache(0));
  strict.create('a', half);
  assert.throws(() => strict.create('b', half), (err: any) => err.code === 'SV_ERR_OVERCOMMIT');
  const relaxed = new VolumeStore(dir, new BlockCache(0), () => {}, true, 4);
  relaxed.create('b', half);
  assert.deepEqual(relaxed.list().map((m) => m.name), ['a', 'b']);
});

test('config overcommit must be a positive number and the error names the field', () => {
  assert.equal(parseConfig({}, '/tmp', {}).overcommit, 1);
  assert.equal(parseConfig({ overcommit: 3 }, '/tmp', {}).overcommit, 3);
  assert.throws(() => parseConfig({ overcommit: 0 }, '/tmp', {}), (err: any) => err instanceof ConfigError && err.path === 'overcommit');
  assert.throws(() => parseConfig({ overcommit: 'lots' }, '/tmp', {}), (err: any) => err instanceof ConfigError && err.path === 'overcommit');
});
