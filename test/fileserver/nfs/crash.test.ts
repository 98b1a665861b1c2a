/**
 * kill -9 the file server during a FILE_SYNC write load; restart it on the same
 * image; every write the server acknowledged as stable must read back, every
 * acknowledged CREATE must exist, and fsck must be clean.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { NfsClient } from './helpers/nfs-client.ts';
import { FileBlockDevice } from '../../../src/block/file-device.ts';

const runner = fileURLToPath(new URL('./helpers/crash-runner.ts', import.meta.url));
const SIZE = 128 << 20;
const CHUNK = 16 * 1024;

async function startChild(image: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', runner, image, String(SIZE)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  let out = '';
  for await (const chunk of child.stdout!) {
    out += chunk;
    const m = /PORT (\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]) };
  }
  throw new Error(`runner exited before serving: ${stderr}`);
}

const pattern = (file: number, offset: number) => {
  const b = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 8) b.writeUInt32BE(file, i), b.writeUInt32BE((offset + i) >>> 0, i + 4);
  return b;
};

test('after kill -9 during FILE_SYNC writes, every acknowledged write and create is there and fsck is clean', { timeout: 60_000 }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-nfscrash-'));
  const image = path.join(dir, 'volume.img');
  const children: ChildProcess[] = [];
  t.after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const first = await startChild(image);
  children.push(first.child);
  const c = await NfsClient.connect(first.port);
  const root = await c.root();
  const acked = new Map<string, number>(); // file name → bytes acknowledged FILE_SYNC (a prefix)
  const FILES = 4;
  let total = 0;
  let killed = false;
  const writers = Array.from({ length: FILES }, async (_, f) => {
    const name = `file-${f}`;
    try {
      const created = await c.create(root, name, 1, { mode: 0o644 });
      assert.equal(created.status, 0);
      acked.set(name, 0);
      for (let off = 0; ; off += CHUNK) {
        const w = await c.write(created.fh!, off, pattern(f, off), 2);
        assert.equal(w.status, 0);
        assert.equal(w.committed, 2);
        acked.set(name, off + CHUNK);
        if (++total === 120 && !killed) {
          killed = true;
          first.child.kill('SIGKILL'); // mid-load: other writers have calls in flight
        }
      }
    } catch (err) {
      if (!killed) throw err;
    }
  });
  await Promise.all(writers);
  await once(first.child, 'exit');
  await c.close();

  const second = await startChild(image);
  children.push(second.child);
  const v = await NfsClient.connect(second.port);
  const root2 = await v.root();
  for (const [name, bytes] of acked) {
    const found = await v.lookup(root2, name);
    assert.equal(found.status, 0, `${name} was created and acknowledged`);
    assert.ok(found.attr!.size >= BigInt(bytes), `${name}: size ${found.attr!.size} < acknowledged ${bytes}`);
    const f = Number(name.split('-')[1]);
    for (let off = 0; off < bytes; off += CHUNK) {
      const r = await v.read(found.fh!, off, CHUNK);
      assert.ok(r.data!.equals(pattern(f, off)), `${name} @${off} lost after the crash`);
    }
  }
  assert.ok([...acked.values()].reduce((a, b) => a + b, 0) >= 100 * CHUNK);
  await v.close();
  second.child.kill('SIGTERM');
  await once(second.child, 'exit');

  const { fsck } = await import('../../../src/functions/fileserver/fs/index.ts');
  const device = await FileBlockDevice.open(image, SIZE, { readOnly: true });
  const report = await fsck(device);
  await device.close();
  assert.deepEqual(report.problems, []);
  assert.equal(report.ok, true);
});
