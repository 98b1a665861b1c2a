/**
 * Incremental RESP2 request parser (multibulk and inline), after Redis's
 * processMultibulkBuffer / processInlineBuffer. Bytes arrive in chunks; the
 * parser keeps its state between chunks and never re-parses what it has
 * already consumed. Limits are checked as bytes arrive, so a client cannot
 * make the server buffer more than one bounded line or one bounded bulk.
 *
 * Failure goes through one path: `onError(message)` with the exact text Redis
 * sends (without the "-ERR " prefix), after which the parser is dead and the
 * connection is expected to reply and close.
 */

/** Redis PROTO_INLINE_MAX_SIZE: the longest inline command or count line. */
export const INLINE_MAX = 64 * 1024;
/** Redis's limit on the element count of one multibulk request. */
export const MULTIBULK_MAX = 1024 * 1024;
/** Redis proto-max-bulk-len default. */
export const BULK_MAX_DEFAULT = 512 * 1024 * 1024;

/** What one argument costs beyond its bytes (the Buffer object), so a million empty arguments count too. */
const ARG_OVERHEAD = 64;

export interface ParserOptions {
  /** Largest accepted bulk string, in bytes (at most 512 MB). */
  maxBulkLength?: number;
  /**
   * Largest request (all its arguments, Redis's query buffer for one
   * command), checked at each bulk header before its bytes are buffered.
   */
  maxRequestBytes?: number;
  /**
   * The chunks fed are reused for the next read (TcpConnection.transientReads):
   * whatever the parser keeps past feed() (a partial line or bulk, the
   * arguments of an unfinished request, input kept while stopped) is copied.
   * Commands still get views: they copy what they keep.
   */
  transient?: boolean;
}

export interface ParserEvents {
  /**
   * A complete command. Return false to stop: the parser keeps the rest until `resume()`.
   * The array is the parser's and is refilled for the next command: copy it to keep it
   * (the Buffers are views of the received chunks: with `transient`, copy them to keep them too).
   */
  onCommand(args: Buffer[]): unknown;
  onError(message: string): void;
}

const CR = 13;
/**
 * Node's Buffer class (what subarray and Buffer.from make: the same object
 * shape), exposed as Buffer[Symbol.species]: argument views are made with it
 * directly.
 */
type ViewClass = new (ab: ArrayBufferLike, offset: number, length: number) => Buffer;
const FastBuffer: ViewClass = (() => {
  const species = (Buffer as unknown as { [Symbol.species]?: ViewClass })[Symbol.species];
  if (typeof species === 'function' && Buffer.isBuffer(new species(new ArrayBuffer(1), 0, 1))) return species;
  // Not this Node's layout: Buffer.from makes the same view (a function called with `new` returning an object).
  return function (ab: ArrayBufferLike, offset: number, length: number) {
    return Buffer.from(ab as ArrayBuffer, offset, length);
  } as unknown as ViewClass;
})();
/** Argument counts the fast path keeps an array for (GET is 2, SET 3, MSET of 3 pairs 7). */
const REUSED_MAX = 8;
const EMPTY = Buffer.alloc(0);
/** Command names up to this long are remembered (the longest Redis name is 15 bytes). */
const NAME_CACHE_MAX = 24;
const LF = 10;

type State =
  | 'start' // waiting for the first byte of a request
  | 'inline' // collecting an inline line
  | 'count' // collecting "*<n>\r\n"
  | 'bulkHeader' // collecting "$<n>\r\n"
  | 'bulkData'; // collecting <n> bytes plus CRLF

