/**
 * The command script both comparison tests run against storvisor and redis-server
 * (compare.test.ts with the tests' own RESP client, ioredis.test.ts with ioredis),
 * and how replies that Redis itself does not make deterministic are normalised.
 */
import type { Value } from './helpers.ts';

export type Normalise = 'sorted' | 'shape' | 'pttl';
type Step = [args: string[], normalise?: Normalise];

const s = (...args: string[]): Step => [args];
const sorted = (...args: string[]): Step => [args, 'sorted'];

export const script: Step[] = [
  // connection and server
  s('PING'), s('PING', 'hello'), s('PING', 'a', 'b'), s('ECHO', 'hi'), s('ECHO'),
  s('SELECT', '0'), s('SELECT', 'x'), s('NOSUCH', 'a', 'b'), s('nosuch'), s('CONFIG', 'GET'), s('CONFIG', 'NOPE'),
  s('CONFIG', 'GET', 'save'),
  // strings
  s('SET', 'k', 'v'), s('GET', 'k'), s('GET', 'missing'), s('GET'), s('SET', 'k'),
  s('SET', 'k', 'v2', 'NX'), s('SET', 'k', 'v3', 'XX'), s('GET', 'k'), s('SET', 'n', '1', 'XX'), s('GET', 'n'),
  s('SET', 'k', 'v', 'NX', 'XX'), s('SET', 'k', 'v', 'EX'), s('SET', 'k', 'v', 'EX', 'abc'), s('SET', 'k', 'v', 'EX', '0'),
  s('SET', 'k', 'v', 'PX', '-5'), s('SET', 'k', 'v', 'EX', '10', 'PX', '10'), s('SET', 'k', 'v', 'BOGUS'),
  s('SET', 'k', 'v4', 'GET'), s('SET', 'k', 'v5', 'EX', '100'), s('TTL', 'k'), s('SET', 'k', 'v6', 'KEEPTTL'), s('TTL', 'k'),
  s('SET', 'k', 'v7'), s('TTL', 'k'), s('GETSET', 'k', 'v8'), s('GETSET', 'nokey', 'x'), s('GET', 'nokey'),
  s('MSET', 'a', '1', 'b', '2', 'c', '3'), s('MSET', 'a', '1', 'b'), s('MGET', 'a', 'b', 'zz', 'c'),
  s('INCR', 'a'), s('INCRBY', 'a', '10'), s('DECR', 'a'), s('DECRBY', 'a', '5'), s('INCR', 'fresh'), s('DECR', 'fresh2'),
  s('INCRBY', 'a', 'x'), s('INCRBY', 'a', '01'), s('INCR', 'k'), s('SET', 'big', '9223372036854775807'), s('INCR', 'big'),
  s('DECRBY', 'a', '-9223372036854775808'), s('SET', 'sp', ' 1'), s('INCR', 'sp'),
  s('APPEND', 'ap', 'hello'), s('APPEND', 'ap', ' world'), s('GET', 'ap'), s('STRLEN', 'ap'), s('STRLEN', 'none'),
  // keys
  s('EXISTS', 'a', 'a', 'none', 'b'), s('DEL', 'a', 'none', 'a'), s('EXISTS', 'a'), s('TYPE', 'b'), s('TYPE', 'none'),
  s('EXPIRE', 'b', '100'), s('TTL', 'b'), [['PTTL', 'b'], 'pttl'], s('PERSIST', 'b'), s('PERSIST', 'b'), s('TTL', 'b'),
  s('TTL', 'none'), s('PTTL', 'none'), s('EXPIRE', 'none', '10'), s('EXPIRE', 'b', 'x'), s('EXPIRE', 'b', '10', 'BAD'),
  s('EXPIRE', 'b', '10', 'NX', 'XX'), s('EXPIRE', 'b', '10', 'GT', 'LT'), s('EXPIRE', 'b', '50', 'XX'), s('EXPIRE', 'b', '50', 'NX'),
  s('EXPIRE', 'b', '40', 'GT'), s('TTL', 'b'), s('EXPIRE', 'b', '60', 'GT'), s('TTL', 'b'), s('EXPIRE', 'b', '30', 'LT'), s('TTL', 'b'),
  s('PEXPIRE', 'b', '100000'), s('TTL', 'b'), s('EXPIRE', 'b', '-1'), s('EXISTS', 'b'),
  s('RENAME', 'c', 'c2'), s('GET', 'c2'), s('GET', 'c'), s('RENAME', 'none', 'x'), s('RENAME', 'c2', 'c2'),
  sorted('KEYS', '*'), sorted('KEYS', 'a*'), sorted('KEYS', '?p'), sorted('KEYS', '[ab]*'), s('DBSIZE'),
  // lists
  s('LPUSH', 'l', 'a', 'b', 'c'), s('RPUSH', 'l', 'd', 'e'), s('LRANGE', 'l', '0', '-1'), s('LRANGE', 'l', '1', '2'),
  s('LRANGE', 'l', '-2', '100'), s('LRANGE', 'l', '5', '10'), s('LRANGE', 'l', '3', '1'), s('LRANGE', 'l', 'a', '1'),
  s('LLEN', 'l'), s('LLEN', 'none'), s('LPOP', 'l'), s('RPOP', 'l'), s('LPOP', 'l', '2'), s('LPOP', 'l', '0'),
  s('LPOP', 'l', '-1'), s('LPOP', 'none'), s('LPOP', 'none', '2'), s('RPOP', 'l', '5'), s('EXISTS', 'l'),
  s('LPUSH', 'k', 'x'), s('LRANGE', 'k', '0', '1'), s('LPOP', 'k'), s('LPOP', 'l', '1', '2'), s('LPUSH', 'l'),
  // hashes
  s('HSET', 'h', 'f1', 'v1', 'f2', 'v2'), s('HSET', 'h', 'f1', 'v9', 'f3', 'v3'), s('HSET', 'h', 'f1'),
  s('HGET', 'h', 'f1'), s('HGET', 'h', 'nof'), s('HGET', 'none', 'f'), s('HGETALL', 'h'), s('HGETALL', 'none'),
  s('HLEN', 'h'), s('HDEL', 'h', 'f1', 'nof'), s('HLEN', 'h'), s('HDEL', 'h', 'f2', 'f3'), s('EXISTS', 'h'),
  s('HSET', 'k', 'f', 'v'), s('HGET', 'k', 'f'),
  // sets
  s('SADD', 'st', 'x', 'y', 'z', 'x'), s('SADD', 'st', 'x'), sorted('SMEMBERS', 'st'), s('SISMEMBER', 'st', 'y'),
  s('SISMEMBER', 'st', 'q'), s('SCARD', 'st'), s('SREM', 'st', 'y', 'q'), s('SCARD', 'st'), s('SMEMBERS', 'none'),
  [['SPOP', 'st'], 'shape'], s('SCARD', 'st'), [['SPOP', 'st', '5'], 'shape'], s('EXISTS', 'st'), s('SPOP', 'none'),
  s('SPOP', 'none', '3'), s('SPOP', 'st', '-1'), s('SADD', 'k', 'm'), s('SCARD', 'k'),
  // sorted sets
  s('ZADD', 'z', '1', 'a', '2', 'b', '1.5', 'c'), s('ZADD', 'z', '1.1', 'd', '-inf', 'e', '+inf', 'f'),
  s('ZRANGE', 'z', '0', '-1', 'WITHSCORES'), s('ZRANGE', 'z', '1', '2'), s('ZRANGE', 'z', '0', '-1', 'REV'),
  s('ZRANGE', 'z', '(1', '2', 'BYSCORE', 'WITHSCORES'), s('ZRANGE', 'z', '-inf', '+inf', 'BYSCORE', 'LIMIT', '1', '2'),
  s('ZRANGE', 'z', '0', '1', 'LIMIT', '0', '1'), s('ZRANGE', 'z', '0', '-1', 'BOGUS'),
  s('ZADD', 'z', 'NX', '5', 'a', '6', 'g'), s('ZADD', 'z', 'XX', 'CH', '7', 'a', '8', 'h'), s('ZADD', 'z', 'GT', 'CH', '1', 'a'),
  s('ZADD', 'z', 'LT', 'CH', '1', 'a'), s('ZADD', 'z', 'INCR', '2.5', 'a'), s('ZADD', 'z', 'INCR', 'NX', '1', 'a'),
  s('ZADD', 'z', 'NX', 'XX', '1', 'a'), s('ZADD', 'z', 'GT', 'LT', '1', 'a'), s('ZADD', 'z', 'INCR', '1', 'a', '2', 'b'),
  s('ZADD', 'z', 'x', 'a'), s('ZADD', 'z', '1'), s('ZADD', 'z', 'nan', 'a'),
  s('ZSCORE', 'z', 'a'), s('ZSCORE', 'z', 'none'), s('ZSCORE', 'z', 'c'), s('ZCARD', 'z'), s('ZCARD', 'none'),
  s('ZADD', 'z2', '0.1', 'x', '1e-7', 'y', '123456789012345678', 'w'), s('ZRANGE', 'z2', '0', '-1', 'WITHSCORES'),
  s('ZPOPMIN', 'z'), s('ZPOPMIN', 'z', '2'), s('ZPOPMIN', 'z', '0'), s('ZPOPMIN', 'z', '-1'), s('ZPOPMIN', 'none'),
  s('ZPOPMIN', 'z', '100'), s('EXISTS', 'z'), s('ZADD', 'k', '1', 'm'), s('ZSCORE', 'k', 'm'),
  // scan and flush
  sorted('SCAN', '0', 'COUNT', '1000'), s('SCAN', 'x'), s('SCAN', '0', 'COUNT', '0'), s('SCAN', '0', 'BOGUS', '1'),
  sorted('SCAN', '0', 'MATCH', 'a*', 'COUNT', '1000'), sorted('SCAN', '0', 'TYPE', 'hash', 'COUNT', '1000'),
  s('FLUSHDB'), s('DBSIZE'), s('FLUSHDB', 'BAD'), s('KEYS', '*'), s('QUIT'),
];

export function normalise(v: Value, how: Normalise | undefined): Value {
  if (how === 'sorted' && Array.isArray(v)) {
    // SCAN replies [cursor, keys]: the cursor differs, the keys must not.
    if (v.length === 2 && typeof v[0] === 'string' && Array.isArray(v[1])) return ['<cursor>', [...v[1]].sort()];
    return [...v].sort();
  }
  if (how === 'shape') return Array.isArray(v) ? `array of ${v.length}` : typeof v;
  if (how === 'pttl' && typeof v === 'number') return v > 95_000 && v <= 100_000 ? 'about 100s' : v;
  return v;
}

