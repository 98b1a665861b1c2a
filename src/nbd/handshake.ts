import type { ByteQueue } from './byte-queue.ts';
import { transmissionFlags, type ExportCatalog, type NbdExport } from './catalog.ts';
import {
  EXPORT_NAME_PADDING,
  IHAVEOPT,
  MAX_STRING_BYTES,
  NBDMAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_SERVER,
  OPTION_REPLY_MAGIC,
} from './protocol.ts';

/** The largest option we buffer: an INFO/GO with a maximal name and a generous list of info requests. */
export const MAX_OPTION_BYTES = 4 + MAX_STRING_BYTES + 2 + 2 * 64;

/** Options one connection may send; a client that haggles forever is closed (nbdkit has no such cap; qemu sends < 10). */
export const MAX_OPTIONS = 1024;

/** What negotiation ends with when the client enters transmission. */
export interface Negotiated {
  export: NbdExport;
  flags: number;
  structuredReplies: boolean;
}

export interface HandshakeHooks {
  send(bytes: Buffer): void;
  /** Negotiation succeeded; bytes still queued belong to the transmission phase. */
  enterTransmission(result: Negotiated): void;
  /**
   * End the connection (after flushing what was sent); `reason` is for the log,
   * null for a normal end. `limit` is set when a limit (not the protocol) ended it.
   */
  close(reason: string | null, limit?: boolean): void;
  /**
   * Asked before each option: false while the client has too many unread
   * replies. `advance()` then returns and is called again once they drain.
   */
  mayContinue?(): boolean;
}

type State =
  | { kind: 'client-flags' }
  | { kind: 'option-header' }
  | { kind: 'option-data'; option: number; length: number }
  | { kind: 'option-discard'; remaining: number }
  | { kind: 'done' };

/** The greeting the server sends first: fixed newstyle, NO_ZEROES offered. */
export function serverGreeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return b;
}

export function optionReply(option: number, type: number, data?: Buffer): Buffer {
  const len = data?.length ?? 0;
  const b = Buffer.allocUnsafe(20 + len);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(len, 16);
  if (data) data.copy(b, 20);
  return b;
}

/**
 * Server side of fixed newstyle negotiation, as an incremental state machine:
 * `advance()` consumes whatever complete pieces the queue holds and returns
 * when it needs more bytes. Option lengths are checked from the 16-byte option
 * header, before any data is buffered.
 */
export class ServerHandshake {
  private state: State = { kind: 'client-flags' };
  private noZeroes = false;
  private structuredReplies = false;
  private options = 0;

  constructor(
    private readonly catalog: ExportCatalog,
    private readonly maxRequestBytes: number,
    private readonly hooks: HandshakeHooks,
  ) {}

  get done(): boolean {
    return this.state.kind === 'done';
  }

  advance(queue: ByteQueue): void {
    for (;;) {
      const s = this.state;
      switch (s.kind) {
        case 'done':
          return;
        case 'client-flags': {
          if (queue.length < 4) return;
          this.onClientFlags(queue.take(4).readUInt32BE(0));
          break;
        }
        case 'option-header': {
          if (queue.length < 16) return;
          if (this.hooks.mayContinue && !this.hooks.mayContinue()) return;
          if (++this.options > MAX_OPTIONS) {
            this.state = { kind: 'done' };
            return this.hooks.close(`more than ${MAX_OPTIONS} options in negotiation`, true);
          }
          const h = queue.take(16);
          this.onOptionHeader(h.readBigUInt64BE(0), h.readUInt32BE(8), h.readUInt32BE(12));
          break;
        }
        case 'option-data': {
          if (queue.length < s.length) return;
          this.state = { kind: 'option-header' };
          this.onOption(s.option, queue.take(s.length));
          break;
        }
        case 'option-discard': {
          s.remaining -= queue.skip(s.remaining);
          if (s.remaining > 0) return;
          this.state = { kind: 'option-header' };
          break;
        }
      }
    }
  }

  private fail(reason: string | null): void {
    this.state = { kind: 'done' };
    this.hooks.close(reason);
  }

