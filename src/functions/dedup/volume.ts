/**
 * DedupVolume: a BlockDevice that stores its data on a backing BlockDevice with inline
 * deduplication (4 KiB, fingerprint + byte compare) and inline compression (fragments
 * packed several to a block), dedup first, then compression of the unique blocks.
 *
 * Durability follows the BlockDevice contract with writeThrough = false: a write is
 * durable after flush() or when written with fua. A commit makes new data durable
 * first, then journals every changed map/refcount page in one atomic transaction; only
 * after that may freed blocks be reused. After a crash, journal replay restores the last
 * committed state exactly (refcounts included) and check() verifies it.
 *
 * Requests to different logical blocks run concurrently; requests to the same blocks run
 * in arrival order (lock.ts). Compression runs in a worker pool (pool.ts), metadata
 * changes of concurrent writes are applied in short mutex-held steps, and commits are
 * grouped (writer.ts).
 *
 * This file is the API: open, the BlockDevice calls, ordering and the sticky failure
 * rule. The work is done by, one concern each:
 *   metadata.ts    map, refcounts, allocation, fingerprint index (through page-cache.ts)
 *   data-store.ts  reading locations, raw writes, the packer
 *   planner.ts     classify blocks (zero, duplicate, new), fingerprints (hash.ts), compression (pool.ts)
 *   writer.ts      the pipelined write path, trim, group commit and checkpoint
 *   check.ts       the checker (fsck)
 *   stats.ts       counters and ratios
 */
import { rootLogger } from '../../util/log.ts';
import type { BlockDevice, WriteFlags } from '../../block/types.ts';
import { BlockDeviceBase, type BlockCapabilities } from '../../block/device.ts';
import { readOnly, invalidArgument, ioError, StorvisorError } from '../../util/errors.ts';
import { BLOCK, computeLayout, decodeSuperblock, type Compression, type FingerprintFn, type Layout } from './format.ts';
import { PageCache } from './page-cache.ts';
import { Journal, MAX_TX_PAGES, type Counters } from './journal.ts';
import { codecFor, type Lz4Engine } from './fragments.ts';
import { BlockLru } from './block-lru.ts';
import { formatVolume } from './mkfs.ts';
import { backingFailure, volumeBroken } from './errors.ts';
import { Metadata } from './metadata.ts';
import { DataStore, MAX_CHUNK } from './data-store.ts';
import { Planner } from './planner.ts';
import { Writer } from './writer.ts';
import { checkVolume, type CheckResult } from './check.ts';
import { SessionStats, volumeStats } from './stats.ts';
import { isUnsafe } from './lock.ts';
import { chunkHasherFor } from './hash.ts';
import { defaultWorkers, poolOf } from './pool.ts';

export type { CheckResult } from './check.ts';

export interface DedupVolumeOptions {
  /** Size of the virtual volume in bytes (a multiple of 4096). */
  logicalSize: number;
  compression: Compression;
  dedup: boolean;
  /** Bound on the metadata page cache (default 16 MiB, at least 1 MiB). */
  cacheBytes?: number;
  /** Compression worker threads (default: the cores given less one, at least 1; 0 = compress inline). */
  workers?: number;
  /**
   * LZ4 implementation (same on-disk format either way): 'native' = liblz4 inline on the
   * request thread where the addon was built with it, else the TypeScript LZ4 in the worker
   * pool; 'js' = always the TypeScript one. Default: native, or STORVISOR_DEDUP_LZ4=js.
   */
  lz4Engine?: Lz4Engine;
  /** Fingerprint of a volume formatted by this open (default xxh64); an existing volume keeps its own. */
  fingerprint?: FingerprintFn;
  log?: (msg: string) => void;
}

/**
 * Blocks per write chunk, so that a chunk always fits in one transaction. Worst case per chunk
 * (Writer.worstPages): two map pages, and a refcount page per new and per replaced block plus
 * the packers' (2n + 2), but never more refcount pages than the volume has. A small volume
 * (the bench's 96 MiB backing: a 384-block journal, 95 pages per transaction, 25 refcount
 * pages) thus still writes a whole 256 KiB request as one chunk: one prepare, one phase 1,
 * one data pwrite and one phase 2 instead of two of each (#12). The writer admits a chunk by
 * a tighter count (pages already dirty cost nothing again), so commits carry many chunks.
 */
