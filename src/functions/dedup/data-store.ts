/**
 * Data blocks of a dedup volume: reading a location (raw block or packed fragment),
 * writing raw blocks, the open packed block (packer) and packed blocks being sealed.
 * Physical blocks are never overwritten while referenced, so a cached copy of a block
 * stays valid until the block is reallocated (Metadata.allocate drops it).
 */
import type { BlockDevice } from '../../block/types.ts';
import { BLOCK, LocKind, REF_MAX, encodeLoc, locKind, locPba, locSlot, refCount, refEntry, refFragments } from './format.ts';
import { fragmentOf, Packer, type Codec } from './fragments.ts';
import { BlockLru } from './block-lru.ts';
import type { Metadata } from './metadata.ts';
import { corruptData } from './errors.ts';
import { ioError } from '../../util/errors.ts';

/** A raw block whose pwrite is in flight: its bytes, the write, and whether it failed. */
export interface InFlight {
  data: Uint8Array;
  done: Promise<void>;
  failed: boolean;
}

/** A chunk's fresh raw blocks, visible from phase 1 on, settled when their writes land. */
export interface RawClaim {
  items: Array<{ pba: number; data: Uint8Array }>;
  entries: InFlight[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** What writeData's reused list holds between calls (no request's buffer). */
const NO_DATA = new Uint8Array(0);
/** Physical blocks one coalesced read may cover. */
const MAX_RUN = 64;
/** Blocks per write chunk, at most. */
export const MAX_CHUNK = 64;
/** Gather buffers: one chunk of blocks each, at most RUN_POOL kept (4 MiB). */
const RUN_BYTES = MAX_CHUNK * BLOCK;
const RUN_POOL = 16;
/** Leave head room under REF_MAX for a chunk's increments. */
export const REF_LIMIT = REF_MAX - 2 * MAX_CHUNK;

/** Byte equality of two views (Buffer's native compare, without making a Buffer of each). */
const bufferEquals = Buffer.prototype.equals as (this: Uint8Array, other: Uint8Array) => boolean;
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => bufferEquals.call(a, b);

export class DataStore {
  packer: Packer | null = null;
  /**
   * Sealed packed blocks whose pwrite is still in flight: reads are served from here (a
   * concurrent pread could see the old bytes), and commit waits for them before flushing.
   */
  readonly sealing = new Map<number, Promise<void>>();
  private readonly sealingBlocks = new Map<number, Uint8Array>();
  sealFailure: unknown = null;
  /** Sealed packed blocks not yet handed to the backing (writeData). */
  private toSeal: Packer[] = [];
  /**
   * Raw blocks being written. A concurrent write may share one (its index entry is made
   * before the data lands): it verifies against these bytes and waits for the write before
   * it maps the block. A failed write stays here, refused, until its writer has taken its
   * references back.
   */
  readonly inflight = new Map<number, InFlight>();
  /**
   * Buffers for gathering runs of raw or sealed blocks into one pwrite (a chunk's raw blocks
   * are not adjacent in the request when fragments sit between them): reused instead of a
   * fresh zero-filled ArrayBuffer per chunk (external memory that drove the GC, #12). At
   * most RUN_POOL are kept; more in flight at once are allocated and dropped.
   */
  private readonly runPool: Uint8Array[] = [];
  /** writeData's lists of blocks to write (block number, bytes, the packer when sealed): reused, used synchronously. */
  private readonly wPba: number[] = [];
  private readonly wData: Uint8Array[] = [];
  private readonly wSeal: Array<Packer | null> = [];

  private takeRun(bytes: number): Uint8Array {
    if (bytes > RUN_BYTES) return new Uint8Array(bytes);
    return (this.runPool.pop() ?? new Uint8Array(RUN_BYTES)).subarray(0, bytes);
  }

  private giveRun(buf: Uint8Array): void {
    if (buf.buffer.byteLength === RUN_BYTES && this.runPool.length < RUN_POOL) this.runPool.push(new Uint8Array(buf.buffer));
  }

  /** Verification buffer: used only by writes, which run alone. */
  private readonly scratch = new Uint8Array(BLOCK);

  constructor(
    private readonly backing: BlockDevice,
    private readonly meta: Metadata,
    private readonly codec: Codec | null,
    readonly dataBlocks: BlockLru,
    private readonly dedup: boolean,
    private readonly log: (msg: string) => void,
  ) {}

  // ------------------------------------------------------------------ reads