export class RespParser {
  private state: State = 'start';
  private readonly maxBulk: number;
  /** Bytes of a line that is not complete yet (bounded by INLINE_MAX). */
  private line: Buffer[] = [];
  private lineLength = 0;
  /** Arguments of the multibulk request being collected. */
  private args: Buffer[] = [];
  private remainingArgs = 0;
  /** The bulk being collected: its parts, and how many bytes (with CRLF) are still due. */
  private bulkParts: Buffer[] = [];
  private bulkLength = 0;
  private bulkDue = 0;
  private dead = false;
  /** Bytes held for the request being collected: its arguments, the bulk and the line so far. */
  private requestBytes = 0;
  private readonly maxRequest: number;
  /** Stopped by onCommand returning false; `rest` holds the bytes not parsed yet. */
  private stopped = false;
  private rest: Buffer[] = [];
  private restBytes = 0;

  constructor(
    private readonly events: ParserEvents,
    options: ParserOptions = {},
  ) {
    this.maxBulk = Math.min(options.maxBulkLength ?? BULK_MAX_DEFAULT, BULK_MAX_DEFAULT);
    this.maxRequest = options.maxRequestBytes ?? Infinity;
    this.transient = options.transient ?? false;
  }

  private readonly transient: boolean;

  /** Bytes held: the unfinished request plus input kept while stopped. */
  get bufferedBytes(): number {
    return this.requestBytes + this.lineLength + (this.state === 'bulkData' ? this.bulkLength + 2 - this.bulkDue : 0) + this.restBytes;
  }

  /** True while onCommand has stopped the parser. */
  get paused(): boolean {
    return this.stopped;
  }

  /** Go on with the input kept since onCommand returned false (until it does again). */
  resume(): void {
    this.stopped = false;
    while (!this.stopped && !this.dead && this.rest.length > 0) {
      const chunk = this.rest.shift()!;
      this.restBytes -= chunk.length;
      this.run(chunk);
    }
  }

  get failed(): boolean {
    return this.dead;
  }

  /** True while part of a request has been received but not all of it. */
  get midRequest(): boolean {
    return this.state !== 'start';
  }

  /** Feed one chunk. Commands and errors are delivered through the events, in order. */
  feed(chunk: Buffer): void {
    if (this.dead || chunk.length === 0) return;
    if (this.stopped) {
      this.rest.push(this.transient ? Buffer.from(chunk) : chunk);
      this.restBytes += chunk.length;
      return;
    }
    this.run(chunk);
    if (this.transient) this.detach(chunk.buffer);
  }

  /** Replace every view of `ab` the parser still holds by a copy (the buffer is about to be reused). */
  private detach(ab: ArrayBufferLike): void {
    copyViews(this.line, ab);
    copyViews(this.bulkParts, ab);
    copyViews(this.args, ab);
    copyViews(this.rest, ab);
  }

  private run(chunk: Buffer): void {
    let pos = 0;
    // The fast path makes its argument views from these, read once per chunk: Buffer's subarray reads
    // `.buffer` per call, which the optimizing compiler leaves to a generic load (a C++ builtin) for socket chunks.
    const ab = chunk.buffer;
    const base = chunk.byteOffset;
    while (pos < chunk.length && !this.dead) {
      if (this.stopped) {
        this.rest.unshift(chunk.subarray(pos));
        this.restBytes += chunk.length - pos;
        return;
      }
      switch (this.state) {
        case 'start': {
          const b = chunk[pos];
          if (b === 0x2a /* '*' */) {
            // Most requests arrive whole in one chunk: parse those in place.
            const end = this.wholeCommand(chunk, pos, ab, base);
            if (end > 0) {
              pos = end;
              break;
            }
            this.state = 'count';
            pos++;
          } else {
            this.state = 'inline';
          }
          break;
        }
        case 'inline':
        case 'count':
        case 'bulkHeader': {
          const end = this.collectLine(chunk, pos);
          if (end < 0) return; // line continues in the next chunk (or the limit failed)
          pos = end;
          const line = this.takeLine();
          if (this.state === 'inline') this.handleInline(line);
          else if (this.state === 'count') this.handleCount(line);
          else this.handleBulkHeader(line);
          break;
        }
        case 'bulkData':
          pos = this.collectBulk(chunk, pos);
          break;
      }
    }
  }

