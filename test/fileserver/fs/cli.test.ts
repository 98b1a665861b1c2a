import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildGolden } from './golden.ts';

const CLI = fileURLToPath(new URL('../../../src/functions/fileserver/fs/cli.ts', import.meta.url));
const run = (...args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', CLI, ...args]).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e) => ({ code: e.code as number, out: e.stdout as string, err: e.stderr as string }),
  );

test('the cli formats an image, checks it and lists its files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svfs-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const fresh = join(dir, 'fresh.img');
  const made = await run('mkfs', fresh, '--size', '8', '--inodes', '256');
  assert.equal(made.code, 0, made.err);
  assert.match(made.out, /2048 blocks of 4096, 256 inodes/);
  const golden = join(dir, 'golden.img');
  await writeFile(golden, await buildGolden());
  const checked = await run('fsck', golden);
  assert.equal(checked.code, 0);
  assert.match(checked.out, /clean; 2 files, 2 directories, 1 symlinks/);
  const listed = await run('ls', golden, '/docs');
  assert.equal(listed.code, 0, listed.err);
  assert.deepEqual(listed.out.trim().split('\n').map((l) => l.split(' ').at(-1)).sort(), ['again.txt', 'readme.txt']);
  const bad = await run('frobnicate', golden);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^usage: /);
});
