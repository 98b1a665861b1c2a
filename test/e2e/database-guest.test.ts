/**
 * The database function as a thread guest on a controller volume: redis-cli and
 * redis-benchmark against it, then a controller restart on the same data
 * directory keeps the data (it lives on the volume, not in a host file).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseConfig } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';
import { tempDir } from '../helpers/tmp.ts';
import { requireTools } from '../helpers/tools.ts';

const run = promisify(execFile);

test('redis-benchmark and redis-cli work against the database guest, and its data survives a restart', async (t) => {
  requireTools('redis-cli', 'redis-benchmark');
  const dir = tempDir(t);
  const config = parseConfig(
    {
      dataDir: dir,
      cacheMiB: 32,
      api: null,
      nbd: null,
      volumes: [{ name: 'db', sizeMiB: 64 }],
      functions: [{ name: 'redis', function: 'database', volume: 'db', deploy: 'guest', options: { appendfsync: 'always' } }],
    },
    dir,
    {},
  );
  let controller = await Controller.start(config);
  t.after(() => controller.stop());
  let port = String((await controller.status()).functions[0]!.address!.port);
  const cli = async (...args: string[]) => (await run('redis-cli', ['-h', '127.0.0.1', '-p', port, ...args])).stdout.trim();

  const { stdout, stderr } = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', port, '-t', 'set,get,incr,lpush,lpop,sadd,hset,zadd,mset', '-n', '2000', '-q', '--csv'], { timeout: 120_000 });
  assert.equal(stderr.trim(), '');
  assert.doesNotMatch(stdout, /ERR|WRONGTYPE|error/i);
  assert.match(stdout, /"SET"/);
  assert.equal(await cli('SET', 'survivor', 'on the volume'), 'OK');
  assert.equal(await cli('RPUSH', 'list', 'a', 'b', 'c'), '3');

  await controller.stop();
  controller = await Controller.start(config);
  port = String((await controller.status()).functions[0]!.address!.port);
  assert.equal(await cli('GET', 'survivor'), 'on the volume');
  assert.equal(await cli('LRANGE', 'list', '0', '-1'), 'a\nb\nc');
});
