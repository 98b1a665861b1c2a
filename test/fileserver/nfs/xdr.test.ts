import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isGarbageArgs, XdrDecoder, XdrEncoder } from '../../../src/functions/fileserver/rpc/xdr.ts';

test('values written by the encoder read back identically, with opaque data padded to 4 bytes', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.uint8Array({ maxLength: 70 }), fc.string(), (u, big, bytes, s) => {
      const e = new XdrEncoder(8);
      e.u32(u).u64(big).opaque(bytes).string(s).bool(true);
      const buf = e.take();
      assert.equal(buf.length % 4, 0);
      const d = new XdrDecoder(buf);
      assert.equal(d.u32(), u);
      assert.equal(d.u64(), big);
      assert.deepEqual(new Uint8Array(d.opaque(100)), bytes);
      assert.equal(d.string(1 << 20), s);
      assert.equal(d.bool(), true);
      assert.equal(d.remaining, 0);
    }),
  );
});

test('padding bytes written by the encoder are zero even when the scratch buffer is reused', () => {
  const e = new XdrEncoder();
  e.fixed(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  e.reset().opaque(Buffer.from([1]));
  assert.deepEqual([...e.take()], [0, 0, 0, 1, 1, 0, 0, 0]);
});

test('the encoder grows past its initial size without losing earlier bytes', () => {
  const e = new XdrEncoder(4);
  for (let i = 0; i < 5000; i++) e.u32(i);
  const d = new XdrDecoder(e.take());
  for (let i = 0; i < 5000; i++) assert.equal(d.u32(), i);
});

test('every decoder failure is garbageArgs (SV_ERR_RPC_GARBAGE_ARGS): short input, over-long opaque, bad bool, bad enum, bad UTF-8', () => {
  const cases: Array<[string, Buffer, (d: XdrDecoder) => unknown, RegExp]> = [
    ['short u32', Buffer.from([0, 0, 1]), (d) => d.u32(), /need 4 bytes at 0, have 3/],
    ['short u64', Buffer.alloc(4), (d) => d.u64(), /need 8 bytes/],
    ['opaque over max', Buffer.from([0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0]), (d) => d.opaque(8), /opaque of 9 bytes exceeds 8/],
    ['opaque longer than the record', Buffer.from([0, 0, 0, 8, 1, 2, 3, 4]), (d) => d.opaque(64), /need 8 bytes at 4, have 4/],
    ['missing padding', Buffer.from([0, 0, 0, 1, 7]), (d) => d.opaque(64), /need 4 bytes at 4, have 1/],
    ['bool of 2', Buffer.from([0, 0, 0, 2]), (d) => d.bool(), /bool is 2/],
    ['enum outside its set', Buffer.from([0, 0, 0, 3]), (d) => d.enumOf([0, 1, 2]), /enum value 3 not allowed/],
    ['invalid UTF-8', Buffer.from([0, 0, 0, 2, 0xc3, 0x28, 0, 0]), (d) => d.string(64), /string is not UTF-8/],
  ];
  for (const [name, buf, read, message] of cases) {
    assert.throws(() => read(new XdrDecoder(buf)), (err: unknown) => isGarbageArgs(err) && message.test(err.message), name);
  }
});