  /**
   * Append bytes up to and including the next LF to the current line.
   * Returns the position after the LF, or -1 when the chunk ended first.
   */
  private collectLine(chunk: Buffer, pos: number): number {
    const lf = chunk.indexOf(LF, pos);
    const end = lf < 0 ? chunk.length : lf + 1;
    this.lineLength += end - pos;
    if (this.lineLength > INLINE_MAX + 2 || (lf < 0 && this.lineLength > INLINE_MAX)) {
      this.fail(
        this.state === 'inline'
          ? 'Protocol error: too big inline request'
          : this.state === 'count'
            ? 'Protocol error: too big mbulk count string'
            : 'Protocol error: too big bulk count string',
      );
      return -1;
    }
    this.line.push(chunk.subarray(pos, end));
    return lf < 0 ? -1 : end;
  }

  /** The completed line without its LF (and without CR for count lines). */
  private takeLine(): Buffer {
    const whole = this.line.length === 1 ? this.line[0] : Buffer.concat(this.line);
    this.line = [];
    this.lineLength = 0;
    return whole.subarray(0, whole.length - 1); // drop LF
  }

  private handleInline(line: Buffer): void {
    this.state = 'start';
    // Redis accepts a bare LF as the terminator of an inline command.
    const text = line.length > 0 && line[line.length - 1] === CR ? line.subarray(0, line.length - 1) : line;
    const args = splitInlineArgs(text);
    if (args === null) return this.fail('Protocol error: unbalanced quotes in request');
    if (args.length > 0) this.command(args);
  }

  private handleCount(line: Buffer): void {
    const n = parseCountLine(line);
    if (n === null || n > MULTIBULK_MAX) return this.fail('Protocol error: invalid multibulk length');
    if (n <= 0) {
      this.state = 'start'; // "*0" and "*-1" are empty requests: skipped, as Redis does
      return;
    }
    this.remainingArgs = n;
    this.args = [];
    this.requestBytes = 0;
    this.state = 'bulkHeader';
  }

  private handleBulkHeader(line: Buffer): void {
    if (line[0] !== 0x24 /* '$' */) {
      const got = line.length > 0 ? String.fromCharCode(line[0]) : '\r';
      return this.fail(`Protocol error: expected '$', got '${got}'`);
    }
    const n = parseCountLine(line.subarray(1));
    if (n === null || n < 0 || n > this.maxBulk || n > this.maxRequest) return this.fail('Protocol error: invalid bulk length');
    if (this.requestBytes + n + ARG_OVERHEAD > this.maxRequest) {
      return this.fail(`Protocol error: request larger than the query buffer limit of ${this.maxRequest} bytes`);
    }
    this.bulkLength = n;
    this.bulkDue = n + 2;
    this.bulkParts = [];
    this.state = 'bulkData';
  }

  private collectBulk(chunk: Buffer, pos: number): number {
    const take = Math.min(this.bulkDue, chunk.length - pos);
    this.bulkParts.push(chunk.subarray(pos, pos + take));
    this.bulkDue -= take;
    if (this.bulkDue > 0) return pos + take;
    const whole = this.bulkParts.length === 1 ? this.bulkParts[0] : Buffer.concat(this.bulkParts);
    this.bulkParts = [];
    // Redis does not check the CRLF after a bulk; it just skips two bytes.
    this.args.push(whole.subarray(0, this.bulkLength));
    this.requestBytes += this.bulkLength + ARG_OVERHEAD;
    if (--this.remainingArgs === 0) {
      const args = this.args;
      this.args = [];
      this.requestBytes = 0;
      this.state = 'start';
      this.command(args);
    } else {
      this.state = 'bulkHeader';
    }
    return pos + take;
  }

  private command(args: Buffer[]): void {
    if (this.events.onCommand(args) === false) this.stopped = true;
  }

