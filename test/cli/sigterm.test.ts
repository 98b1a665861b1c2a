import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/tmp.ts';
import { BIN } from './helpers.ts';

/**
 * `storvisor start` as a service runs it: the default functions (NBD
 * re-export, file server, database, dedup, each in a thread guest), JSON logs,
 * then SIGTERM. It must be gone, cleanly, well within systemd's patience and
 * the 5 s the issue allows.
 */
const MiB = 2 ** 20;

test('with the default guests running, SIGTERM stops the controller cleanly (exit 0) in under 5 s, and every JSON log line names its function and volume', async (t) => {
  const dir = tempDir(t);
  const config = join(dir, 'c.json');
  writeFileSync(
    config,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      cacheMiB: 16,
      nbd: { port: 0 },
      api: { port: 0 },
      volumes: [
        { name: 'nbd-guest', sizeMiB: 64 },
        { name: 'files', sizeMiB: 128 },
        { name: 'db', sizeMiB: 64 },
        { name: 'dedup-backing', sizeMiB: 128 },
      ],
      functions: [
        { name: 'nbd0', function: 'nbd-export', volume: 'nbd-guest', options: { exportName: 'export' } },
        { name: 'nfs0', function: 'fileserver', volume: 'files', options: { exportPath: '/export' } },
        { name: 'redis0', function: 'database', volume: 'db', options: { appendfsync: 'always' } },
        { name: 'dedup0', function: 'dedup', volume: 'dedup-backing', options: { logicalSize: 512 * MiB, compression: 'lz4', dedup: true, exportName: 'dedup' } },
      ],
    }),
  );
  const p = spawn(process.execPath, [BIN, 'start', '--config', config, '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => p.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  p.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`no "ready" line within 60 s:\n${stdout}\n${stderr}`)), 60_000);
    p.stdout.on('data', (d) => {
      stdout += d;
      if (/"msg":"ready"/.test(stdout)) {
        clearTimeout(deadline);
        resolve();
      }
    });
  });
  const t0 = performance.now();
  p.kill('SIGTERM');
  const code = await exited;
  const ms = performance.now() - t0;
  t.diagnostic(`SIGTERM to exit: ${Math.round(ms)} ms`);
  assert.equal(code, 0, stderr);
  assert.ok(ms < 5000, `stopping took ${Math.round(ms)} ms`);

  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const l of lines) {
    assert.equal(typeof l.msg, 'string');
    assert.ok(['debug', 'info', 'warn', 'error'].includes(String(l.level)), JSON.stringify(l));
    if (/^guest \S+:/.test(String(l.msg))) {
      assert.equal(typeof l.function, 'string', JSON.stringify(l));
      assert.equal(typeof l.volume, 'string', JSON.stringify(l));
    }
  }
  const serving = lines.find((l) => l.function === 'nfs0');
  assert.equal(serving?.volume, 'files');
  assert.ok(lines.some((l) => /^stopped in \d+ ms$/.test(String(l.msg))));
  assert.ok(lines.some((l) => l.endpoint === 'api' && typeof l.url === 'string'));
});
