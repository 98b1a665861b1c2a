/**
 * ONC RPC record marking over TCP (RFC 5531 §11): each record is one or more
 * fragments, each preceded by a 4-byte mark (high bit = last fragment, low 31
 * bits = fragment length). An incremental state machine over socket chunks:
 * it keeps at most one record's bytes, enforces `maxRecordSize` when a fragment
 * header arrives (before any of its body is buffered), and fails through one
 * callback, after which it ignores all further input.
 */

export type RecordError = 'RECORD_TOO_LARGE' | 'EMPTY_FRAGMENT';

export interface RecordReaderOptions {
  maxRecordSize: number;
  onRecord: (record: Buffer) => void;
  onError: (code: RecordError, message: string) => void;
}

const LAST_FRAGMENT = 0x80000000;

export class RecordReader {
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;
  /** Bytes still expected for the current fragment body; -1 while reading a header. */
  private fragmentLeft = -1;
  private lastFragment = false;
  private parts: Buffer[] = [];
  private recordSize = 0;
  /** Body bytes of the current record received so far (what `parts` holds). */
  private received = 0;
  private failed = false;

  constructor(private readonly opts: RecordReaderOptions) {}

  /** Bytes of the unfinished record held (at most maxRecordSize, checked at each fragment header). */
  get bufferedBytes(): number {
    return this.received + this.headerFill;
  }

  /** True while a record has been started but not finished. */
  get partial(): boolean {
    return !this.failed && (this.headerFill > 0 || this.fragmentLeft >= 0 || this.recordSize > 0);
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.failed) {
      if (this.fragmentLeft < 0) {
        const take = Math.min(4 - this.headerFill, chunk.length - at);
        chunk.copy(this.header, this.headerFill, at, at + take);
        this.headerFill += take;
        at += take;
        if (this.headerFill === 4) this.startFragment(this.header.readUInt32BE(0));
        continue;
      }
      const take = Math.min(this.fragmentLeft, chunk.length - at);
      // A view into the socket chunk: no copy unless the record spans chunks.
      this.parts.push(chunk.subarray(at, at + take));
      this.received += take;
      this.fragmentLeft -= take;
      at += take;
      if (this.fragmentLeft === 0) this.endFragment();
    }
  }

  private startFragment(mark: number): void {
    this.headerFill = 0;
    const length = mark & 0x7fffffff;
    this.lastFragment = (mark & LAST_FRAGMENT) !== 0;
    if (this.recordSize + length > this.opts.maxRecordSize) {
      return this.fail('RECORD_TOO_LARGE', `record of at least ${this.recordSize + length} bytes exceeds ${this.opts.maxRecordSize}`);
    }
    // A zero-length non-last fragment is legal but useless; a zero-length record is not a call.
    if (length === 0 && this.lastFragment && this.recordSize === 0) {
      return this.fail('EMPTY_FRAGMENT', 'empty record');
    }
    this.recordSize += length;
    this.fragmentLeft = length;
    if (length === 0) this.endFragment();
  }

  private endFragment(): void {
    this.fragmentLeft = -1;
    if (!this.lastFragment) return;
    const record = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.recordSize);
    this.parts = [];
    this.recordSize = 0;
    this.received = 0;
    this.opts.onRecord(record);
  }

  private fail(code: RecordError, message: string): void {
    this.failed = true;
    this.parts = [];
    this.received = 0;
    this.opts.onError(code, message);
  }
}

/** Frame one reply as a single last fragment. */
export function frameRecord(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length + 4);
  out.writeUInt32BE((LAST_FRAGMENT | body.length) >>> 0, 0);
  body.copy(out, 4);
  return out;
}
