import type { BlockDevice } from '../../../block/types.ts';
import { BlockAllocator, Bitmap } from './alloc.ts';
import { MAX_FILE_BLOCKS, mapRun, mappedEnd, truncateBlocks, worstCaseBlocks } from './blockmap.ts';
import { FileData, writebackError } from './file-data.ts';
import { MetaCache } from './cache.ts';
import { dirBlocks, dirCreate, dirInsert, dirList, dirLookup, dirProbe, dirRemove, INSERT_RESERVE } from './directory.ts';
import { decodeInode, emptyInode, encodeInode, fileTypeOf, InodeType, verifyInodeBlock, type Inode, type InodeTypeCode } from './inode.ts';
import { Journal, type Handle, type JournalHeader } from './journal.ts';
import { InodeLocks, RangeLocks } from './locks.ts';
import { PATH_MAX, validateName } from './names.ts';
import { BLOCK_SIZE, INODE_SIZE, INODES_PER_BLOCK, type Superblock } from './superblock.ts';
import {
  fsCodeOf,
  type Attr,
  type CreateOptions,
  type DirEntry,
  type FileSystem,
  type FsStat,
  type SetAttr,
} from './types.ts';
import { fsError } from '../../../util/errors.ts';

export interface MountOptions {
  log?: (m: string) => void;
  /** Metadata cache bound, in 4 KiB blocks (default 8192 = 32 MiB). */
  cacheBlocks?: number;
  /** Unstable-write data held in memory before it is written back (default 64 MiB). */
  maxDirtyBytes?: number;
  /** Time source for inode times (tests and golden fixtures fix it). */
  clock?: () => number;
  /**
   * Logical blocks one transaction of a large truncate or remove frees at most
   * (default 256): it dirties at most that many bitmap blocks plus a few pointer
   * blocks, so it always fits one journal record beside a full running transaction.
   */
  truncateStepBlocks?: number;
}

const MAX_READ = 64 << 20;
/** Entries of `mapSeq` before the durable ones are swept out. */
const MAP_SEQ_SWEEP = 4096;
/**
 * Unstable writes at least this large skip the page buffer and take
 * write-before-map (not waiting for the commit); smaller ones are buffered, so
 * small sequential writes still reach the device as extents at COMMIT.
 */
const DIRECT_UNSTABLE_BYTES = 64 * 1024;
/** Steps of a large truncate or remove between commits. */
const ORPHAN_COMMIT_STEPS = 64;
const MAX_NLINK = 65000;
const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/**
 * The filesystem on a volume: see superblock.ts for the layout, journal.ts for
 * crash safety, directory.ts for directories, blockmap.ts and file-data.ts for file data.
 *
 * Every operation validates first (under its inode locks), then changes
 * metadata inside one journal handle, releases its locks and waits for the
 * transaction to be durable. File data never goes through the journal: blocks
 * are written in place before the transaction that maps them commits.
 */
export class VolumeFileSystem implements FileSystem {
  readonly fsid: bigint;
  readonly rootIno: number;
  /** Set at mount from the root inode. */
  rootGeneration = 0;
  readonly blockSize = BLOCK_SIZE;
  private readonly cache: MetaCache;
  private readonly journal: Journal;
  private readonly alloc: BlockAllocator;
  private readonly inodeMap: Bitmap;
  private readonly locks = new InodeLocks();
  /** Serializes renames that move a directory to another parent (loop check needs a stable tree). */
  private readonly renameLocks = new InodeLocks();
  /** Blocks of a file being overwritten in place (under the inode's shared lock). */
  private readonly ranges = new RangeLocks();
  /**
   * Changes to a file's inode record made under its shared lock (the block map
   * and size of a write-before-map, the times of an in-place overwrite) take
   * turns here: each reads the record, changes it and writes it back.
   */
  private readonly mapLocks = new InodeLocks();
  private readonly data: FileData;
  private readonly now: () => number;
  private readonly log: (m: string) => void;
  private closed = false;
  private readonly truncateStep: number;
  readonly counters = { ops: 0, writes: 0, overwrites: 0, mappedWrites: 0, reads: 0, writebacks: 0, writebackErrors: 0 };

  private constructor(
    private readonly device: BlockDevice,
    readonly sb: Superblock,
    header: JournalHeader,
    opts: MountOptions,
  ) {
    this.fsid = new DataView(sb.uuid.buffer, sb.uuid.byteOffset, 16).getBigUint64(0, true);
    this.rootIno = sb.rootIno;
    this.cache = new MetaCache(device, Math.max(256, opts.cacheBlocks ?? 8192));
    this.journal = new Journal(device, sb, this.cache, header);
    this.alloc = new BlockAllocator(new Bitmap(this.cache, sb.blockBitmapStart, sb.totalBlocks));
    this.inodeMap = new Bitmap(this.cache, sb.inodeBitmapStart, sb.inodeCount);
    this.journal.onCheckpoint = (seq) => this.alloc.release(seq);
    this.now = opts.clock ?? Date.now;
    this.data = new FileData(device, this.readMeta, this.alloc, (n) => this.reserve(n), this.now, opts.maxDirtyBytes ?? 64 << 20);
    this.log = opts.log ?? (() => {});
    this.truncateStep = Math.max(1, Math.min(256, opts.truncateStepBlocks ?? 256));
  }

  /** Mount a volume whose journal has been replayed (see index.ts). */
  static async mount(device: BlockDevice, sb: Superblock, header: JournalHeader, opts: MountOptions = {}): Promise<VolumeFileSystem> {
    const fs = new VolumeFileSystem(device, sb, header, opts);
    await fs.alloc.bitmap.countFree();
    await fs.inodeMap.countFree();
    const root = await fs.readInode(sb.rootIno);
    if (root.type !== InodeType.dir) throw fsError('IO', 'root inode is not a directory');
    fs.rootGeneration = root.generation;
    await fs.recoverOrphans();
    return fs;
  }

  stats(): Record<string, number> {
    return {
      ...this.counters,
      ...this.journal.stats,
      ...this.data.counters,
      cacheBlocks: this.cache.size,
      cacheHits: this.cache.hits,
      cacheMisses: this.cache.misses,
      dirtyBytes: this.data.dirtyBytes,
      freeBlocks: this.alloc.bitmap.free,
      freeInodes: this.inodeMap.free,
    };
  }

  // ---- inode records -------------------------------------------------------

