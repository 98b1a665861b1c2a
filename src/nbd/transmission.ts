import { FUA_WRITE, UNSYNCED_WRITE, type BlockDevice } from '../block/types.ts';
import { nbdErrorOf } from './error-map.ts';
import type { NbdRequest } from './request-parser.ts';
import { simpleReadReply, simpleReply, structuredErrorReply, structuredReadReply } from './replies.ts';
import type { NbdStats } from './stats.ts';
import { validateRequest, type ExportLimits } from './validate.ts';
import { PooledReply, type ReplyPool } from './reply-pool.ts';
import {
  NBD_CMD_CACHE,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
} from './protocol.ts';


const COMMAND_NAMES: Record<number, string> = {
  [NBD_CMD_READ]: 'read',
  [NBD_CMD_WRITE]: 'write',
  [NBD_CMD_FLUSH]: 'flush',
  [NBD_CMD_TRIM]: 'trim',
  [NBD_CMD_CACHE]: 'cache',
  [NBD_CMD_WRITE_ZEROES]: 'write-zeroes',
};

/**
 * Executes transmission requests against one export's device and builds the
 * reply bytes. It knows nothing about sockets: the connection decides when
 * to read, and sends whatever `handle` resolves to.
 */
export class Transmission {
  private readonly limits: ExportLimits;

  constructor(
    private readonly device: BlockDevice,
    structuredReplies: boolean,
    private readonly stats: NbdStats,
    /** Where READ replies are built (reused once the socket has written them); none: a fresh buffer each. */
    private readonly pool: ReplyPool | null = null,
  ) {
    this.limits = { size: device.size, readOnly: device.readOnly, structuredReplies };
  }

  /**
   * Resolve to the complete reply for `req`; never rejects. A PooledReply
   * must be given back (`release`) once the socket has written its `bytes`.
   */
  async handle(req: NbdRequest): Promise<Buffer | PooledReply> {
    this.stats.requests++;
    const verdict = validateRequest(req, this.limits);
    if (verdict !== 0) return this.errorReply(req, verdict, `invalid ${COMMAND_NAMES[req.type] ?? `command ${req.type}`} request`);
    try {
      return await this.execute(req);
    } catch (err) {
      return this.errorReply(req, nbdErrorOf(err), err instanceof Error ? err.message : String(err));
    }
  }

  private async execute(req: NbdRequest): Promise<Buffer | PooledReply> {
    const fua = (req.flags & NBD_CMD_FLAG_FUA) !== 0;
    switch (req.type) {
      case NBD_CMD_READ: {
        const pooled = this.pool?.take(req.length) ?? null;
        const into = pooled?.raw;
        const reply = this.limits.structuredReplies
          ? structuredReadReply(req, req.offset, req.length, into)
          : simpleReadReply(req, req.length, into);
        try {
          await this.device.pread(reply.data, req.offset);
        } catch (err) {
          pooled?.release();
          throw err;
        }
        this.stats.reads++;
        this.stats.bytesRead += req.length;
        if (pooled === null) return reply.bytes;
        pooled.bytes = reply.bytes;
        return pooled;
      }
      case NBD_CMD_WRITE:
        // NBD's rule: a plain WRITE may stay volatile until a FLUSH, a FUA one may
        // not. A device that cannot defer its per-write sync ignores `unsynced`.
        await this.device.pwrite(req.payload!, req.offset, fua ? FUA_WRITE : UNSYNCED_WRITE);
        this.stats.writes++;
        this.stats.bytesWritten += req.length;
        break;
      case NBD_CMD_FLUSH:
        await this.device.flush();
        break;
      case NBD_CMD_TRIM:
        await this.device.trim(req.offset, req.length);
        if (fua) await this.device.flush();
        break;
      case NBD_CMD_WRITE_ZEROES:
        // zero() guarantees zeroes, so NO_HOLE needs nothing more from us.
        await this.device.zero(req.offset, req.length);
        if (fua) await this.device.flush();
        break;
      case NBD_CMD_CACHE:
        break; // a prefetch hint: nothing to warm on our devices
    }
    return simpleReply(req, 0);
  }

  /** The error reply for a request that failed outside `handle` (a lent read). */
  failure(req: Pick<NbdRequest, 'cookieHigh' | 'cookieLow'>, err: unknown): Buffer {
    return this.errorReply(req, nbdErrorOf(err), err instanceof Error ? err.message : String(err));
  }

  private errorReply(req: Pick<NbdRequest, 'cookieHigh' | 'cookieLow'>, error: number, message: string): Buffer {
    this.stats.errors++;
    // Structured replies forbid a simple reply to READ, and let errors carry a message.
    return this.limits.structuredReplies
      ? structuredErrorReply(req, error, message)
      : simpleReply(req, error);
  }
}
