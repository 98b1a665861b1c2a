/**
 * The RESP server reads every client's input into one shared buffer, which the
 * next read overwrites (TcpServiceOptions.readBuffer, issue #10). Whatever
 * outlives the read that brought it (a request split across reads, input kept
 * while a client is stopped, a MULTI queue, a long argument echoed back by
 * reference) must be a copy. Each test overwrites the buffer between the read
 * that brought the bytes and their use.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { RespParser } from '../../src/functions/database/resp/parser.ts';
import { ReplyWriter, SMALL_BULK, markTransient, type Slab } from '../../src/functions/database/resp/writer.ts';
import { RespClient, encodeCommand, startDatabase } from './helpers.ts';

/** A parser fed from one reused buffer, as the server's: returns the commands it produced (copied at once). */
function transientParser(stopAfter = Infinity) {
  const commands: string[][] = [];
  const errors: string[] = [];
  const parser = new RespParser(
    {
      onCommand: (args) => {
        commands.push(args.map((a) => a.toString('latin1')));
        return commands.length < stopAfter;
      },
      onError: (m) => errors.push(m),
    },
    { transient: true },
  );
  const shared = Buffer.alloc(256);
  const feed = (bytes: Buffer) => {
    bytes.copy(shared, 0);
    parser.feed(shared.subarray(0, bytes.length));
    shared.fill(0x5a); // the next read
  };
  return { parser, feed, commands, errors };
}

test('a request split inside a bulk across two reads of the shared buffer keeps the first part', () => {
  const { feed, commands, errors } = transientParser();
  const whole = encodeCommand(['SET', 'key', 'hello world']);
  feed(whole.subarray(0, whole.length - 6));
  feed(whole.subarray(whole.length - 6));
  assert.deepEqual(errors, []);
  assert.deepEqual(commands, [['SET', 'key', 'hello world']]);
});

test('a request split inside a header line across reads keeps the line so far', () => {
  const { feed, commands } = transientParser();
  const whole = encodeCommand(['SET', 'k', 'x'.repeat(123)]);
  const cut = whole.indexOf('$123') + 2;
  feed(whole.subarray(0, cut));
  feed(whole.subarray(cut));
  assert.deepEqual(commands, [['SET', 'k', 'x'.repeat(123)]]);
});

test('arguments of an unfinished request survive the read buffer being overwritten', () => {
  const { feed, commands } = transientParser();
  const whole = encodeCommand(['MSET', 'a', 'first', 'b', 'second']);
  const cut = whole.indexOf('second') - 4; // after "first" and b's header: two whole arguments kept
  feed(whole.subarray(0, cut));
  feed(whole.subarray(cut));
  assert.deepEqual(commands, [['MSET', 'a', 'first', 'b', 'second']]);
});

test('input kept while the parser is stopped survives the read buffer being overwritten', () => {
  const { parser, feed, commands } = transientParser(1);
  feed(Buffer.concat([encodeCommand(['SET', 'a', '1']), encodeCommand(['SET', 'b', '2'])]));
  feed(encodeCommand(['GET', 'c']));
  assert.equal(commands.length, 1);
  parser.resume();
  assert.deepEqual(commands, [['SET', 'a', '1'], ['SET', 'b', '2']]);
  parser.resume();
  parser.resume();
  assert.deepEqual(commands.at(-1), ['GET', 'c']);
});

test('a long bulk reply that is a view of the read buffer is copied, not held until written', () => {
  const read = Buffer.alloc(SMALL_BULK * 2, 0x61);
  markTransient(read);
  const w = new ReplyWriter();
  w.write(read.subarray(0, SMALL_BULK + 1));
  const parts: Buffer[] = [];
  const owners: (Slab | null)[] = [];
  w.take(parts, owners);
  read.fill(0x7a); // the next read
  const sent = Buffer.concat(parts).toString('latin1');
  assert.equal(sent, `$${SMALL_BULK + 1}\r\n${'a'.repeat(SMALL_BULK + 1)}\r\n`);
  for (const o of owners) o?.release();
});

/** A database and two clients of it (closed after the test). */
async function twoClients(t: TestContext): Promise<[RespClient, RespClient]> {
  const { port } = await startDatabase(t);
  const clients: [RespClient, RespClient] = [await RespClient.connect(port), await RespClient.connect(port)];
  t.after(() => clients.forEach((c) => c.close()));
  return clients;
}

test('a request split across reads while other clients read into the same buffer is stored intact', async (t) => {
  const [slow, busy] = await twoClients(t);
  const value = Buffer.alloc(3000, 0x62);
  const whole = encodeCommand(['SET', 'split', value]);
  slow.writeRaw(whole.subarray(0, 1500));
  // Another client's reads overwrite the shared buffer while the first request is half there.
  assert.deepEqual(await busy.call('SET', 'other', Buffer.alloc(3000, 0x63)), { status: 'OK' });
  assert.deepEqual(await busy.call('PING'), { status: 'PONG' });
  slow.writeRaw(whole.subarray(1500));
  assert.deepEqual(await slow.read(), { status: 'OK' });
  const got = await busy.call('GET', 'split');
  assert.equal(got, value.toString('latin1'));
});

test('a MULTI queue keeps its arguments after later reads overwrite the shared buffer', async (t) => {
  const [c, other] = await twoClients(t);
  assert.deepEqual(await c.call('MULTI'), { status: 'OK' });
  assert.deepEqual(await c.call('SET', 'queued', 'kept-value'), { status: 'QUEUED' });
  assert.deepEqual(await other.call('SET', 'noise', 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz'), { status: 'OK' });
  assert.deepEqual(await c.call('EXEC'), [{ status: 'OK' }]);
  assert.equal(await c.call('GET', 'queued'), 'kept-value');
});
