/**
 * Real clients against functions running as process guests, unchanged: the
 * NFS file server (libnfs-utils) and the database (redis-cli), every block
 * I/O crossing the queue in a memfd shared with another process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';
import { realClientSuite } from '../fileserver/nfs/helpers/real-clients.ts';
import { tempDir } from '../helpers/tmp.ts';

const run = promisify(execFile);

realClientSuite(
  'fileserver in an adaptive process guest',
  async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'storvisor-nfsproc-'));
    const config = parseConfig(
      {
        dataDir: dir,
        cacheMiB: 32,
        api: null,
        nbd: null,
        volumes: [{ name: 'fs', sizeMiB: 256 }],
        functions: [{ name: 'nfs', function: 'fileserver', volume: 'fs', kind: 'process', standby: false }],
      },
      dir,
      {},
    );
    const controller = await Controller.start(config);
    const address = (await controller.status()).functions[0]!.address!;
    return {
      port: address.port,
      async stop() {
        await controller.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { bigDir: 200 },
);

test('redis-cli works against the database as a process guest, and its data survives a controller restart', async (t) => {
  const dir = tempDir(t);
  const config = parseConfig(
    {
      dataDir: dir,
      cacheMiB: 32,
      api: null,
      nbd: null,
      volumes: [{ name: 'db', sizeMiB: 64 }],
      functions: [{ name: 'redis', function: 'database', volume: 'db', kind: 'process', standby: false, options: { appendfsync: 'always' } }],
    },
    dir,
    {},
  );
  let controller = await Controller.start(config);
  t.after(() => controller.stop());
  let port = String((await controller.status()).functions[0]!.address!.port);
  const cli = async (...args: string[]) => (await run('redis-cli', ['-h', '127.0.0.1', '-p', port, ...args])).stdout.trim();
  assert.equal(await cli('SET', 'survivor', 'on the volume'), 'OK');
  assert.equal(await cli('RPUSH', 'list', 'a', 'b', 'c'), '3');
  await controller.stop();
  controller = await Controller.start(config);
  port = String((await controller.status()).functions[0]!.address!.port);
  assert.equal(await cli('GET', 'survivor'), 'on the volume');
  assert.equal(await cli('LRANGE', 'list', '0', '-1'), 'a\nb\nc');
});
