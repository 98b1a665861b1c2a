import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startDatabase } from './helpers.ts';
import { requireTools } from '../helpers/tools.ts';
import { commandTable } from '../../src/functions/database/commands/table.ts';

const run = promisify(execFile);

test('redis-cli runs commands against the database and reads their replies', async (t) => {
  requireTools('redis-cli');
  const { port } = await startDatabase(t);
  const cli = async (...args: string[]) =>
    (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])).stdout.trim();
  assert.equal(await cli('SET', 'greeting', 'hello world'), 'OK');
  assert.equal(await cli('GET', 'greeting'), 'hello world');
  assert.equal(await cli('RPUSH', 'l', 'a', 'b'), '2');
  assert.equal(await cli('LRANGE', 'l', '0', '-1'), 'a\nb');
  assert.equal(await cli('--no-raw', 'HGET', 'nohash', 'f'), '(nil)');
  assert.equal(await cli('GET'), "ERR wrong number of arguments for 'get' command");
  assert.match(await cli('INFO', 'keyspace'), /^# Keyspace\r?\ndb0:keys=2,expires=0/);
  assert.equal(await cli('CONFIG', 'GET', 'appendonly'), 'appendonly\nyes');
  assert.equal(await cli('COMMAND', 'COUNT'), String(commandTable().size));
});

test('redis-benchmark runs its standard write and read tests with no errors', async (t) => {
  requireTools('redis-benchmark');
  const { port, fn } = await startDatabase(t);
  const tests = 'set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange,mset';
  const { stdout, stderr } = await run(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-t', tests, '-n', '2000', '-q', '--csv'],
    { timeout: 60_000 },
  );
  assert.equal(stderr.trim(), '');
  const names = stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => JSON.parse(`[${line}]`)[0] as string);
  for (const name of ['SET', 'GET', 'INCR', 'LPUSH', 'RPUSH', 'LPOP', 'RPOP', 'SADD', 'HSET', 'SPOP', 'ZADD', 'ZPOPMIN', 'LRANGE_100 (first 100 elements)', 'MSET (10 keys)']) {
    assert.ok(names.includes(name), `${name} missing from ${JSON.stringify(names)}`);
  }
  assert.doesNotMatch(stdout, /ERR|WRONGTYPE|error/i);
  assert.equal(fn.stats().protocolErrors, 0);
});
