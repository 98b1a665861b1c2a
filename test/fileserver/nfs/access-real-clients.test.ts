/**
 * The real libnfs clients (nfs-cp, nfs-cat, nfs-ls) against the function's
 * default export on the on-volume filesystem: they keep working as root (which
 * is squashed), and the permission checks and the client list hold for them too.
 * libnfs sends the caller's uid/gid over AUTH_SYS; `uid=`/`gid=` in the URL override it.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import fileserver, { parseFileServerOptions } from '../../../src/functions/fileserver/index.ts';
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import { NfsClient } from './helpers/nfs-client.ts';
import { requireTools } from '../../helpers/tools.ts';

const run = promisify(execFile);
const url = (port: number, p: string, extra = '') => `nfs://127.0.0.1/export${p}?nfsport=${port}&mountport=${port}&version=3${extra}`;

async function start(t: TestContext, options: Record<string, unknown> = {}) {
  requireTools('nfs-cp', 'nfs-ls', 'nfs-cat');
  const device = new MemoryBlockDevice(64 << 20);
  const running = await fileserver.start({
    device,
    listen: { host: '127.0.0.1', port: 0 },
    options: parseFileServerOptions(options),
    instance: 'test',
    log: () => {},
  });
  const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-nfsacl-'));
  t.after(async () => {
    await running.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return { port: running.address.port, dir };
}

test('nfs-cp, nfs-cat and nfs-ls work through the default export; files copied in as root belong to 65534', async (t) => {
  const { port, dir } = await start(t);
  const local = path.join(dir, 'in.bin');
  const data = Buffer.alloc(300_000, 0x61);
  await writeFile(local, data);
  await run('nfs-cp', [local, url(port, '/copied.bin')], { timeout: 30_000 });
  const back = path.join(dir, 'out.bin');
  await run('nfs-cp', [url(port, '/copied.bin'), back], { timeout: 30_000 });
  assert.deepEqual(await readFile(back), data);
  const cat = await run('nfs-cat', [url(port, '/copied.bin')], { encoding: 'buffer', maxBuffer: 1 << 20, timeout: 30_000 });
  assert.equal(cat.stdout.length, data.length);
  const ls = await run('nfs-ls', [url(port, '')], { timeout: 30_000 });
  assert.match(ls.stdout, /copied\.bin/);
  const c = await NfsClient.connect(port);
  t.after(() => c.close());
  const attr = (await c.lookup(await c.root(), 'copied.bin')).attr!;
  const me = process.getuid?.() ?? 0;
  assert.equal(attr.uid, me === 0 ? 65534 : me, 'root squash applied to the real client');
});

test('nfs-cat of another user\'s 0600 file fails; its owner reads it', async (t) => {
  const { port } = await start(t);
  const c = await NfsClient.connect(port);
  t.after(() => c.close());
  c.cred = { flavor: 1, uid: 1000, gid: 1000 };
  const fh = (await c.create(await c.root(), 'private', 0, { mode: 0o600 })).fh!;
  assert.equal((await c.write(fh, 0, Buffer.from('only alice'))).status, 0);
  await assert.rejects(run('nfs-cat', [url(port, '/private')], { timeout: 30_000 }), 'root, squashed');
  await assert.rejects(run('nfs-cat', [url(port, '/private', '&uid=1001&gid=1001')], { timeout: 30_000 }), 'another uid');
  const ok = await run('nfs-cat', [url(port, '/private', '&uid=1000&gid=1000')], { timeout: 30_000 });
  assert.equal(ok.stdout, 'only alice');
});

test('nfs-ls and nfs-cp are refused when 127.0.0.1 is not on the client list', async (t) => {
  const { port, dir } = await start(t, { clients: ['192.0.2.0/24'] });
  await assert.rejects(run('nfs-ls', [url(port, '')], { timeout: 30_000 }));
  const local = path.join(dir, 'x');
  await writeFile(local, 'x');
  await assert.rejects(run('nfs-cp', [local, url(port, '/x')], { timeout: 30_000 }));
});