  private onClientFlags(flags: number): void {
    if ((flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) {
      return this.fail(`unknown client flags 0x${flags.toString(16)}`);
    }
    if ((flags & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) {
      return this.fail('client does not speak fixed newstyle negotiation');
    }
    this.noZeroes = (flags & NBD_FLAG_C_NO_ZEROES) !== 0;
    this.state = { kind: 'option-header' };
  }

  private onOptionHeader(magic: bigint, option: number, length: number): void {
    if (magic !== IHAVEOPT) return this.fail('bad option magic');
    if (length <= MAX_OPTION_BYTES) {
      this.state = { kind: 'option-data', option, length };
      return;
    }
    // EXPORT_NAME cannot answer with an error; every other option can.
    if (option === NBD_OPT_EXPORT_NAME) return this.fail(`export name of ${length} bytes`);
    this.replyError(option, NBD_REP_ERR_TOO_BIG, `option length ${length} exceeds ${MAX_OPTION_BYTES}`);
    this.state = { kind: 'option-discard', remaining: length };
  }

  private onOption(option: number, data: Buffer): void {
    switch (option) {
      case NBD_OPT_EXPORT_NAME:
        return this.exportName(data);
      case NBD_OPT_ABORT:
        this.hooks.send(optionReply(option, NBD_REP_ACK));
        return this.fail(null); // what nbdinfo and friends do after listing: not an error
      case NBD_OPT_LIST:
        return this.list(data);
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return this.infoOrGo(option, data);
      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.replyError(option, NBD_REP_ERR_INVALID, 'unexpected option data');
        this.structuredReplies = true;
        return this.hooks.send(optionReply(option, NBD_REP_ACK));
      default:
        return this.replyError(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private replyError(option: number, type: number, message: string): void {
    this.hooks.send(optionReply(option, type, Buffer.from(message)));
  }

  private exportName(data: Buffer): void {
    const exp = this.catalog.find(data.toString('utf8'));
    if (!exp) return this.fail(`NBD_OPT_EXPORT_NAME: unknown export ${JSON.stringify(data.toString('utf8'))}`);
    const flags = transmissionFlags(exp.device, this.structuredReplies);
    const b = Buffer.alloc(10 + (this.noZeroes ? 0 : EXPORT_NAME_PADDING));
    b.writeBigUInt64BE(BigInt(exp.device.size), 0);
    b.writeUInt16BE(flags, 8);
    this.hooks.send(b);
    this.finish(exp, flags);
  }

  private list(data: Buffer): void {
    if (data.length !== 0) return this.replyError(NBD_OPT_LIST, NBD_REP_ERR_INVALID, 'unexpected option data');
    for (const exp of this.catalog.list()) {
      const name = Buffer.from(exp.name);
      const desc = Buffer.from(exp.description ?? '');
      const body = Buffer.allocUnsafe(4 + name.length + desc.length);
      body.writeUInt32BE(name.length, 0);
      name.copy(body, 4);
      desc.copy(body, 4 + name.length);
      this.hooks.send(optionReply(NBD_OPT_LIST, NBD_REP_SERVER, body));
    }
    this.hooks.send(optionReply(NBD_OPT_LIST, NBD_REP_ACK));
  }

  /** INFO and GO share their request layout: name length, name, count, info types. */
  private infoOrGo(option: number, data: Buffer): void {
    if (data.length < 6) return this.replyError(option, NBD_REP_ERR_INVALID, 'option data too short');
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6) return this.replyError(option, NBD_REP_ERR_INVALID, 'name length overruns the option');
    const name = data.toString('utf8', 4, 4 + nameLength);
    const count = data.readUInt16BE(4 + nameLength);
    if (data.length !== 6 + nameLength + 2 * count) {
      return this.replyError(option, NBD_REP_ERR_INVALID, 'info request count does not match the option length');
    }
    const requested = new Set<number>();
    for (let i = 0; i < count; i++) requested.add(data.readUInt16BE(6 + nameLength + 2 * i));

    const exp = this.catalog.find(name);
    if (!exp) return this.replyError(option, NBD_REP_ERR_UNKNOWN, `unknown export ${JSON.stringify(name)}`);
    const flags = transmissionFlags(exp.device, this.structuredReplies);

    const info = Buffer.allocUnsafe(12);
    info.writeUInt16BE(NBD_INFO_EXPORT, 0);
    info.writeBigUInt64BE(BigInt(exp.device.size), 2);
    info.writeUInt16BE(flags, 10);
    this.hooks.send(optionReply(option, NBD_REP_INFO, info));
    if (requested.has(NBD_INFO_NAME)) {
      this.hooks.send(optionReply(option, NBD_REP_INFO, infoString(NBD_INFO_NAME, exp.name)));
    }
    if (requested.has(NBD_INFO_DESCRIPTION) && exp.description !== undefined) {
      this.hooks.send(optionReply(option, NBD_REP_INFO, infoString(NBD_INFO_DESCRIPTION, exp.description)));
    }
    // Sent even when not requested: with a minimum of 1 no client is constrained by it.
    const sizes = Buffer.allocUnsafe(14);
    sizes.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
    sizes.writeUInt32BE(1, 2);
    sizes.writeUInt32BE(exp.device.blockSize, 6);
    sizes.writeUInt32BE(this.maxRequestBytes, 10);
    this.hooks.send(optionReply(option, NBD_REP_INFO, sizes));
    this.hooks.send(optionReply(option, NBD_REP_ACK));
    if (option === NBD_OPT_GO) this.finish(exp, flags);
  }

  private finish(exp: NbdExport, flags: number): void {
    this.state = { kind: 'done' };
    this.hooks.enterTransmission({ export: exp, flags, structuredReplies: this.structuredReplies });
  }
}

function infoString(type: number, text: string): Buffer {
  const s = Buffer.from(text);
  const b = Buffer.allocUnsafe(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}
