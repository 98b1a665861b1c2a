/**
 * Finding: with `ulimit -n 300`, 400 idle connections to the database port
 * made the process's other servers refuse clients. With the default limit
 * derived from the descriptor limit, the excess is closed at once and the
 * NBD export next to it keeps serving nbdinfo.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { run } from '../nbd/helpers.ts';
import { open, waitFor, within } from './helpers.ts';

const child = fileURLToPath(new URL('./fd-limit-child.ts', import.meta.url));

test('400 idle connections to the database under ulimit -n 300 leave the NBD export serving', async (t) => {
  const proc = spawn('sh', ['-c', `ulimit -n 300 && exec "${process.execPath}" --import tsx "${child}"`], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => proc.kill('SIGKILL'));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await within(new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', () => out.includes('\n') && resolve());
    proc.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
  }), 60_000, 'the child to listen');
  const ports = JSON.parse(out.split('\n')[0]!) as { db: number; nbd: number; maxConnections: number };
  assert.equal(ports.maxConnections, 37, 'an eighth of 300 descriptors');
  const sockets = await Promise.all(Array.from({ length: 400 }, () => open(ports.db)));
  t.after(() => sockets.forEach((s) => s.destroy()));
  let closed = 0;
  for (const s of sockets) void s.gone.then(() => closed++);
  await waitFor(() => closed === 400 - ports.maxConnections, 'the excess connections to be closed', 30_000);
  const r = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${ports.nbd}/vol`], 30_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), String(16 << 20));
  sockets.forEach((s) => s.destroy());
  proc.stdin!.end();
  const [code] = await once(proc, 'exit');
  assert.equal(code, 0);
});