  private inodeBlock(ino: number): number {
    return this.sb.inodeTableStart + Math.floor(ino / INODES_PER_BLOCK);
  }

  private async readInode(ino: number): Promise<Inode> {
    const l = this.cache.load(this.inodeBlock(ino));
    const e = l instanceof Promise ? await l : l;
    // Records are checked once per loaded buffer; records we encode are sealed as written.
    if (!this.verifiedInodeBlocks.has(e.buf)) {
      const bad = verifyInodeBlock(e.buf);
      if (bad >= 0) {
        const badIno = Math.floor(ino / INODES_PER_BLOCK) * INODES_PER_BLOCK + bad;
        if (badIno === ino) throw fsError('IO', `inode ${ino}: record checksum mismatch`);
      } else this.verifiedInodeBlocks.add(e.buf);
      if (bad >= 0) return decodeInode(e.buf, (ino % INODES_PER_BLOCK) * INODE_SIZE);
    }
    return decodeInode(e.buf, (ino % INODES_PER_BLOCK) * INODE_SIZE, true);
  }
  private readonly verifiedInodeBlocks = new WeakSet<Uint8Array>();

  private async putInode(h: Handle, ino: number, inode: Inode): Promise<void> {
    const block = this.inodeBlock(ino);
    encodeInode(inode, await h.get(block), (ino % INODES_PER_BLOCK) * INODE_SIZE);
    h.dirty(block);
  }

  private checkIno(ino: unknown): asserts ino is number {
    if (!Number.isSafeInteger(ino) || (ino as number) < 1 || (ino as number) >= this.sb.inodeCount) {
      throw fsError('BADHANDLE', `inode number ${String(ino)} is out of range`);
    }
  }

  /** The inode behind a handle, or STALE if it was freed or reused since. */
  private async live(ino: number, gen: number): Promise<Inode> {
    this.checkIno(ino);
    const inode = await this.readInode(ino);
    if (inode.type === InodeType.free || inode.generation !== gen || (inode.nlink === 0 && inode.type !== InodeType.dir)) {
      // nlink 0: a removed file whose blocks are being freed in steps (an orphan).
      throw fsError('STALE', `inode ${ino} generation ${gen} no longer exists`);
    }
    return inode;
  }

  private async liveDir(ino: number, gen: number): Promise<Inode> {
    const d = await this.live(ino, gen);
    if (d.type !== InodeType.dir) throw fsError('NOTDIR', `inode ${ino} is not a directory`);
    return d;
  }

  private attrOf(ino: number, inode: Inode): Attr {
    const d = this.data.pending(ino);
    return {
      ino,
      generation: inode.generation,
      type: fileTypeOf(inode.type),
      mode: inode.mode & 0o7777,
      nlink: inode.nlink,
      uid: inode.uid,
      gid: inode.gid,
      size: d ? d.size : inode.size,
      used: (inode.blocks + (d ? d.unmapped : 0)) * BLOCK_SIZE,
      atimeMs: inode.atimeMs,
      mtimeMs: d ? d.mtimeMs : inode.mtimeMs,
      ctimeMs: inode.ctimeMs,
    };
  }

  private readMeta = (b: number): Uint8Array | Promise<Uint8Array> => {
    const e = this.cache.load(b);
    return e instanceof Promise ? e.then((x) => x.buf) : e.buf;
  };

