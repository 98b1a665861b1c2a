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
  // Same-length overwrites (stored in place): the old value a command returns, and replies held by EXEC, keep their bytes.
  s('SET', 'ip', 'aaaa'), s('GETSET', 'ip', 'bbbb'), s('GET', 'ip'), s('SET', 'ip', 'cccc', 'GET'), s('GET', 'ip'),
  s('MULTI'), s('GET', 'ip'), s('MGET', 'ip', 'nokey', 'ip'), s('GETEX', 'ip'), s('SET', 'ip', 'dddd'), s('GET', 'ip'), s('GETSET', 'ip', 'eeee'), s('SET', 'ip', 'ffff'), s('EXEC'),
  s('GET', 'ip'), s('SET', 'ip', 'gggg', 'EX', '100'), s('SET', 'ip', 'hhhh'), s('TTL', 'ip'), s('GET', 'ip'), s('SET', 'ip', 'iiiii'), s('GET', 'ip'),
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
  s('FLUSHDB'), s('DBSIZE'), s('FLUSHDB', 'BAD'), s('KEYS', '*'),
  ...newCommands(),
  s('QUIT'),
];

/** The commands added for issue 10: everyday families, transactions, connection commands, error cases. */
function newCommands(): Step[] {
  return [
    // strings
    s('SETNX', 'sn', 'a'), s('SETNX', 'sn', 'b'), s('GET', 'sn'), s('SETNX', 'sn'),
    s('SETEX', 'se', '100', 'v'), s('TTL', 'se'), s('SETEX', 'se', '0', 'v'), s('SETEX', 'se', '-1', 'v'), s('SETEX', 'se', 'x', 'v'),
    s('PSETEX', 'pe', '100000', 'v'), s('TTL', 'pe'), s('PSETEX', 'pe', '0', 'v'),
    s('GETDEL', 'sn'), s('GETDEL', 'sn'), s('EXISTS', 'sn'), s('LPUSH', 'gl', 'x'), s('GETDEL', 'gl'),
    s('GETEX', 'se'), s('GETEX', 'se', 'PERSIST'), s('TTL', 'se'), s('GETEX', 'se', 'EX', '50'), s('TTL', 'se'),
    s('GETEX', 'se', 'PX', '70000'), s('TTL', 'se'), s('GETEX', 'se', 'EX', '0'), s('GETEX', 'se', 'BAD'),
    s('GETEX', 'se', 'EX', '1', 'PERSIST'), s('GETEX', 'nokey', 'EX', '10'), s('GETEX', 'gl'), s('GETEX', 'se', 'EXAT', '1'), s('EXISTS', 'se'),
    s('MSETNX', 'm1', 'a', 'm2', 'b'), s('MSETNX', 'm2', 'c', 'm3', 'd'), s('MGET', 'm1', 'm2', 'm3'), s('MSETNX', 'm1'),
    s('SET', 'f', '10.5'), s('INCRBYFLOAT', 'f', '0.1'), s('INCRBYFLOAT', 'f', '-5'), s('INCRBYFLOAT', 'f', 'x'),
    s('INCRBYFLOAT', 'nf', '3'), s('INCRBYFLOAT', 'gl', '1'), s('SET', 'f', 'abc'), s('INCRBYFLOAT', 'f', '1'),
    s('SET', 'r', 'Hello World'), s('GETRANGE', 'r', '0', '4'), s('GETRANGE', 'r', '-5', '-1'), s('GETRANGE', 'r', '5', '2'),
    s('GETRANGE', 'r', '0', '100'), s('GETRANGE', 'none', '0', '1'), s('GETRANGE', 'r', 'x', '1'),
    s('SETRANGE', 'r', '6', 'Redis'), s('GET', 'r'), s('SETRANGE', 'r2', '3', 'ab'), s('GET', 'r2'), s('SETRANGE', 'r', '-1', 'x'),
    // keys
    s('SET', 'u1', 'a'), s('SET', 'u2', 'b'), s('UNLINK', 'u1', 'u2', 'u3'), s('EXISTS', 'u1', 'u2'),
    s('SET', 'ea', 'v'), s('EXPIREAT', 'ea', '99999999999'), s('TTL', 'ea') /* far future */, s('EXPIRETIME', 'ea'),
    s('PEXPIREAT', 'ea', '99999999999000'), s('PEXPIRETIME', 'ea'), s('EXPIREAT', 'ea', 'x'), s('EXPIREAT', 'none', '1'),
    s('EXPIREAT', 'ea', '1'), s('EXISTS', 'ea'), s('EXPIRETIME', 'none'), s('SET', 'np', '1'), s('EXPIRETIME', 'np'),
    s('RENAMENX', 'np', 'np2'), s('RENAMENX', 'r', 'np2'), s('RENAMENX', 'none', 'x'), s('TOUCH', 'np2', 'r', 'none'),
    // hashes
    s('HSET', 'hh', 'n', '5', 'f', '1.5', 's', 'abc'), s('HINCRBY', 'hh', 'n', '10'), s('HINCRBY', 'hh', 'new', '-3'),
    s('HINCRBY', 'hh', 's', '1'), s('HINCRBY', 'hh', 'n', 'x'), s('HINCRBY', 'r', 'n', '1'),
    s('HSET', 'hh', 'big', '9223372036854775807'), s('HINCRBY', 'hh', 'big', '1'),
    s('HINCRBYFLOAT', 'hh', 'f', '2.25'), s('HINCRBYFLOAT', 'hh', 's', '1'), s('HINCRBYFLOAT', 'hh', 'f', 'x'), s('HINCRBYFLOAT', 'hh', 'nf', '3'),
    s('HMGET', 'hh', 'n', 'nope', 'f'), s('HMGET', 'none', 'a', 'b'), s('HMGET', 'r', 'a'),
    s('HSETNX', 'hh', 'n', 'x'), s('HSETNX', 'hh', 'n2', 'x'), s('HGET', 'hh', 'n2'), s('HMSET', 'hh', 'a', '1', 'b', '2'),
    s('HMSET', 'hh', 'a'), s('HEXISTS', 'hh', 'a'), s('HEXISTS', 'hh', 'zz'), s('HSTRLEN', 'hh', 's'), s('HSTRLEN', 'hh', 'zz'),
    sorted('HKEYS', 'hh'), sorted('HVALS', 'hh'), s('HKEYS', 'none'),
    // lists
    s('RPUSH', 'll', 'a', 'b', 'c', 'b', 'a', 'b'), s('LINDEX', 'll', '0'), s('LINDEX', 'll', '-1'), s('LINDEX', 'll', '10'),
    s('LINDEX', 'll', 'x'), s('LINDEX', 'none', '0'), s('LINDEX', 'r', '0'),
    s('LREM', 'll', '1', 'b'), s('LRANGE', 'll', '0', '-1'), s('LREM', 'll', '-1', 'b'), s('LRANGE', 'll', '0', '-1'),
    s('LREM', 'll', '0', 'a'), s('LRANGE', 'll', '0', '-1'), s('LREM', 'll', '0', 'zz'), s('LREM', 'll', 'x', 'a'), s('LREM', 'none', '0', 'a'),
    s('RPUSH', 'll', 'd', 'e', 'f'), s('LSET', 'll', '0', 'A'), s('LSET', 'll', '-1', 'F'), s('LSET', 'll', '10', 'x'),
    s('LSET', 'none', '0', 'x'), s('LSET', 'r', '0', 'x'), s('LRANGE', 'll', '0', '-1'),
    s('LINSERT', 'll', 'BEFORE', 'd', 'c2'), s('LINSERT', 'll', 'after', 'F', 'G'), s('LINSERT', 'll', 'BEFORE', 'zz', 'x'),
    s('LINSERT', 'll', 'MIDDLE', 'd', 'x'), s('LINSERT', 'none', 'BEFORE', 'a', 'x'), s('LRANGE', 'll', '0', '-1'),
    s('LTRIM', 'll', '1', '-2'), s('LRANGE', 'll', '0', '-1'), s('LTRIM', 'll', '0', 'x'), s('LTRIM', 'none', '0', '1'),
    s('LTRIM', 'll', '5', '1'), s('EXISTS', 'll'),
    s('LPUSHX', 'll', 'a'), s('RPUSH', 'll', 'm'), s('LPUSHX', 'll', 'a', 'b'), s('RPUSHX', 'll', 'z'), s('LRANGE', 'll', '0', '-1'),
    s('LMOVE', 'll', 'l2', 'LEFT', 'RIGHT'), s('LMOVE', 'll', 'l2', 'RIGHT', 'LEFT'), s('LMOVE', 'll', 'l2', 'UP', 'LEFT'),
    s('LRANGE', 'l2', '0', '-1'), s('LMOVE', 'none', 'l2', 'LEFT', 'LEFT'), s('LMOVE', 'll', 'r', 'LEFT', 'LEFT'),
    s('LMOVE', 'll', 'll', 'LEFT', 'RIGHT'), s('LRANGE', 'll', '0', '-1'), s('RPOPLPUSH', 'l2', 'll'), s('LRANGE', 'll', '0', '-1'),
    s('BLPOP', 'none', 'll', '0'), s('BRPOP', 'll', '1'), s('BLPOP', 'll', 'x'), s('BLPOP', 'll', '-1'), s('BLPOP', 'r', '0'),
    s('BLMOVE', 'l2', 'll', 'LEFT', 'LEFT', '0'), s('RPUSH', 'l2', 'q'), s('BRPOPLPUSH', 'l2', 'll', '0'), s('BLMOVE', 'l2', 'll', 'UP', 'LEFT', '0'),
    // sets
    s('SADD', 's1', 'a', 'b', 'c', 'd'), s('SADD', 's2', 'c', 'd', 'e'), s('SADD', 's3', 'd', 'x'),
    sorted('SINTER', 's1', 's2'), sorted('SINTER', 's1', 's2', 's3'), s('SINTER', 's1', 'none'), sorted('SUNION', 's1', 's2', 'none'),
    sorted('SDIFF', 's1', 's2'), sorted('SDIFF', 's1', 'none', 's3'), s('SDIFF', 'none', 's1'), s('SINTER', 's1', 'r'), s('SUNION', 'r'),
    s('SINTERSTORE', 'dst', 's1', 's2'), sorted('SMEMBERS', 'dst'), s('SUNIONSTORE', 'dst', 's1', 's3'), s('SCARD', 'dst'),
    s('SDIFFSTORE', 'dst', 's1', 's1'), s('EXISTS', 'dst'), s('SET', 'dst2', 'x'), s('SINTERSTORE', 'dst2', 's1', 's2'), s('TYPE', 'dst2'),
    s('SINTERSTORE', 'dst2', 's1', 'r'),
    s('SMOVE', 's1', 's3', 'a'), s('SMOVE', 's1', 's3', 'zz'), s('SMOVE', 'none', 's3', 'a'), s('SMOVE', 's1', 'r', 'b'),
    s('SMOVE', 's1', 's1', 'b'), sorted('SMEMBERS', 's3'), s('SMISMEMBER', 's1', 'b', 'a', 'zz'), s('SMISMEMBER', 'none', 'a'),
    [['SRANDMEMBER', 's1'], 'shape'], [['SRANDMEMBER', 's1', '2'], 'shape'], [['SRANDMEMBER', 's1', '-5'], 'shape'],
    sorted('SRANDMEMBER', 's1', '100'), s('SRANDMEMBER', 'none'), s('SRANDMEMBER', 'none', '3'), s('SRANDMEMBER', 's1', 'x'),
    // sorted sets
    s('ZADD', 'zz', '1', 'a', '2', 'b', '3', 'c', '4', 'd', '5', 'e'), s('ZREM', 'zz', 'a', 'nope'), s('ZREM', 'none', 'a'), s('ZREM', 'r', 'a'),
    s('ZRANGEBYSCORE', 'zz', '2', '4'), s('ZRANGEBYSCORE', 'zz', '(2', '4', 'WITHSCORES'), s('ZRANGEBYSCORE', 'zz', '-inf', '+inf', 'LIMIT', '1', '2'),
    s('ZRANGEBYSCORE', 'zz', '-inf', '+inf', 'LIMIT', '1', '-1'), s('ZRANGEBYSCORE', 'zz', '-inf', '+inf', 'LIMIT', '-1', '2'),
    s('ZRANGEBYSCORE', 'zz', 'a', 'b'), s('ZRANGEBYSCORE', 'zz', '0', '1', 'LIMIT', '0'), s('ZRANGEBYSCORE', 'zz', '5', '2'),
    s('ZREVRANGEBYSCORE', 'zz', '4', '2'), s('ZREVRANGEBYSCORE', 'zz', '+inf', '(3', 'WITHSCORES', 'LIMIT', '0', '1'),
    s('ZREVRANGE', 'zz', '0', '-1'), s('ZREVRANGE', 'zz', '0', '1', 'WITHSCORES'), s('ZREVRANGE', 'zz', '0', '1', 'x'),
    s('ZRANGE', 'zz', '4', '2', 'BYSCORE', 'REV', 'WITHSCORES'), s('ZRANGE', 'zz', '0', '-1', 'REV', 'WITHSCORES'),
    s('ZRANK', 'zz', 'c'), s('ZRANK', 'zz', 'nope'), s('ZRANK', 'none', 'a'), s('ZREVRANK', 'zz', 'c'), s('ZRANK', 'zz'),
    s('ZINCRBY', 'zz', '2.5', 'b'), s('ZINCRBY', 'zz', '1', 'new'), s('ZINCRBY', 'zz', 'x', 'b'), s('ZINCRBY', 'r', '1', 'b'),
    s('ZRANGE', 'zz', '0', '-1', 'WITHSCORES'), s('ZCOUNT', 'zz', '2', '4'), s('ZCOUNT', 'zz', '(1', '+inf'), s('ZCOUNT', 'zz', 'x', '1'),
    s('ZCOUNT', 'none', '0', '1'), s('ZMSCORE', 'zz', 'b', 'nope'), s('ZPOPMAX', 'zz'), s('ZPOPMAX', 'zz', '2'), s('ZPOPMAX', 'none'),
    s('ZADD', 'zr', '1', 'a', '2', 'b', '3', 'c', '4', 'd'), s('ZREMRANGEBYRANK', 'zr', '0', '1'), s('ZRANGE', 'zr', '0', '-1'),
    s('ZREMRANGEBYSCORE', 'zr', '(3', '+inf'), s('ZRANGE', 'zr', '0', '-1'), s('ZREMRANGEBYSCORE', 'zr', 'x', '1'), s('ZREMRANGEBYRANK', 'zr', '0', '-1'),
    s('EXISTS', 'zr'),
    // transactions
    s('MULTI'), s('SET', 'tx', '1'), s('INCR', 'tx'), s('LPUSH', 'tx', 'x'), s('GET', 'tx'), s('EXEC'),
    s('MULTI'), s('MULTI'), s('WATCH', 'tx'), s('DISCARD'), s('GET', 'tx'),
    s('EXEC'), s('DISCARD'),
    s('MULTI'), s('SET', 'tx', '5'), s('NOSUCH'), s('EXEC'), s('GET', 'tx'),
    s('MULTI'), s('SET', 'tx'), s('EXEC'),
    s('WATCH', 'tx'), s('SET', 'tx', '6'), s('MULTI'), s('SET', 'tx', '7'), s('EXEC'), s('GET', 'tx'),
    s('WATCH', 'tx'), s('MULTI'), s('SET', 'tx', '8'), s('EXEC'), s('GET', 'tx'),
    s('WATCH', 'tx'), s('UNWATCH'), s('SET', 'tx', '9'), s('MULTI'), s('GET', 'tx'), s('EXEC'),
    s('WATCH', 'nokey'), s('MULTI'), s('PING'), s('EXEC'),
    s('MULTI'), s('BLPOP', 'nolist', '0'), s('EXEC'),
    // connection
    s('CLIENT', 'SETNAME', 'conn1'), s('CLIENT', 'GETNAME'), s('CLIENT', 'SETNAME', 'a b'), s('CLIENT', 'BOGUS'),
    s('CLIENT', 'SETNAME', ''), s('CLIENT', 'GETNAME'), [['CLIENT', 'ID'], 'shape'], [['HELLO', '2'], 'shape'],
    s('HELLO', 'x'), s('HELLO', '4'), s('HELLO', '2', 'BOGUS'),
    // pub/sub on one connection (messages between clients: compare.test.ts)
    s('PUBLISH', 'chan', 'msg'), s('SUBSCRIBE', 'c1'), s('PING'), s('PING', 'x'), s('GET', 'a'), s('UNSUBSCRIBE', 'c1'),
    s('UNSUBSCRIBE'), s('PSUBSCRIBE', 'p*'), s('PUNSUBSCRIBE', 'p*'), s('PUNSUBSCRIBE'), s('PING'), s('RESET'),
  ];
}

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