  /** Read the 4 KiB the location holds into `out`. */
  async readLoc(loc: number, out: Uint8Array, lbn: number): Promise<void> {
    if (loc === 0) {
      out.fill(0);
      return;
    }
    const bad = this.meta.locProblem(loc);
    if (bad) {
      const err = corruptData(lbn, bad);
      this.log(err.message);
      throw err;
    }
    const pba = locPba(loc);
    if (locKind(loc) === LocKind.Raw) {
      const f = this.inflight.get(pba);
      if (f?.failed) throw ioError(`dedup: data block ${pba} failed to write`);
      if (f) return out.set(f.data);
      const cached = this.dataBlocks.get(pba);
      if (cached) return out.set(cached);
      await this.backing.pread(out, pba * BLOCK);
      if (this.dedup) this.dataBlocks.put(pba, out); // a likely duplicate candidate
      return;
    }
    let block = this.packer?.pba === pba ? this.packer.buf : (this.sealingBlocks.get(pba) ?? this.dataBlocks.get(pba));
    if (!block) {
      block = new Uint8Array(BLOCK);
      await this.backing.pread(block, pba * BLOCK);
      this.dataBlocks.put(pba, block); // a copy: `block` stays ours
    }
    // From here on synchronous: a cached view is only valid until the next put.
    const frag = fragmentOf(block, locSlot(loc));
    const why = typeof frag === 'string' ? frag : this.codec!.decompress(frag, out) ? null : 'fragment does not decompress to one block';
    if (why) {
      const err = corruptData(lbn, why);
      this.log(err.message);
      throw err;
    }
  }

  async readBlock(lbn: number, out: Uint8Array): Promise<void> {
    await this.readLoc(await this.meta.getLoc(lbn), out, lbn);
  }

