import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RecordReader, frameRecord, type RecordError } from '../../../src/functions/fileserver/rpc/record-reader.ts';

function collect(max = 1 << 20) {
  const records: Buffer[] = [];
  const errors: Array<[RecordError, string]> = [];
  const reader = new RecordReader({ maxRecordSize: max, onRecord: (r) => records.push(Buffer.from(r)), onError: (c, m) => errors.push([c, m]) });
  return { reader, records, errors };
}

const fragment = (body: Buffer, last: boolean) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(((last ? 0x80000000 : 0) | body.length) >>> 0);
  return Buffer.concat([h, body]);
};

test('records split into fragments and fed in arbitrary chunks come out whole and in order', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 }),
      fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 10 }),
      (records, cuts) => {
        const wire = Buffer.concat(records.flatMap((frags) => frags.map((f, i) => fragment(Buffer.from(f), i === frags.length - 1))));
        const { reader, records: out, errors } = collect();
        let at = 0;
        for (let i = 0; at < wire.length; i++) {
          const n = cuts[i % cuts.length]!;
          reader.push(wire.subarray(at, at + n));
          at += n;
        }
        assert.deepEqual(errors, []);
        assert.deepEqual(out, records.map((frags) => Buffer.concat(frags.map((f) => Buffer.from(f)))));
      },
    ),
  );
});

test('a fragment header that would push the record past the limit fails before its body arrives', () => {
  const { reader, records, errors } = collect(100);
  reader.push(fragment(Buffer.alloc(60), false));
  const h = Buffer.alloc(4);
  h.writeUInt32BE((0x80000000 | 41) >>> 0);
  reader.push(h);
  assert.deepEqual(errors, [['RECORD_TOO_LARGE', 'record of at least 101 bytes exceeds 100']]);
  reader.push(fragment(Buffer.alloc(8), true));
  assert.equal(records.length, 0, 'input after a failure is ignored');
});

test('an empty record is an error, not a call', () => {
  const { reader, errors } = collect();
  reader.push(Buffer.from([0x80, 0, 0, 0]));
  assert.deepEqual(errors, [['EMPTY_FRAGMENT', 'empty record']]);
});

test('frameRecord writes one last fragment that the reader accepts', () => {
  const { reader, records } = collect();
  reader.push(frameRecord(Buffer.from('abcd')));
  assert.deepEqual(records, [Buffer.from('abcd')]);
});
