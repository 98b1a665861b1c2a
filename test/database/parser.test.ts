import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RespParser, splitInlineArgs } from '../../src/functions/database/resp/parser.ts';
import { encodeCommand } from './helpers.ts';

function parseAll(chunks: (string | Buffer)[], maxBulkLength?: number): { commands: string[][]; errors: string[] } {
  const commands: string[][] = [];
  const errors: string[] = [];
  const p = new RespParser(
    { onCommand: (args) => commands.push(args.map((a) => a.toString('latin1'))), onError: (m) => errors.push(m) },
    { maxBulkLength },
  );
  for (const c of chunks) p.feed(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  return { commands, errors };
}

test('a multibulk command split into single bytes parses to the same arguments', () => {
  const wire = encodeCommand(['SET', 'key', 'va\r\nlue']);
  const chunks = [...wire].map((b) => Buffer.from([b]));
  assert.deepEqual(parseAll(chunks), { commands: [['SET', 'key', 'va\r\nlue']], errors: [] });
});

test('pipelined commands in one chunk all parse, in order', () => {
  const wire = Buffer.concat([encodeCommand(['PING']), encodeCommand(['GET', 'a']), Buffer.from('ECHO x\r\n')]);
  assert.deepEqual(parseAll([wire]).commands, [['PING'], ['GET', 'a'], ['ECHO', 'x']]);
});

test('any command split at any points parses back to its arguments', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (args, cuts) => {
        const wire = encodeCommand(args.map((a) => Buffer.from(a)));
        const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let last = 0;
        for (const p of points) {
          chunks.push(wire.subarray(last, p));
          last = p;
        }
        chunks.push(wire.subarray(last));
        const got: Buffer[][] = [];
        // The parser reuses its argument array: keep a copy.
        const parser = new RespParser({ onCommand: (a) => got.push([...a]), onError: (m) => assert.fail(m) });
        for (const c of chunks) parser.feed(c);
        assert.equal(got.length, 1);
        assert.deepEqual(got[0].map((b) => [...b]), args.map((a) => [...a]));
      },
    ),
    { numRuns: 300 },
  );
});

test('inline commands split on spaces and honour quotes and escapes', () => {
  assert.deepEqual(parseAll(['SET  "a b" \'c\\\'d\' "\\x41\\n"\r\n']).commands, [['SET', 'a b', "c'd", 'A\n']]);
  assert.deepEqual(parseAll(['\r\n', 'PING\n']).commands, [['PING']]);
});

test('an inline command with unbalanced quotes is a protocol error', () => {
  assert.deepEqual(parseAll(['SET "abc\r\n']).errors, ['Protocol error: unbalanced quotes in request']);
  assert.equal(splitInlineArgs(Buffer.from('"a"b')), null);
});

test('a multibulk length that is not a number is rejected with the Redis text', () => {
  assert.deepEqual(parseAll(['*abc\r\n']).errors, ['Protocol error: invalid multibulk length']);
});

test('a multibulk length above 1048576 is rejected before any element arrives', () => {
  assert.deepEqual(parseAll(['*1048577\r\n']).errors, ['Protocol error: invalid multibulk length']);
  assert.deepEqual(parseAll(['*1048576\r\n']).errors, []);
});

test('a bulk header without a dollar names the byte it got', () => {
  assert.deepEqual(parseAll(['*1\r\n:3\r\n']).errors, ["Protocol error: expected '$', got ':'"]);
});

test('a negative or too large bulk length is rejected as soon as its header arrives', () => {
  assert.deepEqual(parseAll(['*1\r\n$-3\r\n']).errors, ['Protocol error: invalid bulk length']);
  assert.deepEqual(parseAll(['*1\r\n$536870913\r\n']).errors, ['Protocol error: invalid bulk length']);
  assert.deepEqual(parseAll(['*1\r\n$1025\r\n'], 1024).errors, ['Protocol error: invalid bulk length']);
});

test('an inline request longer than 64 KiB without a newline is rejected while it streams', () => {
  const { errors } = parseAll(['A'.repeat(40_000), 'B'.repeat(40_000)]);
  assert.deepEqual(errors, ['Protocol error: too big inline request']);
});

test('a count line longer than 64 KiB is rejected while it streams', () => {
  assert.deepEqual(parseAll(['*' + '1'.repeat(70_000)]).errors, ['Protocol error: too big mbulk count string']);
});

test('after a protocol error the parser ignores everything else', () => {
  const { commands, errors } = parseAll(['*x\r\n', encodeCommand(['PING'])]);
  assert.deepEqual([commands, errors], [[], ['Protocol error: invalid multibulk length']]);
});

test('empty multibulk requests are skipped as Redis skips them', () => {
  assert.deepEqual(parseAll(['*0\r\n*-1\r\n', encodeCommand(['PING'])]).commands, [['PING']]);
});

test('commands parsed in place from one chunk and those collected across chunks give the same arguments', () => {
  const cmds = [['SET', 'k', 'v'], ['GET', 'k'], ['MSET', 'a', '', 'b', 'x'.repeat(300)], ['PING']];
  const wire = Buffer.concat(cmds.map((c) => encodeCommand(c)));
  const whole = parseAll([wire]);
  const split = parseAll([...wire].map((b) => Buffer.from([b])));
  assert.deepEqual(whole, { commands: cmds, errors: [] });
  assert.deepEqual(split, whole);
});

test('a request with a leading zero or a sign in a length, whole in one chunk, still gets the Redis error', () => {
  assert.deepEqual(parseAll(['*01\r\n$4\r\nPING\r\n']).errors, ['Protocol error: invalid multibulk length']);
  assert.deepEqual(parseAll(['*1\r\n$04\r\nPING\r\n']).errors, ['Protocol error: invalid bulk length']);
  assert.deepEqual(parseAll(['*1\r\n$+4\r\nPING\r\n']).errors, ['Protocol error: invalid bulk length']);
});

test('a pipeline of one command hands its name as one Buffer with the name bytes, whatever the case of a later one', () => {
  const names: Buffer[] = [];
  const p = new RespParser({ onCommand: (args) => names.push(args[0]!), onError: (m) => assert.fail(m) });
  p.feed(Buffer.concat(['GET', 'GET', 'GET', 'get', 'GET'].map((n, i) => encodeCommand([n, `k${i}`]))));
  assert.deepEqual(names.map((n) => n.toString('latin1')), ['GET', 'GET', 'GET', 'get', 'GET']);
  assert.equal(names[1], names[2]);
  assert.notEqual(names[2], names[3]);
});

test('the argument array of a whole command holds no view of the chunk once the command returned', () => {
  let kept: Buffer[] = [];
  const seen: string[][] = [];
  const p = new RespParser({
    onCommand: (args) => {
      seen.push(args.map((a) => a.toString('latin1')));
      kept = args;
    },
    onError: (m) => assert.fail(m),
  });
  p.feed(Buffer.concat([encodeCommand(['SET', 'k', 'v1']), encodeCommand(['SET', 'k2', 'v2'])]));
  assert.deepEqual(seen, [['SET', 'k', 'v1'], ['SET', 'k2', 'v2']]);
  assert.equal(kept.length, 3);
  for (const a of kept.slice(1)) assert.equal(a.length, 0);
});
