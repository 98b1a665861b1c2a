import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RespClient, startDatabase } from './helpers.ts';

/** Send raw bytes, collect the replies up to close. */
async function rawExchange(port: number, data: string | Buffer): Promise<string> {
  const c = await RespClient.connect(port);
  let got = '';
  c.socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  c.writeRaw(data);
  await c.closed;
  return got;
}

test('malformed multibulk input gets the Redis protocol error and a closed connection', async (t) => {
  const { port } = await startDatabase(t);
  assert.equal(await rawExchange(port, '*1\r\n:x\r\n'), "-ERR Protocol error: expected '$', got ':'\r\n");
  assert.equal(await rawExchange(port, '*zz\r\n'), '-ERR Protocol error: invalid multibulk length\r\n');
});

test('replies to commands before a protocol error are sent before the error', async (t) => {
  const { port } = await startDatabase(t);
  assert.equal(await rawExchange(port, 'PING\r\n*1\r\n$-7\r\n'), '+PONG\r\n-ERR Protocol error: invalid bulk length\r\n');
});

test('a huge bulk length is refused at its header, with nothing buffered', async (t) => {
  const { port } = await startDatabase(t, { maxBulkLength: 1024 * 1024 });
  assert.equal(await rawExchange(port, '*2\r\n$3\r\nSET\r\n$2000000000\r\n'), '-ERR Protocol error: invalid bulk length\r\n');
});

test('a bulk just under the configured limit is accepted', async (t) => {
  const { port } = await startDatabase(t, { maxBulkLength: 64 * 1024 });
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  assert.deepEqual(await c.call('SET', 'big', 'b'.repeat(64 * 1024)), { status: 'OK' });
  assert.deepEqual(await c.call('STRLEN', 'big'), 64 * 1024);
});

test('binary keys and values with CR, LF and NUL bytes round-trip unchanged', async (t) => {
  const { port } = await startDatabase(t);
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  const key = Buffer.from([0, 0x0d, 0x0a, 0xff, 0x2a]);
  const value = Buffer.from([0x24, 0x0d, 0x0a, 0, 0x80]);
  assert.deepEqual(await c.call('SET', key, value), { status: 'OK' });
  assert.deepEqual(await c.call('GET', key), value.toString('latin1'));
  assert.deepEqual(await c.call('KEYS', '*'), [key.toString('latin1')]);
  assert.deepEqual(await c.call('HSET', 'h', key, value), 1);
  assert.deepEqual(await c.call('HGETALL', 'h'), [key.toString('latin1'), value.toString('latin1')]);
});

test('a client that disconnects mid-command leaves other clients and the data untouched', async (t) => {
  const { port } = await startDatabase(t);
  const other = await RespClient.connect(port);
  t.after(() => other.close());
  assert.deepEqual(await other.call('SET', 'stable', '1'), { status: 'OK' });
  const quitter = await RespClient.connect(port);
  quitter.writeRaw('*3\r\n$3\r\nSET\r\n$6\r\nstable\r\n$10\r\nhal');
  quitter.close();
  await quitter.closed;
  assert.deepEqual(await other.call('GET', 'stable'), '1');
  assert.deepEqual(await other.call('DBSIZE'), 1);
});

test('QUIT answers OK and closes the connection, ignoring what follows', async (t) => {
  const { port } = await startDatabase(t);
  assert.equal(await rawExchange(port, 'QUIT\r\nSET after quit\r\n'), '+OK\r\n');
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  assert.deepEqual(await c.call('EXISTS', 'after'), 0);
});

test('inline commands work like redis-benchmark PING_INLINE sends them', async (t) => {
  const { port } = await startDatabase(t);
  const c = await RespClient.connect(port);
  t.after(() => c.close());
  c.writeRaw('PING\r\nPING\r\n');
  assert.deepEqual([await c.read(), await c.read()], [{ status: 'PONG' }, { status: 'PONG' }]);
});
