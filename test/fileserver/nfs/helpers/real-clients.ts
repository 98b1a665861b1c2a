/**
 * The real-client checks (libnfs-utils: nfs-cp, nfs-cat, nfs-ls) as a suite that
 * runs against any started server, so the same checks cover memory-fs and the
 * on-volume filesystem.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { NfsClient } from './nfs-client.ts';
import { requireTools } from '../../../helpers/tools.ts';

const run = promisify(execFile);

export const nfsUrl = (port: number, p = '') => `nfs://127.0.0.1/export${p}?nfsport=${port}&mountport=${port}&version=3`;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Run `fns` with at most `n` in flight: libnfs tools are processes, the box has 2 cores. */
async function limit<T>(n: number, items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export interface ServerUnderTest {
  port: number;
  stop(): Promise<void>;
}

export function realClientSuite(label: string, start: () => Promise<ServerUnderTest>, opts: { bigDir: number }) {
  test(`${label}: nfs-cp copies a tree of files of many sizes in and out, nfs-cat agrees, checksums match`, async (t) => {
    requireTools('nfs-cp', 'nfs-ls', 'nfs-cat');
    const server = await start();
    const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-nfs-'));
    t.after(async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const c = await NfsClient.connect(server.port);
    const root = await c.root();
    await c.mkdir(root, 'a');
    const a = (await c.lookup(root, 'a')).fh!;
    await c.mkdir(a, 'b');
    await c.close();
    const sizes = [0, 1, 511, 4095, 4096, 4097, 65539, 131072, 1048576 + 7, 3 * 1048576 + 100];
    const files = sizes.map((size, i) => ({ rel: ['', '/a', '/a/b'][i % 3] + `/f${i}-${size}`, data: randomBytes(size) }));
    await limit(4, files, async (f) => {
      const local = path.join(dir, path.basename(f.rel));
      await writeFile(local, f.data);
      await run('nfs-cp', [local, nfsUrl(server.port, f.rel)], { timeout: 30_000 });
    });
    await limit(4, files, async (f) => {
      const back = path.join(dir, path.basename(f.rel) + '.out');
      await run('nfs-cp', [nfsUrl(server.port, f.rel), back], { timeout: 30_000 });
      assert.equal(sha(await readFile(back)), sha(f.data), `nfs-cp out ${f.rel}`);
      const cat = await run('nfs-cat', [nfsUrl(server.port, f.rel)], { encoding: 'buffer', maxBuffer: 8 << 20, timeout: 30_000 });
      assert.equal(sha(cat.stdout), sha(f.data), `nfs-cat ${f.rel}`);
    });
    const ls = await run('nfs-ls', [nfsUrl(server.port, '/a/b')], { timeout: 30_000 });
    const listed = ls.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).at(-1));
    assert.deepEqual(listed.sort(), files.filter((f) => f.rel.startsWith('/a/b/')).map((f) => path.basename(f.rel)).sort());
  });

  test(`${label}: nfs-ls lists a ${opts.bigDir}-entry directory completely`, async (t) => {
    requireTools('nfs-cp', 'nfs-ls', 'nfs-cat');
    const server = await start();
    t.after(() => server.stop());
    const c = await NfsClient.connect(server.port);
    const root = await c.root();
    const big = (await c.mkdir(root, 'big')).fh!;
    const names = Array.from({ length: opts.bigDir }, (_, i) => `entry-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < names.length; i += 200) {
      const statuses = await Promise.all(names.slice(i, i + 200).map(async (n) => (await c.create(big, n, 1, { mode: 0o644 })).status));
      assert.ok(statuses.every((s) => s === 0));
    }
    await c.close();
    const ls = await run('nfs-ls', [nfsUrl(server.port, '/big')], { maxBuffer: 16 << 20, timeout: 60_000 });
    const listed = ls.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).at(-1)!);
    assert.equal(listed.length, names.length);
    assert.deepEqual(listed.sort(), names);
  });
}