  /**
   * The argument arrays the fast path fills again for every command, one per
   * count up to REUSED_MAX (onCommand must not keep them). Each keeps its
   * length and is written by index: emptying an array with `length = 0`
   * frees its backing store, and the pushes after it allocate a new one for
   * every command.
   */
  private readonly reused: Buffer[][] = [];
  private inCommand = false;
  /** A copy of the last command name (see nameAt). */
  private lastName: Buffer = EMPTY;

  /**
   * The fast path: a multibulk request that lies whole in `chunk` from `pos`
   * (the '*'), in its plain form (decimal lengths without sign or leading
   * zeros, within the limits), is parsed in place: one subarray per argument
   * and no other allocation. Returns the position after it, or -1 when it is
   * incomplete or anything is unusual: the general path then parses it from
   * the start (and finds any error with its exact Redis text).
   */
  private wholeCommand(chunk: Buffer, pos: number, ab: ArrayBufferLike, base: number): number {
    const len = chunk.length;
    let p = pos + 1;
    // The count: 1 to 7 digits, no leading zero, at most MULTIBULK_MAX.
    let n = 0;
    let digits = 0;
    for (; p < len; p++) {
      const d = chunk[p] - 0x30;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
      digits++;
    }
    if (digits === 0 || digits > 7 || (digits > 1 && chunk[pos + 1] === 0x30) || n === 0 || n > MULTIBULK_MAX) return -1;
    if (p + 1 >= len || chunk[p] !== CR || chunk[p + 1] !== LF) return -1;
    p += 2;
    // Cheap bound first: each argument needs at least "$0\r\n\r\n".
    if (len - p < n * 6) return -1;
    const outer = this.inCommand;
    let args: Buffer[];
    if (outer || n > REUSED_MAX) args = new Array<Buffer>(n);
    else args = this.reused[n] ?? (this.reused[n] = Array.from({ length: n }, () => EMPTY)); // packed, not holey
    let requestBytes = 0;
    for (let i = 0; i < n; i++) {
      if (p >= len || chunk[p] !== 0x24 /* '$' */) return abandon(args);
      const start = ++p;
      let size = 0;
      for (; p < len; p++) {
        const d = chunk[p] - 0x30;
        if (d < 0 || d > 9) break;
        size = size * 10 + d;
      }
      digits = p - start;
      if (digits === 0 || digits > 10 || (digits > 1 && chunk[start] === 0x30)) return abandon(args);
      if (size > this.maxBulk || size > this.maxRequest) return abandon(args);
      requestBytes += size + ARG_OVERHEAD;
      if (requestBytes > this.maxRequest) return abandon(args);
      if (p + 1 >= len || chunk[p] !== CR || chunk[p + 1] !== LF) return abandon(args);
      p += 2;
      if (p + size + 2 > len || chunk[p + size] !== CR || chunk[p + size + 1] !== LF) return abandon(args);
      args[i] = i === 0 ? this.nameAt(chunk, p, size) : new FastBuffer(ab, base + p, size);
      p += size + 2;
    }
    this.inCommand = true;
    try {
      this.command(args);
    } finally {
      this.inCommand = outer;
      // Drop the views, so a kept array does not hold the chunk they point into.
      if (!outer && n <= REUSED_MAX) dropViews(args, n);
    }
    return p;
  }

  /**
   * The command name at chunk[p, p + size): the copy kept of the last name
   * when the bytes are the same (a pipeline repeats one command, and a view
   * is a 96-byte object per command), else a view, kept as the next copy.
   */
  private nameAt(chunk: Buffer, p: number, size: number): Buffer {
    const last = this.lastName;
    if (last.length === size) {
      let i = 0;
      while (i < size && chunk[p + i] === last[i]) i++;
      if (i === size) return last;
    }
    const view = chunk.subarray(p, p + size);
    if (size <= NAME_CACHE_MAX) this.lastName = Buffer.from(view);
    return view;
  }