  // ---- transactions --------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw fsError('IO', 'filesystem is closed');
    this.counters.ops++;
  }

  /** Reserve `n` blocks, first letting a checkpoint release quarantined frees if that helps. */
  private async reserve(n: number): Promise<void> {
    if (n === 0 || this.alloc.tryReserve(n)) return;
    if (this.alloc.quarantined > 0) {
      await this.journal.checkpointNow();
      if (this.alloc.tryReserve(n)) return;
    }
    throw fsError('NOSPC', `no space: need ${n} blocks, ${Math.max(0, this.alloc.available)} available`);
  }

  /**
   * Run `fn` in a journal handle with `reserve` blocks; returns its value and
   * transaction. The running transaction is shared by every operation in
   * flight, so one that fails halfway must not leave its changes in it:
   * - `undoable` operations (file writeback, symlink) change only bitmaps and
   *   block maps before their data I/O, and register an undo step for each
   *   change: the handle is aborted, the operation reports the error, the
   *   filesystem goes on.
   * - any other operation that fails after changing something (a metadata read
   *   error, corruption found mid-way) fails the journal: nothing more commits,
   *   later changes get ROFS, and a remount recovers the last committed state.
   */
  private async inTx<T>(reserve: number, fn: (h: Handle) => Promise<T>, undoable = false): Promise<{ value: T; seq: number }> {
    await this.reserve(reserve);
    let h: Handle | null = null;
    try {
      h = await this.journal.begin();
      const value = await fn(h);
      return { value, seq: h.end() };
    } catch (err) {
      if (h && undoable) h.abort();
      else if (h?.changed) {
        const msg = err instanceof Error ? err.message : String(err);
        this.log(`operation failed halfway through a transaction (${msg}): filesystem is now read-only`);
        this.journal.abortAll(err);
      }
      throw err;
    } finally {
      h?.end();
      // Give back what was reserved but not allocated (each allocation consumed one).
      // A writeback reserves 0 here: its allocations came out of the dirty file's
      // reservation, which dropDirty then returns whole.
      this.alloc.unreserve(reserve - (h?.allocated ?? 0));
    }
  }

  private async locked<T>(inos: number[], fn: () => Promise<T>): Promise<T> {
    const unlock = await this.locks.lock(...inos);
    try {
      return await fn();
    } finally {
      unlock();
    }
  }

  /** Lock, run, unlock, then wait for durability of the transaction `fn` returned. */
  private async mutate<T>(inos: number[], fn: () => Promise<{ value: T; seq: number }>): Promise<T> {
    const r = await this.locked(inos, fn);
    await this.journal.waitDurable(r.seq);
    return r.value;
  }

  private async newInode(h: Handle, type: InodeTypeCode, opts: CreateOptions, now: number): Promise<{ ino: number; inode: Inode }> {
    const ino = await this.inodeMap.allocate(h);
    if (ino < 0) throw fsError('NOSPC', 'no free inode');
    const old = await this.readInode(ino);
    const inode = emptyInode(((old.generation + 1) >>> 0) || 1);
    Object.assign(inode, {
      type,
      mode: opts.mode & 0o7777,
      nlink: 1,
      uid: opts.uid >>> 0,
      gid: opts.gid >>> 0,
      atimeMs: now,
      mtimeMs: now,
      ctimeMs: now,
    });
    return { ino, inode };
  }

  /** Free an inode whose last link went away, with all its blocks. */
  private async freeInode(h: Handle, ino: number, inode: Inode): Promise<void> {
    if (inode.type === InodeType.dir) {
      for (const b of await dirBlocks(h.read, inode.dirRoot)) await this.alloc.free(h, b);
    } else {
      await truncateBlocks(h, this.alloc, inode, 0);
    }
    this.data.forget(ino);
    await this.putInode(h, ino, emptyInode(inode.generation));
    await this.inodeMap.clear(h, ino);
    this.inodeMap.free++;
  }

  // ---- large truncates and removes: bounded steps, an orphan list ------------
  //
  // One transaction must fit one journal record, and freeing the blocks of a huge
  // file touches a bitmap block per 128 MiB of it (more when fragmented). So a
  // truncate or remove that frees more than `truncateStep` blocks runs as several
  // transactions: the first one sets the new size (or unlinks the name and drops
  // nlink to 0) and puts the inode on the orphan list; each next one frees up to
  // `truncateStep` blocks from the end of the file; the last one takes the inode
  // off the list (and frees it, for a remove). A crash at any point leaves the
  // inode on the list, and mount finishes the job before anything else runs.
  // The list: inode record 0 (never a real inode) holds the head in `parent`;
  // each orphan holds the next one in its own `parent` (unused by files).

  /** Blocks past `keep` a file maps, at most (its block count is an upper bound). */
  private needsSteps(inode: Inode, keep: number): boolean {
    return inode.type !== InodeType.dir && inode.blocks > this.truncateStep && inode.blocks > keep;
  }

  private async orphanAdd(h: Handle, ino: number, inode: Inode): Promise<void> {
    const head = await this.readInode(0);
    inode.parent = head.parent;
    head.parent = ino;
    await this.putInode(h, 0, head);
  }

  private async orphanRemove(h: Handle, ino: number, inode: Inode): Promise<void> {
    const head = await this.readInode(0);
    if (head.parent === ino) {
      head.parent = inode.parent;
      await this.putInode(h, 0, head);
    } else {
      for (let prev = head.parent, n = 0; prev !== 0 && n < this.sb.inodeCount; n++) {
        const p = await this.readInode(prev);
        if (p.parent === ino) {
          p.parent = inode.parent;
          await this.putInode(h, prev, p);
          break;
        }
        prev = p.parent;
      }
    }
    inode.parent = 0;
  }

  /**
   * Free the blocks of orphan `ino` at logical index >= `keep`, `truncateStep`
   * at a time from the end, then take it off the list (freeing it if its last
   * link is gone). Caller holds the inode's lock (or is mounting). Returns the
   * last transaction.
   */
  private async finishOrphan(ino: number, keep: number): Promise<number> {
    let seq = 0;
    for (let step = 0; ; step++) {
      // Commit as it goes (the orphan entry first): a crash redoes at most this much.
      if (step % ORPHAN_COMMIT_STEPS === 0) await this.journal.sync();
      const r = await this.inTx(0, async (h) => {
        const inode = await this.readInode(ino);
        const end = await mappedEnd(h.read, inode);
        if (end > keep) {
          await truncateBlocks(h, this.alloc, inode, Math.max(keep, end - this.truncateStep));
          await this.putInode(h, ino, inode);
          return false;
        }
        await this.orphanRemove(h, ino, inode);
        if (inode.nlink === 0) await this.freeInode(h, ino, inode);
        else await this.putInode(h, ino, inode);
        return true;
      });
      seq = r.seq;
      if (r.value) return seq;
    }
  }

  /** Mount: finish every truncate and remove a crash interrupted. */
  private async recoverOrphans(): Promise<void> {
    const seen = new Set<number>();
    for (let ino = (await this.readInode(0)).parent; ino !== 0; ino = (await this.readInode(0)).parent) {
      if (seen.has(ino) || ino >= this.sb.inodeCount) throw fsError('IO', `orphan list is corrupt at inode ${ino}`);
      seen.add(ino);
      const inode = await this.readInode(ino);
      this.log(`finishing the interrupted ${inode.nlink === 0 ? 'remove' : 'truncate'} of inode ${ino}`);
      await this.finishOrphan(ino, inode.nlink === 0 ? 0 : Math.ceil(inode.size / BLOCK_SIZE));
    }
    if (seen.size > 0) await this.journal.sync();
  }

  private touch(inode: Inode, now: number): void {
    inode.mtimeMs = now;
    inode.ctimeMs = now;
    if (inode.type === InodeType.dir) inode.size = inode.blocks * BLOCK_SIZE;
  }

  // ---- FileSystem: attributes and names -------------------------------------

  async getattr(ino: number, gen: number): Promise<Attr> {
    this.assertOpen();
    return this.attrOf(ino, await this.live(ino, gen));
  }

  async setattr(ino: number, gen: number, attrs: SetAttr): Promise<Attr> {
    this.assertOpen();
    for (const k of ['mode', 'uid', 'gid', 'size'] as const) {
      if (attrs[k] !== undefined && !isCount(attrs[k])) throw fsError('INVAL', `setattr: ${k} must be a non-negative integer`);
    }
    for (const k of ['atimeMs', 'mtimeMs'] as const) {
      if (attrs[k] !== undefined && !Number.isFinite(attrs[k])) throw fsError('INVAL', `setattr: ${k} must be a finite number`);
    }
    if (attrs.size !== undefined && attrs.size > MAX_FILE_BLOCKS * BLOCK_SIZE) throw fsError('FBIG', 'setattr: size too large');
    this.checkIno(ino);
    return this.mutate([ino], async () => {
      const cur = await this.live(ino, gen);
      if (attrs.size !== undefined) {
        if (cur.type === InodeType.dir) throw fsError('ISDIR', 'setattr: cannot set the size of a directory');
        if (cur.type === InodeType.symlink) throw fsError('INVAL', 'setattr: cannot set the size of a symlink');
        await this.writeback(ino);
      }
      const keep = attrs.size === undefined ? 0 : Math.ceil(attrs.size / BLOCK_SIZE);
      let stepped = false;
      const r = await this.inTx(0, async (h) => {
        const inode = await this.readInode(ino);
        const now = this.now();
        if (attrs.size !== undefined && attrs.size !== inode.size) {
          if (attrs.size < inode.size) {
            // A large truncate: the new size and the orphan entry now, the blocks in steps after.
            if (this.needsSteps(inode, keep)) {
              stepped = true;
              await this.orphanAdd(h, ino, inode);
            } else await truncateBlocks(h, this.alloc, inode, keep);
          } else await this.data.zeroTailPastEof(inode);
          inode.size = attrs.size;
          inode.mtimeMs = now;
        }
        if (attrs.mode !== undefined) inode.mode = attrs.mode & 0o7777;
        if (attrs.uid !== undefined) inode.uid = attrs.uid >>> 0;
        if (attrs.gid !== undefined) inode.gid = attrs.gid >>> 0;
        if (attrs.atimeMs !== undefined) inode.atimeMs = attrs.atimeMs;
        if (attrs.mtimeMs !== undefined) inode.mtimeMs = attrs.mtimeMs;
        inode.ctimeMs = now;
        await this.putInode(h, ino, inode);
        return this.attrOf(ino, inode);
      });
      if (!stepped) return r;
      const seq = await this.finishOrphan(ino, keep);
      return { value: this.attrOf(ino, await this.readInode(ino)), seq };
    });
  }

  async lookup(dir: number, dirGen: number, name: string): Promise<Attr> {
    this.assertOpen();
    const bytes = name === '.' || name === '..' ? null : validateName(name);
    this.checkIno(dir);
    const unlock = await this.locks.lockShared(dir);
    try {
      const d = await this.liveDir(dir, dirGen);
      if (bytes === null) {
        const target = name === '.' ? dir : d.parent;
        return this.attrOf(target, await this.readInode(target));
      }
      const e = await dirLookup(this.readMeta, d.dirRoot, bytes, name);
      if (!e) throw fsError('NOENT', `no entry '${name}' in directory ${dir}`);
      return this.attrOf(e.ino, await this.readInode(e.ino));
    } finally {
      unlock();
    }
  }

  /** Validate a new entry's parent and name under the parent's lock; returns the parent and the entry's key. */
  private async checkNewEntry(dir: number, dirGen: number, bytes: Uint8Array, name: string): Promise<{ parent: Inode; key: number }> {
    const parent = await this.liveDir(dir, dirGen);
    const probe = await dirProbe(this.readMeta, parent.dirRoot, bytes, name);
    if (probe.existing) throw fsError('EXIST', `'${name}' already exists`);
    return { parent, key: probe.key };
  }

  private checkCreateOptions(opts: CreateOptions): void {
    if (!opts || !isCount(opts.mode) || !isCount(opts.uid) || !isCount(opts.gid)) {
      throw fsError('INVAL', 'create options need non-negative integer mode, uid and gid');
    }
  }

  /** Insert a new inode under `dir` and persist both (shared tail of create/mkdir/symlink). */
  private async addEntry(h: Handle, dir: number, bytes: Uint8Array, name: string, key: number, ino: number, inode: Inode, now: number): Promise<Attr> {
    const d = await this.readInode(dir);
    await dirInsert(h, this.alloc, dir, d, bytes, name, ino, inode.type, key);
    d.entries++;
    if (inode.type === InodeType.dir) d.nlink++;
    this.touch(d, now);
    await this.putInode(h, ino, inode);
    await this.putInode(h, dir, d);
    return this.attrOf(ino, inode);
  }

  async create(dir: number, dirGen: number, name: string, opts: CreateOptions & { exclusive: boolean; times?: { atimeMs: number; mtimeMs: number } }): Promise<Attr> {
    this.assertOpen();
    const bytes = validateName(name);
    this.checkCreateOptions(opts);
    if (opts.times && !(Number.isFinite(opts.times.atimeMs) && Number.isFinite(opts.times.mtimeMs))) {
      throw fsError('INVAL', 'create: times must be finite numbers');
    }
    this.checkIno(dir);
    return this.mutate([dir], async () => {
      const d = await this.liveDir(dir, dirGen);
      const { existing: e, key } = await dirProbe(this.readMeta, d.dirRoot, bytes, name);
      if (e) {
        if (opts.exclusive) throw fsError('EXIST', `'${name}' already exists`);
        if (e.type === InodeType.dir) throw fsError('ISDIR', `'${name}' is a directory`);
        if (e.type !== InodeType.file) throw fsError('EXIST', `'${name}' exists and is not a regular file`);
        return { value: this.attrOf(e.ino, await this.readInode(e.ino)), seq: 0 };
      }
      return this.inTx(INSERT_RESERVE, async (h) => {
        const now = this.now();
        const { ino, inode } = await this.newInode(h, InodeType.file, opts, now);
        if (opts.times) {
          inode.atimeMs = opts.times.atimeMs;
          inode.mtimeMs = opts.times.mtimeMs;
        }
        return this.addEntry(h, dir, bytes, name, key, ino, inode, now);
      });
    });
  }

  async mkdir(dir: number, dirGen: number, name: string, opts: CreateOptions): Promise<Attr> {
    this.assertOpen();
    const bytes = validateName(name);
    this.checkCreateOptions(opts);
    this.checkIno(dir);
    return this.mutate([dir], async () => {
      const { parent, key } = await this.checkNewEntry(dir, dirGen, bytes, name);
      if (parent.nlink >= MAX_NLINK) throw fsError('MLINK', 'too many subdirectories');
      return this.inTx(INSERT_RESERVE + 1, async (h) => {
        const now = this.now();
        const { ino, inode } = await this.newInode(h, InodeType.dir, opts, now);
        inode.nlink = 2;
        inode.parent = dir;
        inode.dirRoot = await dirCreate(h, this.alloc, ino);
        inode.blocks = 1;
        inode.size = BLOCK_SIZE;
        return this.addEntry(h, dir, bytes, name, key, ino, inode, now);
      });
    });
  }

  async symlink(dir: number, dirGen: number, name: string, target: string, opts: CreateOptions): Promise<Attr> {
    this.assertOpen();
    const bytes = validateName(name);
    this.checkCreateOptions(opts);
    if (typeof target !== 'string' || target.length === 0) throw fsError('INVAL', 'empty symlink target');
    if (target.includes('\0')) throw fsError('INVAL', 'symlink target contains NUL');
    const tbytes = new TextEncoder().encode(target);
    if (tbytes.byteLength > PATH_MAX) throw fsError('NAMETOOLONG', `symlink target is ${tbytes.byteLength} bytes (max ${PATH_MAX})`);
    this.checkIno(dir);
    return this.mutate([dir], async () => {
      const { key } = await this.checkNewEntry(dir, dirGen, bytes, name);
      return this.inTx(INSERT_RESERVE + 1, async (h) => {
        const now = this.now();
        const { ino, inode } = await this.newInode(h, InodeType.symlink, { ...opts, mode: 0o777 }, now);
        const block = await this.alloc.allocate(h);
        const data = new Uint8Array(BLOCK_SIZE);
        data.set(tbytes);
        // Before anything but the two allocations (which undo themselves): a failed write aborts cleanly.
        await this.device.pwrite(data, block * BLOCK_SIZE).catch((e: unknown) => {
          throw writebackError(ino, e);
        });
        inode.direct[0] = block;
        inode.blocks = 1;
        inode.size = tbytes.byteLength;
        try {
          return await this.addEntry(h, dir, bytes, name, key, ino, inode, now);
        } catch (e) {
          // Past the undoable part: treat like any other operation that failed halfway.
          this.journal.abortAll(e);
          throw e;
        }
      }, true);
    });
  }

  async readlink(ino: number, gen: number): Promise<string> {
    this.assertOpen();
    const inode = await this.live(ino, gen);
    if (inode.type !== InodeType.symlink) throw fsError('INVAL', `inode ${ino} is not a symlink`);
    const buf = new Uint8Array(BLOCK_SIZE);
    await this.device.pread(buf, inode.direct[0] * BLOCK_SIZE);
    return new TextDecoder().decode(buf.subarray(0, inode.size));
  }

  /**
   * Look `name` up, then lock the directory and the child together (ascending
   * order) and check the entry did not change in between; retries if it did.
   */
  private async withEntryLocked<T>(
    dir: number,
    dirGen: number,
    bytes: Uint8Array,
    name: string,
    fn: (d: Inode, child: number, c: Inode) => Promise<{ value: T; seq: number }>,
  ): Promise<T> {
    for (;;) {
      const d0 = await this.liveDir(dir, dirGen);
      const e0 = await dirLookup(this.readMeta, d0.dirRoot, bytes, name);
      if (!e0) throw fsError('NOENT', `no entry '${name}' in directory ${dir}`);
      const unlock = await this.locks.lock(dir, e0.ino);
      let r: { value: T; seq: number } | undefined;
      try {
        const d = await this.liveDir(dir, dirGen);
        const e = await dirLookup(this.readMeta, d.dirRoot, bytes, name);
        if (!e) throw fsError('NOENT', `no entry '${name}' in directory ${dir}`);
        if (e.ino === e0.ino) r = await fn(d, e.ino, await this.readInode(e.ino));
      } finally {
        unlock();
      }
      if (r) {
        await this.journal.waitDurable(r.seq);
        return r.value;
      }
    }
  }

  async remove(dir: number, dirGen: number, name: string): Promise<void> {
    this.assertOpen();
    const bytes = validateName(name);
    this.checkIno(dir);
    await this.withEntryLocked(dir, dirGen, bytes, name, async (_d, child, c) => {
      if (c.type === InodeType.dir) throw fsError('ISDIR', `'${name}' is a directory`);
      const r = await this.inTx(0, async (h) => {
        const now = this.now();
        await this.unlinkEntry(h, dir, bytes, name, now);
        return this.dropLink(h, child, now);
      });
      return r.value ? { value: undefined, seq: await this.finishOrphan(child, 0) } : { value: undefined, seq: r.seq };
    });
  }

  async rmdir(dir: number, dirGen: number, name: string): Promise<void> {
    this.assertOpen();
    const bytes = validateName(name);
    this.checkIno(dir);
    await this.withEntryLocked(dir, dirGen, bytes, name, async (_d, child, c) => {
      if (c.type !== InodeType.dir) throw fsError('NOTDIR', `'${name}' is not a directory`);
      if (c.entries > 0) throw fsError('NOTEMPTY', `directory '${name}' is not empty`);
      return this.inTx(0, async (h) => {
        const now = this.now();
        await this.unlinkEntry(h, dir, bytes, name, now);
        await this.dropLink(h, child, now);
      });
    });
  }

  /** Remove a name from a directory (and the directory's link from a subdirectory's '..'). */
  private async unlinkEntry(h: Handle, dir: number, bytes: Uint8Array, name: string, now: number): Promise<void> {
    const d = await this.readInode(dir);
    const e = await dirRemove(h, dir, d, bytes, name);
    if (!e) throw fsError('IO', `entry '${name}' vanished from directory ${dir} under its lock`);
    d.entries--;
    if (e.type === InodeType.dir) d.nlink--;
    this.touch(d, now);
    await this.putInode(h, dir, d);
  }

  /**
   * One name of `ino` went away: drop a link, free the inode with its last name.
   * Returns true when the inode is a large file left on the orphan list instead:
   * the caller frees it in steps (finishOrphan) once this transaction has ended.
   */
  private async dropLink(h: Handle, ino: number, now: number): Promise<boolean> {
    const c = await this.readInode(ino);
    if (c.type === InodeType.dir) {
      await this.freeInode(h, ino, c);
      return false;
    }
    c.nlink--;
    c.ctimeMs = now;
    if (c.nlink === 0 && this.needsSteps(c, 0)) {
      this.data.forget(ino);
      await this.orphanAdd(h, ino, c);
      await this.putInode(h, ino, c);
      return true;
    }
    if (c.nlink === 0) await this.freeInode(h, ino, c);
    else await this.putInode(h, ino, c);
    return false;
  }

  async rename(fromDir: number, fromGen: number, fromName: string, toDir: number, toGen: number, toName: string): Promise<void> {
    this.assertOpen();
    const fromBytes = validateName(fromName);
    const toBytes = validateName(toName);
    this.checkIno(fromDir);
    this.checkIno(toDir);
    for (;;) {
      const fd0 = await this.liveDir(fromDir, fromGen);
      const td0 = await this.liveDir(toDir, toGen);
      const src0 = await dirLookup(this.readMeta, fd0.dirRoot, fromBytes, fromName);
      if (!src0) throw fsError('NOENT', `no entry '${fromName}' in directory ${fromDir}`);
      const dst0 = await dirLookup(this.readMeta, td0.dirRoot, toBytes, toName);
      const movesDir = src0.type === InodeType.dir && fromDir !== toDir;
      const unlockRename = movesDir ? await this.renameLocks.lock(0) : null;
      const unlock = await this.locks.lock(fromDir, toDir, src0.ino, ...(dst0 ? [dst0.ino] : []));
      let r: { value: void; seq: number } | null = null;
      try {
        const fd = await this.liveDir(fromDir, fromGen);
        const td = await this.liveDir(toDir, toGen);
        const src = await dirLookup(this.readMeta, fd.dirRoot, fromBytes, fromName);
        if (!src) throw fsError('NOENT', `no entry '${fromName}' in directory ${fromDir}`);
        const dst = await dirLookup(this.readMeta, td.dirRoot, toBytes, toName);
        if (src.ino === src0.ino && (dst?.ino ?? 0) === (dst0?.ino ?? 0)) {
          r = await this.renameLocked(fromDir, fromBytes, fromName, toDir, toBytes, toName, src.ino, dst?.ino ?? 0);
        }
      } finally {
        unlock();
        unlockRename?.();
      }
      if (r) {
        await this.journal.waitDurable(r.seq);
        return;
      }
    }
  }

  private async renameLocked(
    fromDir: number,
    fromBytes: Uint8Array,
    fromName: string,
    toDir: number,
    toBytes: Uint8Array,
    toName: string,
    srcIno: number,
    dstIno: number,
  ): Promise<{ value: void; seq: number }> {
    const src = await this.readInode(srcIno);
    if (dstIno === srcIno) return { value: undefined, seq: 0 }; // same file: POSIX says do nothing
    if (dstIno) {
      const dst = await this.readInode(dstIno);
      if (src.type === InodeType.dir && dst.type !== InodeType.dir) throw fsError('NOTDIR', `'${toName}' is not a directory`);
      if (src.type !== InodeType.dir && dst.type === InodeType.dir) throw fsError('ISDIR', `'${toName}' is a directory`);
      if (dst.type === InodeType.dir && dst.entries > 0) throw fsError('NOTEMPTY', `directory '${toName}' is not empty`);
    }
    if (src.type === InodeType.dir && fromDir !== toDir) {
      // Moving a directory under itself would detach a loop from the tree.
      for (let p = toDir; ; ) {
        if (p === srcIno) throw fsError('INVAL', `cannot move directory '${fromName}' into itself`);
        if (p === this.rootIno) break;
        p = (await this.readInode(p)).parent;
      }
    }
    let orphan = false;
    const r = await this.inTx(INSERT_RESERVE, async (h) => {
      const now = this.now();
      if (dstIno) {
        await this.unlinkEntry(h, toDir, toBytes, toName, now);
        orphan = await this.dropLink(h, dstIno, now);
      }
      await this.unlinkEntry(h, fromDir, fromBytes, fromName, now);
      const moved = await this.readInode(srcIno);
      moved.ctimeMs = now;
      if (moved.type === InodeType.dir) moved.parent = toDir;
      await this.putInode(h, srcIno, moved);
      const td = await this.readInode(toDir);
      await dirInsert(h, this.alloc, toDir, td, toBytes, toName, srcIno, moved.type);
      td.entries++;
      if (moved.type === InodeType.dir) td.nlink++;
      this.touch(td, now);
      await this.putInode(h, toDir, td);
    });
    return orphan ? { value: undefined, seq: await this.finishOrphan(dstIno, 0) } : r;
  }

  async link(ino: number, gen: number, dir: number, dirGen: number, name: string): Promise<Attr> {
    this.assertOpen();
    const bytes = validateName(name);
    this.checkIno(ino);
    this.checkIno(dir);
    return this.mutate([ino, dir], async () => {
      const target = await this.live(ino, gen);
      if (target.type === InodeType.dir) throw fsError('ISDIR', 'cannot hard-link a directory');
      if (target.nlink >= MAX_NLINK) throw fsError('MLINK', `inode ${ino} has too many links`);
      const { key } = await this.checkNewEntry(dir, dirGen, bytes, name);
      return this.inTx(INSERT_RESERVE, async (h) => {
        const now = this.now();
        const d = await this.readInode(dir);
        await dirInsert(h, this.alloc, dir, d, bytes, name, ino, target.type, key);
        d.entries++;
        this.touch(d, now);
        await this.putInode(h, dir, d);
        const t = await this.readInode(ino);
        t.nlink++;
        t.ctimeMs = now;
        await this.putInode(h, ino, t);
        return this.attrOf(ino, t);
      });
    });
  }

  async readdir(dir: number, dirGen: number, cookie: number, maxEntries: number): Promise<{ entries: DirEntry[]; eof: boolean }> {
    this.assertOpen();
    if (!isCount(cookie)) throw fsError('INVAL', 'readdir: cookie must be a non-negative integer');
    if (!isCount(maxEntries) || maxEntries < 1) throw fsError('INVAL', 'readdir: maxEntries must be a positive integer');
    this.checkIno(dir);
    const unlock = await this.locks.lockShared(dir);
    try {
      const d = await this.liveDir(dir, dirGen);
      const r = await dirList(this.readMeta, d.dirRoot, cookie, maxEntries);
      return { entries: r.entries.map((e) => ({ name: e.name, ino: e.ino, cookie: e.key })), eof: r.eof };
    } finally {
      unlock();
    }
  }

  // ---- FileSystem: data ----------------------------------------------------

  async read(ino: number, gen: number, offset: number, length: number): Promise<{ data: Uint8Array; eof: boolean; attr: Attr }> {
    this.assertOpen();
    if (!isCount(offset) || !isCount(length)) throw fsError('INVAL', 'read: offset and length must be non-negative integers');
    if (length > MAX_READ) throw fsError('INVAL', `read: length ${length} exceeds ${MAX_READ}`);
    this.checkIno(ino);
    const unlock = await this.locks.lockShared(ino);
    try {
      const inode = await this.live(ino, gen);
      if (inode.type === InodeType.dir) throw fsError('ISDIR', `inode ${ino} is a directory`);
      if (inode.type !== InodeType.file) throw fsError('INVAL', `inode ${ino} is not a regular file`);
      this.counters.reads++;
      const { data, eof } = await this.data.read(ino, inode, offset, length);
      return { data, eof, attr: this.attrOf(ino, inode) };
    } finally {
      unlock();
    }
  }

  async write(ino: number, gen: number, offset: number, data: Uint8Array, stable: boolean): Promise<Attr> {
    this.assertOpen();
    if (!isCount(offset)) throw fsError('INVAL', 'write: offset must be a non-negative integer');
    if (!(data instanceof Uint8Array)) throw fsError('INVAL', 'write: data must be bytes');
    if (offset + data.byteLength > MAX_FILE_BLOCKS * BLOCK_SIZE) throw fsError('FBIG', 'write: beyond the largest file size');
    this.checkIno(ino);
    this.counters.writes++;
    // Unstable writes only buffer; refuse them too once nothing can commit.
    if (this.journal.failed) throw this.journal.readOnlyError();
    if (stable && data.byteLength > 0) {
      const attr = (await this.overwrite(ino, gen, offset, data)) ?? (await this.writeBeforeMap(ino, gen, offset, data, true));
      if (attr) return attr;
    } else if (data.byteLength >= DIRECT_UNSTABLE_BYTES) {
      // A large unstable write gains nothing from the page buffer (no later write
      // merges into it): it goes to the device now, straight from the request,
      // into an extent claimed for it, and is mapped in the running transaction.
      const attr = await this.writeBeforeMap(ino, gen, offset, data, false);
      if (attr) return attr;
    }
    let seq = 0;
    const attr = await this.locked([ino], async () => {
      const inode = await this.live(ino, gen);
      if (inode.type === InodeType.dir) throw fsError('ISDIR', `inode ${ino} is a directory`);
      if (inode.type !== InodeType.file) throw fsError('INVAL', `inode ${ino} is not a regular file`);
      if (data.byteLength > 0) await this.data.buffer(ino, inode, offset, data);
      if (stable || this.data.overLimit) seq = await this.writeback(ino);
      return this.attrOf(ino, await this.readInode(ino));
    });
    if (stable) await this.journal.waitDurable(seq);
    return attr;
  }

  /**
   * The fast stable write: bytes over blocks the file already has, inside its
   * size, with no unstable data of the file in memory. Written in place under the
   * inode's shared lock and a lock on just those blocks, so writes to other blocks
   * of the same file (and reads) go on meanwhile; one durable device write per
   * run of consecutive blocks and no journal commit of its own. The new mtime and
   * ctime join the running transaction and ride on the next commit, as ext4's
   * fdatasync leaves them. After a crash: the data is there (it was durable before
   * the reply), the size is unchanged, the times may be those of the last commit.
   * Returns null, having done nothing, when the write needs the allocating path.
   */
  private async overwrite(ino: number, gen: number, offset: number, data: Uint8Array): Promise<Attr | null> {
    const unlock = await this.locks.lockShared(ino);
    try {
      const inode = await this.live(ino, gen);
      if (inode.type !== InodeType.file || this.data.pending(ino)) return null;
      if (offset + data.byteLength > inode.size) return null;
      const unlockRange = await this.ranges.lock(ino, Math.floor(offset / BLOCK_SIZE), Math.floor((offset + data.byteLength - 1) / BLOCK_SIZE));
      try {
        if (!(await this.data.overwrite(inode, offset, data))) return null;
      } catch (err) {
        throw writebackError(ino, err);
      } finally {
        unlockRange();
      }
      this.counters.overwrites++;
      // The blocks may have been mapped by a writeback whose transaction has not
      // committed yet (an unstable write over the dirty limit): the data is only
      // reachable after a crash once that mapping is durable.
      const mapped = this.mapSeq.get(ino);
      if (mapped !== undefined) {
        if (this.journal.isDurable(mapped)) this.mapSeq.delete(ino);
        else await this.journal.waitDurable(mapped);
      }
      const now = this.now();
      const cur = await this.readInode(ino);
      if (cur.mtimeMs !== now || cur.ctimeMs !== now) {
        const unlockMap = await this.mapLocks.lock(ino);
        try {
          const { value } = await this.inTx(0, async (h) => {
            const latest = await this.readInode(ino);
            latest.mtimeMs = Math.max(latest.mtimeMs, now);
            latest.ctimeMs = Math.max(latest.ctimeMs, now);
            await this.putInode(h, ino, latest);
            return this.attrOf(ino, latest);
          });
          this.journal.commitSoon();
          return value;
        } finally {
          unlockMap();
        }
      }
      return this.attrOf(ino, cur);
    } finally {
      unlock();
    }
  }

  /**
   * A stable write that allocates blocks or extends the file, with no unstable
   * data of the file in memory: write-before-map. Under the inode's shared lock
   * and a lock on just its blocks (so other writes to the file and reads go on):
   * claim the new blocks in memory (alloc.ts `claim`: nothing on the volume),
   * write the data into them and over the blocks the file already has, outside
   * any transaction; then, in a short section (the file's map lock), set the
   * claimed bits, map them, set size and times, in the running transaction; then
   * wait for that transaction with everyone else's (group commit).
   * After a crash: acknowledged, the data, map and size are there (the commit's
   * flush covered the data). Not acknowledged: either the transaction committed
   * (new content) or it did not, and then the claimed blocks are free and
   * unmapped, the size is the old one, so the file reads its old content (holes
   * as zeroes) and no file sees the written blocks; blocks the file already had
   * may hold the new bytes, as with any unacknowledged in-place write.
   * Returns null, having done nothing, when the buffered path must take it (the
   * file has dirty pages, or the write starts past an end of file inside a block
   * whose old tail must first be zeroed).
   */
  private async writeBeforeMap(ino: number, gen: number, offset: number, data: Uint8Array, stable: boolean): Promise<Attr | null> {
    let seq: number;
    let attr: Attr;
    const unlock = await this.locks.lockShared(ino);
    try {
      const inode = await this.live(ino, gen);
      if (inode.type !== InodeType.file || this.data.pending(ino)) return null;
      if (offset > inode.size && inode.size % BLOCK_SIZE !== 0) return null;
      const end = offset + data.byteLength;
      const first = Math.floor(offset / BLOCK_SIZE);
      const last = Math.floor((end - 1) / BLOCK_SIZE);
      const unlockRange = await this.ranges.lock(ino, first, last);
      try {
        const phys = await this.data.blocksOf(inode, first, last);
        const fresh = phys.map((p) => p === 0);
        let n = 0;
        for (const f of fresh) if (f) n++;
        // Blocks past the end of file are not the file's (a truncate freed them): never written in place.
        const lastOwned = Math.ceil(inode.size / BLOCK_SIZE) - 1;
        for (let i = 0; i < phys.length; i++) if (!fresh[i] && first + i > lastOwned) return null;
        const need = worstCaseBlocks(n);
        await this.reserve(need);
        let claimed = 0;
        // Runs of new blocks: phys[at .. at+count) = start .. start+count-1 (an extent).
        const claims: Array<{ at: number; start: number; count: number }> = [];
        try {
          for (let i = 0; i < phys.length; ) {
            if (!fresh[i]) {
              i++;
              continue;
            }
            let want = 1;
            while (i + want < phys.length && fresh[i + want]) want++;
            const run = await this.alloc.claim(want);
            claimed += run.count;
            claims.push({ at: i, start: run.start, count: run.count });
            for (let k = 0; k < run.count; k++) phys[i + k] = run.start + k;
            i += run.count;
          }
          await this.data.writeBlocks(ino, offset, data, phys, fresh);
          const mtime = this.now();
          const unlockMap = await this.mapLocks.lock(ino);
          try {
            ({ seq, value: attr } = await this.inTx(
              0,
              async (h) => {
                const cur = await this.readInode(ino);
                for (const c of claims) {
                  await this.alloc.commitClaim(h, c.start, c.count);
                  await mapRun(h, this.alloc, cur, first + c.at, c.start, c.count);
                }
                if (end > cur.size) cur.size = end;
                cur.mtimeMs = Math.max(cur.mtimeMs, mtime);
                cur.ctimeMs = Math.max(cur.ctimeMs, this.now());
                await this.putInode(h, ino, cur);
                return this.attrOf(ino, cur);
              },
              true,
            ));
          } finally {
            unlockMap();
          }
        } catch (err) {
          if (this.journal.failed) throw err;
          throw writebackError(ino, err);
        } finally {
          // Claimed blocks the map did not take (a failed write or map) are free again.
          for (let i = 0; i < phys.length; i++) if (fresh[i] && phys[i] !== 0) this.alloc.releaseClaim(phys[i]);
          // The claims consumed their part of the reservation; the rest goes back
          // (indirect blocks the map allocated are accounted by inTx, as for a writeback).
          this.alloc.unreserve(need - claimed);
        }
      } finally {
        unlockRange();
      }
      this.counters.mappedWrites++;
      const prev = this.mapSeq.get(ino);
      if (prev === undefined || prev < seq) this.mapSeq.set(ino, seq);
    } finally {
      unlock();
    }
    // Unstable: the map commits with the next transaction someone waits for (a COMMIT
    // of the file syncs the journal), or within the commit interval.
    if (stable) await this.journal.waitDurable(seq);
    else this.journal.commitSoon();
    return attr;
  }

  /**
   * Write a file's dirty pages back and journal its new map, size and mtime.
   * Caller holds the inode lock. Returns the transaction to wait for (0 if
   * there was nothing to write).
   */
  private async writeback(ino: number): Promise<number> {
    if (!this.data.pending(ino)) return 0;
    this.counters.writebacks++;
    let seq: number;
    try {
      // Reserves 0: the pages' own reservation pays for their blocks (see inTx).
      ({ seq } = await this.inTx(0, async (h) => {
        const inode = await this.readInode(ino);
        await this.data.writePages(h, ino, inode);
        inode.ctimeMs = this.now();
        await this.putInode(h, ino, inode);
      }, true));
    } catch (err) {
      // inTx rolled the map back; the pages go too (whatever failed: a data write, a
      // metadata read), so memory stays bounded, and a later COMMIT reports the loss.
      if (this.journal.failed) throw err;
      const e = writebackError(ino, err);
      this.counters.writebackErrors++;
      this.data.failed(ino, e);
      this.log(`inode ${ino}: ${e.message}; its unwritten data was dropped`);
      throw e;
    }
    this.data.drop(ino);
    if (this.mapSeq.size >= MAP_SEQ_SWEEP) {
      for (const [i, s] of this.mapSeq) if (this.journal.isDurable(s)) this.mapSeq.delete(i);
    }
    this.mapSeq.set(ino, seq);
    return seq;
  }
  /** Per inode, the last writeback transaction that mapped blocks (in-place overwrites wait for it). */
  private readonly mapSeq = new Map<number, number>();

  /**
   * Write back and make durable one file (or every file). A commit of one file
   * also reports, once, a failed writeback of that file that an earlier call
   * ran into (an unstable WRITE over the dirty limit, a commit of everything):
   * the data it dropped may have been acknowledged.
   */
  async commit(ino?: number, gen?: number): Promise<void> {
    this.assertOpen();
    const inos = ino === undefined ? this.data.dirtyInodes() : [ino];
    if (ino !== undefined) {
      this.checkIno(ino);
      if (gen !== undefined) await this.live(ino, gen);
    }
    let first: unknown = null;
    for (const i of inos) {
      try {
        await this.locked([i], () => this.writeback(i));
      } catch (err) {
        first ??= err;
      }
    }
    // Only a COMMIT of the file itself takes the error: a commit of everything (server
    // stop, close) has nobody to hand a client's lost write to.
    if (ino !== undefined) {
      const sticky = this.data.takeError(ino); // taken even when this call's own writeback failed
      first ??= sticky ?? null;
    }
    // Files that did write back are made durable either way.
    await this.journal.sync();
    if (first) throw first;
  }

  async statfs(): Promise<FsStat> {
    this.assertOpen();
    const free = Math.max(0, this.alloc.bitmap.free + this.alloc.quarantined - this.alloc.reserved);
    return {
      totalBytes: this.sb.totalBlocks * BLOCK_SIZE,
      freeBytes: free * BLOCK_SIZE,
      totalFiles: this.sb.inodeCount - 1,
      freeFiles: this.inodeMap.free,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.commit();
    } catch (err) {
      // A failed writeback was rolled back and logged; the metadata still closes clean.
      const code = fsCodeOf(err);
      if ((code !== 'IO' && code !== 'NOSPC') || this.journal.failed) throw err;
      this.log(`closing despite a failed writeback: ${(err as Error).message}`);
    }
    this.closed = true;
    await this.journal.checkpointNow();
    await this.journal.drain();
    await this.device.flush();
    this.log(`filesystem ${this.fsid.toString(16)} closed`);
  }
}

