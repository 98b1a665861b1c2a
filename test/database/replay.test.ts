import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import { Database } from '../../src/functions/database/database.ts';
import { dispatch } from '../../src/functions/database/commands/table.ts';
import { mutationsForKey } from '../../src/functions/database/store/mutations.ts';
import { commandContext } from './helpers.ts';

const noop = { appendfsync: 'always' as const, log: () => {}, onDurable: () => {}, onFailure: () => {} };

const contextFor = commandContext;

/** The whole data set as comparable text: each live key's rebuild mutations. */
function dump(db: Database): string[] {
  const out: string[] = [];
  for (const [k, e] of db.ks.entries()) {
    if (!db.ks.isLive(e)) continue;
    const muts = [...mutationsForKey(k, e)].map((m) => `${m.op}:${m.args.map((a) => a.toString('hex')).join(',')}`);
    out.push(`${Buffer.from(k, 'latin1').toString('hex')} ${e.type} ${muts.join(' ')}`);
  }
  return out.sort();
}

const key = fc.constantFrom('a', 'b', 'c', 'd');
const val = fc.constantFrom('1', '2', 'x', '-7', '');
const score = fc.constantFrom('1', '2.5', '-inf', '0');
const command = fc.oneof(
  fc.tuple(fc.constant('SET'), key, val),
  fc.tuple(fc.constant('SET'), key, val, fc.constant('EX'), fc.constant('1000')),
  fc.tuple(fc.constant('SET'), key, val, fc.constant('KEEPTTL')),
  fc.tuple(fc.constant('GETSET'), key, val),
  fc.tuple(fc.constant('MSET'), key, val, key, val),
  fc.tuple(fc.constantFrom('INCR', 'DECR', 'PERSIST', 'DEL', 'FLUSHDB'), key),
  fc.tuple(fc.constantFrom('INCRBY', 'APPEND', 'LPUSH', 'RPUSH', 'SADD', 'SREM'), key, val),
  fc.tuple(fc.constantFrom('LPOP', 'RPOP', 'SPOP', 'ZPOPMIN'), key),
  fc.tuple(fc.constantFrom('LPOP', 'RPOP', 'SPOP', 'ZPOPMIN'), key, fc.constantFrom('0', '1', '3')),
  fc.tuple(fc.constant('HSET'), key, val, val),
  fc.tuple(fc.constant('HDEL'), key, val),
  fc.tuple(fc.constant('ZADD'), key, score, val),
  fc.tuple(fc.constant('ZADD'), key, fc.constantFrom('NX', 'XX', 'GT', 'LT', 'INCR'), score, val),
  fc.tuple(fc.constantFrom('EXPIRE', 'PEXPIRE'), key, fc.constantFrom('100', '-1', '5000')),
  fc.tuple(fc.constant('RENAME'), key, key),
  fc.tuple(fc.constantFrom('SETNX', 'RPUSHX', 'LPUSHX', 'SREM', 'ZREM', 'ZINCRBY'), key, val),
  fc.tuple(fc.constantFrom('SETEX', 'PSETEX'), key, fc.constantFrom('100', '5000'), val),
  fc.tuple(fc.constantFrom('GETDEL', 'UNLINK'), key),
  fc.tuple(fc.constant('GETEX'), key, fc.constantFrom('PERSIST', 'EX'), fc.constant('100')),
  fc.tuple(fc.constantFrom('HINCRBY', 'HSETNX'), key, val, fc.constantFrom('1', '-3', '9')),
  fc.tuple(fc.constant('HINCRBYFLOAT'), key, val, fc.constantFrom('1.5', '-3')),
  fc.tuple(fc.constant('INCRBYFLOAT'), key, fc.constantFrom('1.5', '-3')),
  fc.tuple(fc.constant('LREM'), key, fc.constantFrom('0', '1', '-1'), val),
  fc.tuple(fc.constant('LTRIM'), key, fc.constantFrom('0', '1', '-2'), fc.constantFrom('-1', '0', '2')),
  fc.tuple(fc.constant('LSET'), key, fc.constantFrom('0', '-1', '3'), val),
  fc.tuple(fc.constant('LINSERT'), key, fc.constantFrom('BEFORE', 'AFTER'), val, val),
  fc.tuple(fc.constant('LMOVE'), key, key, fc.constantFrom('LEFT', 'RIGHT'), fc.constantFrom('LEFT', 'RIGHT')),
  fc.tuple(fc.constantFrom('RPOPLPUSH', 'SMOVE', 'RENAMENX'), key, key, val),
  fc.tuple(fc.constantFrom('BLPOP', 'BRPOP'), key, key, fc.constant('0')),
  fc.tuple(fc.constantFrom('SINTERSTORE', 'SUNIONSTORE', 'SDIFFSTORE'), key, key, key),
  fc.tuple(fc.constantFrom('ZREMRANGEBYRANK'), key, fc.constantFrom('0', '1'), fc.constantFrom('-1', '1')),
  fc.tuple(fc.constantFrom('ZREMRANGEBYSCORE'), key, fc.constantFrom('-inf', '1'), fc.constantFrom('+inf', '(2.5')),
  fc.tuple(fc.constantFrom('ZPOPMAX'), key, fc.constantFrom('1', '2')),
  fc.tuple(fc.constantFrom('EXPIREAT', 'PEXPIREAT'), key, fc.constantFrom('1', '99999999999')),
  fc.tuple(fc.constant('SETRANGE'), key, fc.constantFrom('0', '3'), val),
  fc.tuple(fc.constantFrom('MULTI', 'EXEC', 'DISCARD')),
);

test('replaying the log rebuilds exactly the data set that the commands built', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 60 }), fc.boolean(), async (commands, compactMidway) => {
      const device = new MemoryBlockDevice(1024 * 1024);
      const db = await Database.open(device, noop);
      const ctx = contextFor(db);
      for (let i = 0; i < commands.length; i++) {
        dispatch(ctx, commands[i].map((s) => Buffer.from(s)));
        // Half the runs compact in the middle: replay then starts from a snapshot.
        if (compactMidway && i === commands.length >> 1) await db.writer.compactNow();
      }
      if (ctx.client.tx.active) dispatch(ctx, [Buffer.from('EXEC')]);
      await db.close();
      const reopened = await Database.open(device, noop);
      assert.deepEqual(dump(reopened), dump(db));
      assert.equal(reopened.replaySkipped, 0);
      await reopened.close();
    }),
    { numRuns: 150 },
  );
});
