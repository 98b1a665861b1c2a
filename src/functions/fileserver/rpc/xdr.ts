/**
 * XDR (RFC 4506) over Buffer: big-endian 4-byte units, opaque data padded to a
 * multiple of 4. The decoder fails through ONE signal, `garbageArgs` (SV_ERR_RPC_GARBAGE_ARGS), on short or
 * invalid input; the RPC layer turns it into GARBAGE_ARGS (or drops the record)
 * so no handler ever sees half-decoded arguments.
 */
import { garbageArgs, StorvisorError } from '../../../util/errors.ts';

/** The single decode failure (util/errors.ts garbageArgs). Carries a reason for logs, never reaches the wire. */
export const isGarbageArgs = (err: unknown): err is StorvisorError => err instanceof StorvisorError && err.code === 'SV_ERR_RPC_GARBAGE_ARGS';

const pad4 = (n: number) => (4 - (n & 3)) & 3;
const PAGE = 4096;
const ZEROS = Buffer.alloc(4);
/** Below this an opaque tail is cheaper to copy than to send as its own buffer. */
const TAIL_MIN = 512;

export class XdrDecoder {
  private offset = 0;
  constructor(private readonly buf: Buffer, start = 0) {
    this.offset = start;
  }

  get position(): number {
    return this.offset;
  }
  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number): void {
    if (this.buf.length - this.offset < n) throw garbageArgs(`need ${n} bytes at ${this.offset}, have ${this.remaining}`);
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  bool(): boolean {
    const v = this.u32();
    if (v > 1) throw garbageArgs(`bool is ${v}`);
    return v === 1;
  }

  /** An enum restricted to the given values. */
  enumOf<T extends number>(allowed: readonly T[]): T {
    const v = this.u32();
    if (!allowed.includes(v as T)) throw garbageArgs(`enum value ${v} not allowed`);
    return v as T;
  }

  /** Fixed-length opaque: a view into the record, not a copy. */
  fixed(length: number): Buffer {
    const padded = length + pad4(length);
    this.need(padded);
    const v = this.buf.subarray(this.offset, this.offset + length);
    this.offset += padded;
    return v;
  }

  /** Variable-length opaque with a maximum (checked before the bytes are touched). */
  opaque(max: number): Buffer {
    const length = this.u32();
    if (length > max) throw garbageArgs(`opaque of ${length} bytes exceeds ${max}`);
    return this.fixed(length);
  }

  /** A string<max>; must be valid UTF-8 (NFS names are bytes, but we store text). */
  string(max: number): string {
    const bytes = this.opaque(max);
    const s = bytes.toString('utf8');
    // Invalid UTF-8 would decode to U+FFFD and silently alias another name.
    if (s.includes('\uFFFD') && !Buffer.from(s, 'utf8').equals(bytes)) throw garbageArgs('string is not UTF-8');
    return s;
  }
}

/**
 * Grows one scratch buffer in page multiples and is reset per message; `take()`
 * copies the encoded bytes out so the scratch can be reused at once.
 */
export class XdrEncoder {
  private buf: Buffer;
  private offset = 0;
  /** A payload sent by reference after the encoded bytes (see `opaqueTail`). */
  private tailData: Buffer | null = null;

  constructor(initial = PAGE) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.offset;
  }

  reset(): this {
    this.offset = 0;
    this.tailData = null;
    return this;
  }

  /** Bytes of the whole message: the encoded ones, plus a tail and its padding. */
  get wireLength(): number {
    const t = this.tailData;
    return t ? this.offset + t.length + pad4(t.length) : this.offset;
  }

  /** The payload `opaqueTail` left to send after the encoded bytes, or null. */
  get tail(): Buffer | null {
    return this.tailData;
  }

  /** Zero bytes that pad the tail to a multiple of 4 (a shared constant, never written to). */
  get tailPad(): Buffer | null {
    const t = this.tailData;
    const n = t ? pad4(t.length) : 0;
    return n ? ZEROS.subarray(0, n) : null;
  }

  /**
   * A variable-length opaque as the last item of the message, not copied: the
   * caller sends `tail` (and `tailPad`) after `take()`. For READ replies, whose
   * data is read straight into its own buffer. Small payloads are copied anyway.
   */
  opaqueTail(data: Uint8Array): this {
    if (data.byteLength < TAIL_MIN) return this.opaque(data);
    this.u32(data.byteLength);
    this.tailData = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return this;
  }

  private ensure(n: number): void {
    const want = this.offset + n;
    if (want <= this.buf.length) return;
    const size = Math.ceil(Math.max(want, this.buf.length * 2) / PAGE) * PAGE;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.offset);
    this.buf = next;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.offset);
    this.offset += 4;
    return this;
  }

  i32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v | 0, this.offset);
    this.offset += 4;
    return this;
  }

  u64(v: bigint | number): this {
    this.ensure(8);
    if (typeof v === 'number' && v >= 0 && v <= Number.MAX_SAFE_INTEGER) {
      // Sizes, inode numbers, times: no BigInt on the hot path.
      this.buf.writeUInt32BE(Math.floor(v / 0x100000000), this.offset);
      this.buf.writeUInt32BE(v >>> 0, this.offset + 4);
      this.offset += 8;
      return this;
    }
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, BigInt(v)), this.offset);
    this.offset += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.u32(v ? 1 : 0);
  }

  fixed(data: Uint8Array): this {
    const padded = data.byteLength + pad4(data.byteLength);
    this.ensure(padded);
    this.buf.set(data, this.offset);
    this.buf.fill(0, this.offset + data.byteLength, this.offset + padded);
    this.offset += padded;
    return this;
  }

  opaque(data: Uint8Array): this {
    this.u32(data.byteLength);
    return this.fixed(data);
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  /** Overwrite a u32 written earlier (used for the record mark). */
  patchU32(at: number, v: number): void {
    this.buf.writeUInt32BE(v >>> 0, at);
  }

  /** A copy of the encoded bytes. */
  take(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.offset));
  }
}

/** Bytes an XDR opaque/string of n bytes takes on the wire, length word included. */
export const xdrOpaqueSize = (n: number) => 4 + n + pad4(n);