export function chunkBlocksFor(dirtyLimit: number, refPages: number): number {
  if (2 + refPages <= dirtyLimit) return MAX_CHUNK;
  return Math.max(1, Math.min(MAX_CHUNK, Math.floor((dirtyLimit - 4) / 2)));
}

const DEFAULT_CACHE = 16 << 20;
const MIN_CACHE = 1 << 20;

/**
 * Trim unmaps whole blocks (they read as zeroes, their space is freed); zero
 * unmaps too (writing zeroes only at partial edges); flush commits the journal;
 * FUA is a commit after the write.
 */
const CAPABILITIES: BlockCapabilities = Object.freeze({ trim: true, zeroes: true, flush: true, fua: true, fastRead: false });

export class DedupVolume extends BlockDeviceBase {
  readonly size: number;
  readonly blockSize = BLOCK;
  readonly readOnly: boolean;
  readonly writeThrough = false;
  readonly capabilities = CAPABILITIES;

  private readonly log: (msg: string) => void;
  private readonly session = new SessionStats();
  private readonly meta: Metadata;
  private readonly store: DataStore;
  private readonly writer: Writer;
  private broken: unknown = null;
  private closing = false;

  private constructor(
    private readonly backing: BlockDevice,
    private readonly layout: Layout,
    private readonly cache: PageCache,
    private readonly journal: Journal,
    private readonly counters: Counters,
    log: (msg: string) => void,
    dataCacheBlocks: number,
    workers: number,
    lz4Engine: Lz4Engine | undefined,
  ) {
    super();
    this.size = layout.logicalSize;
    this.readOnly = backing.readOnly;
    this.log = log;
    const codec = codecFor(layout.compression, lz4Engine);
    const dataBlocks = new BlockLru(dataCacheBlocks);
    this.meta = new Metadata(layout, cache, counters, codec, dataBlocks);
    this.store = new DataStore(backing, this.meta, codec, dataBlocks, layout.dedup, log);
    const pool = poolOf(layout.compression === 'none' ? 0 : workers);
    const planner = new Planner(this.meta, this.store, codec, layout.compression, layout.dedup, chunkHasherFor(layout.fingerprint), pool, this.session);
    const dirtyLimit = Math.min(Math.floor(layout.journalBlocks / 4) - 1, Math.floor(cache.capacity / 2), MAX_TX_PAGES);
    const chunkBlocks = chunkBlocksFor(dirtyLimit, layout.refPages);
    this.writer = new Writer(backing, this.meta, this.store, planner, cache, journal, counters, dirtyLimit, chunkBlocks);
  }