  private fail(message: string): void {
    if (this.dead) return;
    this.dead = true;
    this.line = [];
    this.lineLength = 0;
    this.bulkParts = [];
    this.args = [];
    this.requestBytes = 0;
    this.rest = [];
    this.restBytes = 0;
    this.events.onError(message);
  }
}

function copyViews(list: Buffer[], ab: ArrayBufferLike): void {
  for (let i = 0; i < list.length; i++) if (list[i].buffer === ab) list[i] = Buffer.from(list[i]);
}

/** A fast-path parse gave up halfway: drop the views already in the array (-1, for the caller). */
function abandon(args: Buffer[]): number {
  dropViews(args, args.length);
  return -1;
}

/** Clear the first `n` argument views (a loop: Array.prototype.fill is a C++ builtin call, per command). */
function dropViews(args: Buffer[], n: number): void {
  for (let i = 0; i < n; i++) args[i] = EMPTY;
}

/** Parse "<digits>\r" (or "-1\r") as Redis's string2ll does; null if malformed. */
function parseCountLine(line: Buffer): number | null {
  let end = line.length;
  if (end > 0 && line[end - 1] === CR) end--;
  else return null; // count lines must end in CRLF
  if (end === 0 || end > 20) return null;
  let i = 0;
  let negative = false;
  if (line[0] === 0x2d /* '-' */) {
    negative = true;
    i = 1;
    if (end === 1) return null;
  }
  let value = 0;
  for (; i < end; i++) {
    const d = line[i] - 0x30;
    if (d < 0 || d > 9) return null;
    value = value * 10 + d;
  }
  if (line[negative ? 1 : 0] === 0x30 && end > (negative ? 2 : 1)) return null; // no leading zeros
  if (!Number.isSafeInteger(value)) return null;
  return negative ? -value : value;
}

/**
 * Split an inline command line like Redis's sdssplitargs: whitespace
 * separated, with "double quotes" (supporting \n \r \t \b \a \\ \" and \xHH)
 * and 'single quotes' (supporting \'). Returns null for unbalanced quotes.
 */
export function splitInlineArgs(line: Buffer): Buffer[] | null {
  const args: Buffer[] = [];
  let i = 0;
  const n = line.length;
  const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c;
  while (true) {
    while (i < n && isSpace(line[i])) i++;
    if (i >= n) return args;
    const cur: number[] = [];
    let inDouble = false;
    let inSingle = false;
    for (;;) {
      if (inDouble) {
        if (i >= n) return null;
        const c = line[i];
        if (c === 0x5c /* \ */ && i + 3 < n && line[i + 1] === 0x78 /* x */ && isHex(line[i + 2]) && isHex(line[i + 3])) {
          cur.push(hexValue(line[i + 2]) * 16 + hexValue(line[i + 3]));
          i += 3;
        } else if (c === 0x5c && i + 1 < n) {
          i++;
          const e = line[i];
          cur.push(e === 0x6e ? 10 : e === 0x72 ? 13 : e === 0x74 ? 9 : e === 0x62 ? 8 : e === 0x61 ? 7 : e);
        } else if (c === 0x22 /* " */) {
          // A closing quote must be followed by a space or the end.
          if (i + 1 < n && !isSpace(line[i + 1])) return null;
          i++;
          break;
        } else {
          cur.push(c);
        }
        i++;
      } else if (inSingle) {
        if (i >= n) return null;
        const c = line[i];
        if (c === 0x5c && i + 1 < n && line[i + 1] === 0x27) {
          i++;
          cur.push(0x27);
        } else if (c === 0x27) {
          if (i + 1 < n && !isSpace(line[i + 1])) return null;
          i++;
          break;
        } else {
          cur.push(c);
        }
        i++;
      } else {
        if (i >= n) break;
        const c = line[i];
        if (isSpace(c)) break;
        if (c === 0x22) inDouble = true;
        else if (c === 0x27) inSingle = true;
        else cur.push(c);
        i++;
      }
    }
    args.push(Buffer.from(cur));
  }
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function hexValue(c: number): number {
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10;
}
