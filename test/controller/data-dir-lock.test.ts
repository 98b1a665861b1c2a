import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lockDataDir } from '../../src/controller/data-dir-lock.ts';
import { parseConfig } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The data-directory lock is flock(2): a second controller is refused with a
 * message naming the holder, and the kernel releases the lock when the holder
 * dies, kill -9 included, so the next controller starts at once.
 */
const launcher = fileURLToPath(new URL('../../bin/storvisor.js', import.meta.url));

function config(dir: string): string {
  const file = join(dir, 'storvisor.json');
  writeFileSync(file, JSON.stringify({ dataDir: join(dir, 'data'), cacheMiB: 8, api: null, nbd: { port: 0 }, volumes: [{ name: 'v', sizeMiB: 8 }] }));
  return file;
}

/** A controller process; resolves once it prints its endpoints, or with its exit code and stderr if it exits first. */
function startProcess(file: string): Promise<{ child: ChildProcess; ready: boolean; code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [launcher, 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('Ctrl-C stops')) resolve({ child, ready: true, code: null, stderr });
    });
    child.once('exit', (code) => resolve({ child, ready: false, code, stderr }));
  });
}

test('a second lock on a locked data directory is refused at once with the holder named', (t) => {
  const dir = tempDir(t);
  const unlock = lockDataDir(dir);
  t.after(unlock);
  assert.throws(() => lockDataDir(dir), (err: any) => err.code === 'SV_ERR_DATA_DIR_BUSY' && err.message.includes(`pid ${process.pid}`) && err.message.includes(dir));
  unlock();
  lockDataDir(dir)();
});

test('a second controller on the same data directory is refused', async (t) => {
  const dir = tempDir(t);
  const cfg = parseConfig({ dataDir: dir, cacheMiB: 8, api: null, nbd: null, volumes: [{ name: 'v', sizeMiB: 8 }] }, dir, {});
  const first = await Controller.start(cfg);
  t.after(() => first.stop());
  await assert.rejects(Controller.start(cfg), (err: any) => err.code === 'SV_ERR_DATA_DIR_BUSY');
  await first.stop();
  const third = await Controller.start(cfg);
  await third.stop();
});

test('kill -9 of a controller process releases its lock so a new controller starts at once', async (t) => {
  const dir = tempDir(t);
  const file = config(dir);
  const first = await startProcess(file);
  t.after(() => first.child.kill('SIGKILL'));
  assert.ok(first.ready, `first controller started: ${first.stderr}`);

  const second = await startProcess(file);
  t.after(() => second.child.kill('SIGKILL'));
  assert.equal(second.ready, false, 'the second controller must not start');
  assert.equal(second.code, 1);
  assert.match(second.stderr, /is in use by another storvisor process \(controller pid \d+\).*SV_ERR_DATA_DIR_BUSY/);

  const exited = new Promise((r) => first.child.once('exit', r));
  first.child.kill('SIGKILL');
  await exited;
  // No waiting, no stale-lock detection: the kernel released the flock with the process.
  const cfg = parseConfig(JSON.parse(readFileSync(file, 'utf8')), dir, {});
  const third = await Controller.start(cfg);
  await third.stop();
});