  /** Open the dedup volume on `backing`, formatting it first if it is blank (all zeroes at block 0). */
  static async open(backing: BlockDevice, opts: DedupVolumeOptions): Promise<DedupVolume> {
    const log = opts.log ?? rootLogger().sink();
    const cacheBytes = opts.cacheBytes ?? DEFAULT_CACHE;
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < MIN_CACHE) {
      throw invalidArgument(`cacheBytes must be an integer of at least ${MIN_CACHE}, got ${cacheBytes}`);
    }
    if (typeof opts.dedup !== 'boolean') throw invalidArgument(`dedup must be a boolean, got ${String(opts.dedup)}`);
    const workers = opts.workers ?? defaultWorkers();
    if (!Number.isSafeInteger(workers) || workers < 0 || workers > 64) throw invalidArgument(`workers must be an integer from 0 to 64, got ${workers}`);
    if (opts.lz4Engine !== undefined && opts.lz4Engine !== 'native' && opts.lz4Engine !== 'js') {
      throw invalidArgument(`lz4Engine must be 'native' or 'js', got ${String(opts.lz4Engine)}`);
    }
    const wanted = computeLayout(backing.size, opts.logicalSize, opts.compression, opts.dedup, opts.fingerprint);
    const sb = new Uint8Array(BLOCK);
    await backing.pread(sb, 0);
    const found = decodeSuperblock(sb);
    let layout: Layout;
    if (found.kind === 'blank') {
      if (backing.readOnly) throw readOnly('blank backing volume (cannot format)');
      await formatVolume(backing, wanted);
      layout = wanted;
    } else if (found.kind === 'foreign') {
      throw invalidArgument(`backing volume is not a dedup volume (${found.why}); refusing to overwrite it`);
    } else if (found.kind === 'corrupt') {
      const err = ioError(`dedup: superblock at backing block 0 is corrupt (${found.why})`);
      log(err.message);
      throw err;
    } else {
      layout = found.layout;
      const mismatch = (['logicalSize', 'compression', 'dedup'] as const).filter((k) => layout[k] !== wanted[k]);
      if (mismatch.length > 0) {
        throw invalidArgument(
          `dedup volume was formatted with ${mismatch.map((k) => `${k}=${layout[k]}`).join(', ')}; ` +
            `opened with ${mismatch.map((k) => `${k}=${wanted[k]}`).join(', ')}`,
        );
      }
      if (layout.backingBlocks * BLOCK > backing.size) {
        throw invalidArgument(`backing volume shrank: formatted for ${layout.backingBlocks * BLOCK} bytes, now ${backing.size}`);
      }
    }
    const { journal, counters } = await Journal.recover(backing, layout, log);
    // Three quarters of the budget for metadata pages, a quarter for recent data blocks.
    const cache = new PageCache(backing, Math.floor((cacheBytes * 3) / 4 / BLOCK), log);
    return new DedupVolume(backing, layout, cache, journal, counters, log, Math.floor(cacheBytes / 4 / BLOCK), workers, opts.lz4Engine);
  }

  // ------------------------------------------------------------------ BlockDevice

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRead(offset, buf.byteLength);
    return this.op(offset, buf.byteLength, false, async () => {
      this.session.logicalBytesRead += buf.byteLength;
      const end = offset + buf.byteLength;
      const firstFull = Math.ceil(offset / BLOCK);
      const lastFull = Math.max(firstFull, Math.floor(end / BLOCK));
      // Partial blocks at the edges go through a bounce block; whole blocks are read in place.
      const partial = async (lbn: number) => {
        const bounce = new Uint8Array(BLOCK); // per call: reads run concurrently
        await this.store.readBlock(lbn, bounce);
        const from = Math.max(lbn * BLOCK, offset);
        const to = Math.min((lbn + 1) * BLOCK, end);
        buf.set(bounce.subarray(from - lbn * BLOCK, to - lbn * BLOCK), from - offset);
      };
      if (offset < firstFull * BLOCK) await partial(firstFull - 1);
      if (lastFull > firstFull) await this.store.readBlocks(firstFull, buf.subarray(firstFull * BLOCK - offset, lastFull * BLOCK - offset));
      if (lastFull * BLOCK < end) await partial(lastFull); // never the head block: see lastFull's max()
    });
  }

  /** op() and guard() written out in one frame: this runs for every write (#12: async frames per 4 KiB write). */
  async pwrite(buf: Uint8Array, offset: number, flags?: WriteFlags): Promise<void> {
    this.checkWrite(offset, buf.byteLength);
    if (this.closed || this.closing) throw this.closedError();
    const length = buf.byteLength;
    const hold = length > 0 ? this.writer.ranges.hold(Math.floor(offset / BLOCK), Math.ceil((offset + length) / BLOCK), true) : null;
    try {
      if (hold?.wait) await hold.wait;
      this.checkOpen();
      if (this.broken) throw volumeBroken(this.broken);
      this.session.logicalBytesWritten += length;
      await this.writer.writeRange(buf, offset);
      if (this.cache.overCapacity) await this.cache.trim();
    } catch (err) {
      throw this.failure(err);
    } finally {
      if (hold) this.writer.ranges.release(hold);
    }
    if (flags?.fua) await this.op(0, 0, false, () => this.writer.sync());
  }

  /** Every write finished before this call is durable when it returns (grouped with concurrent flushes). */
  async flush(): Promise<void> {
    return this.op(0, 0, false, () => this.writer.sync());
  }

  /** Discard: whole blocks are unmapped (they read as zeroes); partial blocks are left as they are. */
  async trim(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    return this.op(offset, length, true, () => this.writer.unmap(Math.ceil(offset / BLOCK), Math.floor((offset + length) / BLOCK)));
  }

  async zero(offset: number, length: number): Promise<void> {
    this.checkWrite(offset, length);
    return this.op(offset, length, true, async () => {
      const first = Math.ceil(offset / BLOCK);
      const last = Math.floor((offset + length) / BLOCK);
      if (first >= last) return this.writer.writeRange(new Uint8Array(length), offset);
      if (offset < first * BLOCK) await this.writer.writeRange(new Uint8Array(first * BLOCK - offset), offset);
      await this.writer.unmap(first, last);
      if (last * BLOCK < offset + length) await this.writer.writeRange(new Uint8Array(offset + length - last * BLOCK), last * BLOCK);
    });
  }

  // ------------------------------------------------------------------ lifecycle, stats, check

  /** Make everything durable, write the metadata home and stop. Does not close the backing volume. */
  async close(): Promise<void> {
    if (this.closed || this.closing) throw this.closedError();
    this.closing = true;
    await this.writer.ranges.drain(); // every request that arrived before close
    return this.guard(() =>
      this.writer.gate.exclusive(async () => {
        if (!this.readOnly) {
          await this.writer.commit();
          await this.writer.checkpoint();
        }
        this.closed = true;
      }),
    );
  }

  stats(): Record<string, number> {
    return volumeStats({
      size: this.size,
      layout: this.layout,
      counters: this.counters,
      session: this.session,
      journal: this.journal,
      cache: this.cache,
      pendingFree: this.meta.pendingFree.size,
      groupedFlushes: this.writer.groupedFlushes,
    });
  }

  /** Verify the metadata (check.ts). Commits first, so it checks what a crash right now would leave. */
  async check(): Promise<CheckResult> {
    return this.op(0, 0, false, () =>
      this.writer.gate.exclusive(async () => {
        if (!this.readOnly) await this.writer.commit();
        const result = await checkVolume(this.meta, this.backing, this.size);
        await this.cache.trim();
        return result;
      }),
    );
  }

  // ------------------------------------------------------------------ plumbing

  protected label(): string {
    return 'dedup volume';
  }

  /**
   * Run a request over the bytes [offset, offset+length): after every earlier request that
   * overlaps it and conflicts (a write and anything), concurrently with the rest.
   */
  private async op<T>(offset: number, length: number, write: boolean, fn: () => Promise<T>): Promise<T> {
    if (this.closed || this.closing) throw this.closedError();
    const hold = length > 0 ? this.writer.ranges.hold(Math.floor(offset / BLOCK), Math.ceil((offset + length) / BLOCK), write) : null;
    try {
      if (hold?.wait) await hold.wait;
      return await this.guard(fn);
    } finally {
      if (hold) this.writer.ranges.release(hold);
    }
  }

  /** The failure rule: a half-done metadata update stops the volume (sticky); other errors keep their errno. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    if (this.broken) throw volumeBroken(this.broken);
    try {
      const result = await fn();
      if (this.cache.overCapacity) await this.cache.trim();
      return result;
    } catch (err) {
      throw this.failure(err);
    }
  }

  /** What a failed request throws: a half-done metadata update stops the volume; a backing failure keeps its errno. */
  private failure(err: unknown): unknown {
    if (isUnsafe(err)) {
      this.fail(err.cause);
      return volumeBroken(err.cause);
    }
    if (err instanceof StorvisorError) return err;
    // A backing-device failure that left metadata untouched: report it with its errno.
    return backingFailure(err);
  }

  private fail(err: unknown): void {
    if (this.broken) return;
    this.broken = err;
    this.writer.stopped = err;
    this.cache.drop(); // nothing uncommitted may reach the disk now
    this.log(`dedup: volume stopped: ${(err as Error)?.message ?? String(err)}`);
  }
}
