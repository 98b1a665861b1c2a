import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ByteQueue } from '../../src/nbd/byte-queue.ts';
import { NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE } from '../../src/nbd/protocol.ts';
import { RequestParser, type NbdRequest } from '../../src/nbd/request-parser.ts';
import { request } from './helpers.ts';

type Parsed = Pick<NbdRequest, 'type' | 'offset' | 'length' | 'oversized'> & { cookie: string; payload: string | null };

/** Feed `stream` cut at `cuts`, parsing after every chunk as a socket would. */
function parseInChunks(stream: Buffer, cuts: number[], maxPayload: number): { parsed: Parsed[]; fatal: string | null } {
  const queue = new ByteQueue();
  const parser = new RequestParser(maxPayload);
  const parsed: Parsed[] = [];
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...points, stream.length]) {
    queue.push(stream.subarray(from, to));
    from = to;
    for (;;) {
      const r = parser.next(queue);
      if (r.kind === 'need-more') break;
      if (r.kind === 'fatal') return { parsed, fatal: r.reason };
      const q = r.request;
      parsed.push({
        type: q.type,
        offset: q.offset,
        length: q.length,
        oversized: q.oversized,
        cookie: `${q.cookieHigh}:${q.cookieLow}`,
        payload: q.payload === null ? null : Buffer.from(q.payload).toString('hex'),
      });
    }
  }
  return { parsed, fatal: null };
}

const requestArb = fc.record({
  type: fc.constantFrom(NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_FLUSH),
  cookie: fc.integer({ min: 0, max: 0xffffffff }),
  offset: fc.integer({ min: 0, max: 2 ** 40 }),
  length: fc.integer({ min: 0, max: 96 }),
});

test('however the stream is cut into chunks, the parser yields the same requests', () => {
  fc.assert(
    fc.property(fc.array(requestArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (reqs, cuts) => {
      const parts: Buffer[] = [];
      for (const r of reqs) {
        parts.push(request(r.type, r));
        if (r.type === NBD_CMD_WRITE) parts.push(Buffer.alloc(r.length, r.cookie & 0xff));
      }
      const stream = Buffer.concat(parts);
      const whole = parseInChunks(stream, [], 64);
      const chunked = parseInChunks(stream, cuts, 64);
      assert.equal(whole.fatal, null);
      assert.deepEqual(chunked, whole);
      assert.equal(whole.parsed.length, reqs.length);
      // Writes above the limit are flagged and their payload skipped, not delivered.
      whole.parsed.forEach((p, i) => {
        assert.equal(p.oversized, reqs[i]!.length > 64);
        if (p.type === NBD_CMD_WRITE) assert.equal(p.payload === null, reqs[i]!.length > 64);
      });
    }),
    { numRuns: 300 },
  );
});

test('a bad magic is fatal as soon as the header is complete', () => {
  const stream = Buffer.concat([request(NBD_CMD_FLUSH, { cookie: 1 }), request(NBD_CMD_READ, { magic: 0x12345678 })]);
  const r = parseInChunks(stream, [5, 30, 40], 1024);
  assert.equal(r.parsed.length, 1);
  assert.equal(r.fatal, 'bad request magic 0x12345678');
});

test('an offset beyond 2^53 parses as Infinity so no range check can pass', () => {
  const r = parseInChunks(request(NBD_CMD_READ, { offset: 1n << 60n, length: 1 }), [], 1024);
  assert.equal(r.parsed[0]!.offset, Infinity);
});

test('an oversized WRITE is reported only once its payload has been skipped', () => {
  const queue = new ByteQueue();
  const parser = new RequestParser(16);
  queue.push(request(NBD_CMD_WRITE, { length: 1000 }));
  queue.push(Buffer.alloc(999));
  assert.equal(parser.next(queue).kind, 'need-more');
  assert.equal(queue.length, 0, 'skipped bytes are not kept');
  queue.push(Buffer.alloc(1));
  const r = parser.next(queue);
  assert.equal(r.kind, 'request');
  assert.equal(r.kind === 'request' && r.request.oversized, true);
});