  /**
   * Read whole blocks. The physical blocks they need (raw blocks, packed blocks not in
   * memory) are read in runs of consecutive block numbers, whatever the logical order:
   * a sequentially written range of raw and packed blocks comes back in one pread. Every
   * run is issued at once; a run of raw blocks in logical order is read straight into `out`.
   */
  async readBlocks(first: number, out: Uint8Array): Promise<void> {
    const n = out.byteLength / BLOCK;
    const locs: number[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const loc = this.meta.getLoc(first + i);
      locs[i] = typeof loc === 'number' ? loc : await loc;
    }
    const reads: Promise<void>[] = [];
    const need = new Map<number, number[]>(); // physical block -> indexes of the blocks it holds
    for (let i = 0; i < n; i++) {
      const loc = locs[i]!;
      if (loc === 0 || this.meta.locProblem(loc)) {
        reads.push(this.readLoc(loc, out.subarray(i * BLOCK, (i + 1) * BLOCK), first + i)); // zeroes, or the error it deserves
        continue;
      }
      if (locKind(loc) === LocKind.Packed) {
        try {
          if (this.fromMemory(locPba(loc), [i], locs, out, first)) continue;
        } catch (err) {
          reads.push(Promise.reject(err)); // reported once the reads already issued have settled
          continue;
        }
      }
      const list = need.get(locPba(loc));
      if (list) list.push(i);
      else need.set(locPba(loc), [i]);
    }
    const pbas = [...need.keys()].sort((a, b) => a - b);
    for (let a = 0; a < pbas.length; ) {
      let b = a + 1;
      while (b < pbas.length && b - a < MAX_RUN && pbas[b] === pbas[a]! + (b - a)) b++;
      reads.push(this.readRun(pbas.slice(a, b), need, locs, out, first));
      a = b;
    }
    const results = await Promise.allSettled(reads); // none may still write into `out` after we return
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Read consecutive physical blocks with one pread and hand each block's contents to the logical blocks it holds. */
  private async readRun(run: number[], need: Map<number, number[]>, locs: number[], out: Uint8Array, first: number): Promise<void> {
    const idx0 = need.get(run[0]!)![0]!;
    const direct = run.every((pba, k) => {
      const idx = need.get(pba)!;
      return idx.length === 1 && idx[0] === idx0 + k && locKind(locs[idx[0]!]!) === LocKind.Raw;
    });
    if (direct) return this.backing.pread(out.subarray(idx0 * BLOCK, (idx0 + run.length) * BLOCK), run[0]! * BLOCK);
    const tmp = new Uint8Array(run.length * BLOCK);
    await this.backing.pread(tmp, run[0]! * BLOCK);
    run.forEach((pba, k) => {
      const block = tmp.subarray(k * BLOCK, (k + 1) * BLOCK);
      const idx = need.get(pba)!;
      if (locKind(locs[idx[0]!]!) === LocKind.Raw) {
        for (const i of idx) out.set(block, i * BLOCK);
      } else {
        this.dataBlocks.put(pba, block);
        this.decompressInto(block, idx, locs, out, first);
      }
    });
  }

  /** Serve packed fragments from a block held in memory (open packer, sealing, recent); false when it is not. */
  private fromMemory(pba: number, idx: number[], locs: number[], out: Uint8Array, first: number): boolean {
    const block = this.packer?.pba === pba ? this.packer.buf : (this.sealingBlocks.get(pba) ?? this.dataBlocks.get(pba));
    if (!block) return false;
    this.decompressInto(block, idx, locs, out, first); // synchronous: a cached view is valid until the next put
    return true;
  }

  /** Decompress the fragments at `idx` (block indexes of a readBlocks call) from one packed block. */
  private decompressInto(block: Uint8Array, idx: number[], locs: number[], out: Uint8Array, first: number): void {
    for (const i of idx) {
      const frag = fragmentOf(block, locSlot(locs[i]!));
      const dest = out.subarray(i * BLOCK, (i + 1) * BLOCK);
      const why = typeof frag === 'string' ? frag : this.codec!.decompress(frag, dest) ? null : 'fragment does not decompress to one block';
      if (why) {
        const err = corruptData(first + i, why);
        this.log(err.message);
        throw err;
      }
    }
  }

  /**
   * Prefetch (outside the metadata mutex, from prepare) the block of a likely duplicate's
   * candidate (raw, or the packed block holding its fragment) when it is neither being
   * written nor in memory, so that verifying it under the mutex needs no read: the read no
   * longer holds every other write's metadata steps. Only for a block live now (its
   * refcount page cached); `reads` shares one read per block among a chunk's candidates.
   * The bytes may be adopted only while Metadata.reuseGen is unchanged (adopt). Null:
   * nothing to prefetch; a failed read yields null (verified the ordinary way then).
   */
  prefetch(loc: number, reads: Map<number, Promise<Uint8Array | null>>): Promise<Uint8Array | null> | null {
    if (this.meta.locProblem(loc)) return null;
    const pba = locPba(loc);
    const known = reads.get(pba);
    if (known) return known;
    if (locKind(loc) === LocKind.Raw ? this.inflight.has(pba) : this.packer?.pba === pba || this.sealingBlocks.has(pba)) return null;
    if (this.dataBlocks.has(pba)) return null;
    const e = this.meta.getRef(pba);
    if (typeof e !== 'number' || refCount(e) === 0) return null;
    const buf = this.prefetchBuffer();
    const read = this.backing.pread(buf, pba * BLOCK).then(
      () => buf,
      () => null,
    );
    reads.set(pba, read);
    return read;
  }

  /** Prefetch buffers are cut from 256 KiB slabs (one ArrayBuffer per 64 reads: profiled at 4 KiB writes); a slab is freed once no view of it is left. */
  private prefetchSlab = new Uint8Array(0);
  private prefetchAt = 0;
  private prefetchBuffer(): Uint8Array {
    if (this.prefetchAt + BLOCK > this.prefetchSlab.length) {
      this.prefetchSlab = new Uint8Array(64 * BLOCK);
      this.prefetchAt = 0;
    }
    this.prefetchAt += BLOCK;
    return this.prefetchSlab.subarray(this.prefetchAt - BLOCK, this.prefetchAt);
  }

  /**
   * Take a prefetched block into the recent blocks (under the mutex, in phase 1). The caller
   * checked that Metadata.reuseGen is what it was when the read started: the block was live
   * then and has not been reallocated since, so these are its bytes.
   */
  adopt(pba: number, block: Uint8Array): void {
    if (this.inflight.has(pba) || this.dataBlocks.has(pba) || this.packer?.pba === pba || this.sealingBlocks.has(pba)) return;
    this.dataBlocks.put(pba, block);
  }

  /** A candidate from the index is shared only if its block is live and its bytes are equal. */
  verifyCandidate(loc: number, data: Uint8Array): boolean | Promise<boolean> {
    if (this.meta.locProblem(loc)) return false;
    const pba = locPba(loc);
    const e = this.meta.getRef(pba);
    if (typeof e !== 'number') return e.then((e) => this.verifyWith(loc, e, data));
    return this.verifyWith(loc, e, data);
  }

  private verifyWith(loc: number, e: number, data: Uint8Array): boolean | Promise<boolean> {
    if (refCount(e) === 0 || refCount(e) >= REF_LIMIT) return false;
    if (locKind(loc) === LocKind.Packed && locSlot(loc) >= refFragments(e)) return false;
    // In memory (being written, recent, packed and open or sealing): compared at once.
    const pba = locPba(loc);
    if (locKind(loc) === LocKind.Raw) {
      const f = this.inflight.get(pba);
      if (f) return !f.failed && sameBytes(f.data, data);
      const cached = this.dataBlocks.get(pba);
      if (cached) return sameBytes(cached, data);
    } else {
      // A fragment of a packed block in memory: decompressed and compared at once.
      const block = this.packer?.pba === pba ? this.packer.buf : (this.sealingBlocks.get(pba) ?? this.dataBlocks.get(pba));
      if (block) return this.codec!.fragmentEquals(block, locSlot(loc), data);
    }
    return this.verifyRead(loc, data);
  }

  private async verifyRead(loc: number, data: Uint8Array): Promise<boolean> {
    try {
      await this.readLoc(loc, this.scratch, -1);
    } catch {
      return false;
    }
    return sameBytes(this.scratch, data);
  }

  // ------------------------------------------------------------------ writes

  /**
   * Phase 1 (under the metadata mutex): make a chunk's fresh raw blocks visible before their
   * write starts, so a concurrent write of the same bytes that finds one in the index
   * verifies against these bytes and waits for the write (never reads the block unwritten).
   */
  claimRaw(items: Array<{ pba: number; data: Uint8Array }>): RawClaim {
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((a, b) => ((resolve = a), (reject = b)));
    done.catch(() => {}); // handled by writeData's caller and by any writer waiting on it
    const entries: InFlight[] = new Array(items.length);
    for (let k = 0; k < items.length; k++) {
      const e: InFlight = { data: items[k]!.data, done, failed: false };
      this.inflight.set(items[k]!.pba, e);
      entries[k] = e;
    }
    return { items, entries, resolve, reject };
  }

  /**
   * Start the writes of a chunk's fresh raw blocks (claim) and of every sealed packed block
   * not yet written, one pwrite per run of consecutive block numbers, raw and packed blocks
   * together. A chunk allocates its raw run right after the packer it seals and before the
   * packers it opens, so its data usually goes in one pwrite instead of four or five (#12:
   * each costs ~20 us of request-thread CPU, and a thread-pool wake-up). Resolves when the
   * claim's raw blocks are written (null without a claim); sealed blocks settle on their
   * own (sealing, sealFailure). Called outside the mutex, synchronously after phase 1.
   */
  writeData(claim: RawClaim | null): Promise<void> | null {
    const seals = this.toSeal;
    this.toSeal = [];
    if (!claim && seals.length === 0) return null;
    // The blocks to write, by block number, in three reused parallel arrays (#12: an object
    // per raw block and a sort with a comparator per chunk). Each list is in block order
    // already (the allocator's cursor), so merging them is an insertion pass.
    const pbas = this.wPba;
    const datas = this.wData;
    const sealOf = this.wSeal;
    let n = 0;
    if (claim) {
      for (const it of claim.items) {
        pbas[n] = it.pba;
        datas[n] = it.data;
        sealOf[n++] = null;
      }
    }
    for (const p of seals) {
      let k = n++;
      for (; k > 0 && pbas[k - 1]! > p.pba; k--) {
        pbas[k] = pbas[k - 1]!;
        datas[k] = datas[k - 1]!;
        sealOf[k] = sealOf[k - 1]!;
      }
      pbas[k] = p.pba;
      datas[k] = p.buf;
      sealOf[k] = p;
    }
    const rawWrites: Promise<void>[] = [];
    for (let i = 0; i < n; ) {
      let j = i + 1;
      while (j < n && pbas[j] === pbas[i]! + (j - i)) j++;
      const first = datas[i]!;
      let run = first;
      let gathered: Uint8Array | null = null;
      if (j - i > 1) {
        let adjacent = true; // raw blocks side by side in the request's own buffer: written from there
        for (let k = i + 1; k < j && adjacent; k++) adjacent = datas[k]!.buffer === first.buffer && datas[k]!.byteOffset === first.byteOffset + (k - i) * BLOCK;
        if (adjacent) run = new Uint8Array(first.buffer, first.byteOffset, (j - i) * BLOCK);
        else {
          run = gathered = this.takeRun((j - i) * BLOCK);
          for (let k = i; k < j; k++) run.set(datas[k]!, (k - i) * BLOCK);
        }
      }
      const write = this.backing.pwrite(run, pbas[i]! * BLOCK);
      let sealed: Packer[] | null = null;
      let raw = false;
      for (let k = i; k < j; k++) {
        const seal = sealOf[k];
        if (seal) (sealed ??= []).push(seal);
        else {
          raw = true;
          // Recent blocks are the likeliest duplicates: keep copies so verifying them needs no read.
          if (this.dedup) this.dataBlocks.put(pbas[k]!, datas[k]!);
        }
      }
      if (raw) rawWrites.push(write);
      if (sealed) {
        const done = sealed;
        const settle = () => {
          for (const p of done) {
            this.sealing.delete(p.pba);
            this.sealingBlocks.delete(p.pba);
          }
        };
        const settled = write.then(settle, (err: unknown) => {
          settle();
          this.sealFailure ??= err;
        });
        for (const p of done) this.sealing.set(p.pba, settled);
      }
      if (gathered) {
        const buf = gathered;
        const give = () => this.giveRun(buf);
        write.then(give, give); // the gather buffer is free once its write settled
      }
      i = j;
    }
    datas.fill(NO_DATA, 0, n); // hold no request's buffer past the call
    sealOf.fill(null, 0, n);
    return claim ? this.rawWritten(claim, rawWrites) : null;
  }

  /** The claim's raw writes settled: its blocks become ordinary (or refused, when one failed). */
  private async rawWritten(claim: RawClaim, writes: Promise<void>[]): Promise<void> {
    const items = claim.items;
    let failed = false;
    let failure: unknown;
    if (writes.length === 1) {
      try {
        await writes[0];
      } catch (err) {
        failed = true;
        failure = err;
      }
    } else if (writes.length > 1) {
      const rejected = (await Promise.allSettled(writes)).find((r) => r.status === 'rejected');
      if (rejected) {
        failed = true;
        failure = (rejected as PromiseRejectedResult).reason;
      }
    }
    if (failed) {
      for (const e of claim.entries) e.failed = true; // refused to everyone until forgetFailed
      claim.reject(failure);
      throw failure;
    }
    for (let k = 0; k < items.length; k++) if (this.inflight.get(items[k]!.pba) === claim.entries[k]) this.inflight.delete(items[k]!.pba);
    claim.resolve();
  }

  /** Forget raw blocks whose write failed, once their references are gone. */
  forgetFailed(pbas: number[]): void {
    for (const pba of pbas) {
      if (this.inflight.get(pba)?.failed) this.inflight.delete(pba);
      this.dataBlocks.delete(pba);
    }
  }

  /**
   * Put a fragment in the open packed block (sealing it and opening another when full),
   * with one reference. Synchronous while the refcount pages involved are cached.
   */
  pack(fragment: Uint8Array): number | Promise<number> {
    if (this.packer && !this.packer.fits(fragment.length)) {
      const w = this.sealPacker();
      if (w) return w.then(() => this.packOpen(fragment));
    }
    return this.packOpen(fragment);
  }

  private packOpen(fragment: Uint8Array): number | Promise<number> {
    if (this.packer) return this.addFragment(this.packer, fragment);
    // The open packer holds one reference of its own, so it is never freed while filling.
    const pba = this.meta.allocate(0, 1);
    if (typeof pba !== 'number') return pba.then((b) => this.addFragment((this.packer = new Packer(b)), fragment));
    return this.addFragment((this.packer = new Packer(pba)), fragment);
  }

  private addFragment(packer: Packer, fragment: Uint8Array): number | Promise<number> {
    const slot = packer.add(fragment);
    this.meta.counters.storedFragments++;
    const loc = encodeLoc(LocKind.Packed, packer.pba, slot);
    const e = this.meta.getRef(packer.pba);
    // The fragment's first reference.
    const w = typeof e === 'number' ? this.meta.setRef(packer.pba, refEntry(refCount(e) + 1, refFragments(e) + 1)) : e.then((e) => this.meta.setRef(packer.pba, refEntry(refCount(e) + 1, refFragments(e) + 1)));
    return w ? w.then(() => loc) : loc;
  }

  /** Seal the open packer: its block is written by writeData; its own reference is dropped. */
  sealPacker(): Promise<void> | undefined {
    const p = this.packer;
    if (!p) return undefined;
    this.packer = null;
    if (p.count > 0) {
      // Written later by writeData (several blocks stored side by side go in one
      // pwrite); until the write lands the block is read from memory, and commit waits for it.
      this.dataBlocks.put(p.pba, p.buf);
      this.sealingBlocks.set(p.pba, p.buf);
      this.toSeal.push(p);
    }
    return this.meta.decRef(p.pba); // drop the packer's own reference
  }

  /** Seal the open packed block and wait until every sealed block is written. */
  async settle(): Promise<void> {
    await this.sealPacker();
    this.writeData(null);
    await Promise.all(this.sealing.values());
    if (this.sealFailure) throw this.sealFailure;
  }
}
