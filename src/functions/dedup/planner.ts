/**
 * Write planner. A chunk of whole blocks is planned in two steps:
 *
 * 1. prepare() (no metadata changed, runs concurrently with other requests): zero
 *    detection, fingerprints (inline: xxh64 costs less than a hop, see hash.ts), and
 *    compression of the blocks that are likely new, in the worker pool (pool.ts). A block
 *    whose fingerprint the index already holds (a cached page, looked at without waiting)
 *    or that repeats an earlier block of the chunk is a likely duplicate: not compressed.
 * 2. plan() (under the metadata mutex, inside the write's window): classify every block
 *    as zero, a duplicate of a stored block (index hit, live, byte-compared), a duplicate
 *    of an earlier block of the chunk, or new; a likely duplicate that turned out new is
 *    compressed here. Nothing is changed, so a chunk that does not fit is refused with
 *    ENOSPC (spaceNeeded) before anything is written.
 */
import { packedBlocksNeeded, type Codec } from './fragments.ts';
import type { DataStore } from './data-store.ts';
import { sameBytes } from './data-store.ts';
import type { Metadata } from './metadata.ts';
import type { SessionStats } from './stats.ts';
import type { ChunkHasher } from './hash.ts';
import type { CompressPool } from './pool.ts';
import { locPba, type Compression } from './format.ts';

/** What a planned block of a write is, decided before anything is changed. */
export const ZERO = 0;
/** A duplicate of a stored block: Plans.arg is its location. */
export const DUP = 1;
/** A duplicate of an earlier new block of the chunk: Plans.arg is that block's index. */
export const SAME_AS = 2;
/** New: stored as its fragment (Prepared.fragments) or raw (fragment null); indexed under its fingerprint when the volume deduplicates. */
export const NEW = 3;

/** A chunk's plan, one entry per block in two typed arrays (#12: an object per block was the largest allocation left on the write path). */
export interface Plans {
  kind: Uint8Array;
  arg: Float64Array;
}

/** What prepare() found out about the blocks of a chunk: undefined fragment = not compressed yet. */
export interface Prepared {
  blocks: Uint8Array[];
  /** 1 = the block is all zeroes. */
  zero: Uint8Array;
  /** Fingerprints, two u32 per block (digests[2i] = hi, digests[2i+1] = lo); null when the volume does not deduplicate. */
  digests: Uint32Array | null;
  fragments: Array<Uint8Array | null | undefined>;
  /**
   * Per block, the location prepare's probe found in a cached index page (0: none), tried
   * first by plan (#12: the index was probed three times per duplicate). A hint: plan
   * verifies it like any index hit (live, byte-equal) and looks the index up again if it fails.
   */
  hints: Float64Array | null;
  /** 1 = an earlier non-zero block of the chunk has the same fingerprint (plan looks for a SAME_AS only then); null without fingerprints. */
  repeats: Uint8Array | null;
  /** Candidate blocks of likely duplicates read ahead (DataStore.prefetch), by block number; null bytes: the read failed. */
  prefetched: Map<number, Uint8Array | null> | null;
  /** Metadata.reuseGen when the prefetches started: their bytes count only while it is unchanged. */
  gen: number;
}


/**
 * The in-chunk repeat test (#12: it was a scan over the earlier blocks, in prepare and again in
 * plan, ~2,000 digest compares per 64-block chunk at 0% duplicates): a small open-addressed
 * table of the chunk's fingerprints, block index + 1 by the low digest word, cleared per chunk.
 * Returns whether an earlier non-zero block of the chunk has block i's fingerprint, and
 * records block i if none does. Zero blocks are never passed in.
 */
function repeatOf(table: Int32Array, mask: number, d: Uint32Array, i: number): boolean {
  const hi = d[2 * i]!;
  const lo = d[2 * i + 1]!;
  for (let at = lo & mask; ; at = (at + 1) & mask) {
    const j = table[at]! - 1;
    if (j < 0) {
      table[at] = i + 1;
      return false;
    }
    if (d[2 * j] === hi && d[2 * j + 1] === lo) return true;
  }
}

/**
 * Per-chunk flag and digest arrays are cut from shared slabs (as fragments are, fragments.ts):
 * a typed array of more than 64 bytes gets its own ArrayBuffer, an allocation with
 * external-memory accounting that drives V8's mark-compacts; a view of a slab is a small
 * heap object. A slab is freed by the GC once no chunk's view of it is left.
 */
const SLAB = 64 << 10;

function planDup(plans: Plans, i: number, loc: number): undefined {
  plans.kind[i] = DUP;
  plans.arg[i] = loc;
  return undefined;
}

export class Planner {
  /** Per block of the chunk being prepared: 1 = likely new, compress it (used only inside prepare's synchronous part). */
  private likelyNew = new Uint8Array(64);
  /** repeatOf's table (used only inside prepare's synchronous part). */
  private seen = new Int32Array(128);
  /** Indexes of the blocks to compress, for Codec.compressBlocks (used only inside prepare's synchronous part). */
  private which = new Int32Array(64);
  private slab = new ArrayBuffer(0);
  private slabAt = 0;

  private cut(bytes: number): number {
    if (this.slabAt + bytes > this.slab.byteLength) {
      this.slab = new ArrayBuffer(Math.max(SLAB, bytes));
      this.slabAt = 0;
    }
    const at = this.slabAt;
    this.slabAt += (bytes + 7) & ~7;
    return at;
  }

  /** n zeroed flags (a slab is zero-filled when made and never reused). */
  private zeroFlags(n: number): Uint8Array {
    const at = this.cut(n);
    return new Uint8Array(this.slab, at, n);
  }

  private digestArray(n: number): Uint32Array {
    const at = this.cut(8 * n);
    return new Uint32Array(this.slab, at, 2 * n);
  }

  /** n zeroed locations (8-byte aligned). */
  private hintArray(n: number): Float64Array {
    const at = this.cut(8 * n);
    return new Float64Array(this.slab, at, n);
  }

  private plansFor(n: number): Plans {
    const at = this.cut(8 * n); // 8-byte aligned: the Float64Array first
    const arg = new Float64Array(this.slab, at, n);
    return { arg, kind: this.zeroFlags(n) };
  }

  constructor(
    private readonly meta: Metadata,
    private readonly store: DataStore,
    private readonly codec: Codec | null,
    private readonly compression: Compression,
    private readonly dedup: boolean,
    private readonly hasher: ChunkHasher,
    private readonly pool: CompressPool,
    private readonly session: SessionStats,
  ) {}

  /**
   * Step 1: zero test, fingerprints and compression of likely-new blocks; changes nothing.
   * `data` is whole 4 KiB blocks (4-byte aligned) and `blocks` its 4 KiB views. Three
   * passes over the chunk, each timed on its own (SessionStats: hash, probe, compress):
   *   fingerprint  zero test + xxh64 of every block, one native call (hash.ts)
   *   probe        a repeat of an earlier block of the chunk, or a fingerprint the index
   *                holds in a cached page, is a likely duplicate (its candidate is read
   *                ahead if not in memory); the rest are likely new. An index page not in
   *                memory is read now (prepare resolves once it is in), not under the mutex
   *   compress     the likely-new blocks: inline (native LZ4) or in the pool
   * Synchronous (no Promise) when the codec compresses inline (native LZ4) or there is none
   * and no candidate must be read.
   */
  prepare(data: Uint8Array, blocks: Uint8Array[]): Prepared | Promise<Prepared> {
    const n = blocks.length;
    const session = this.session;
    const zero = this.zeroFlags(n);
    const digests = this.dedup ? this.digestArray(n) : null;
    const fragments: Array<Uint8Array | null | undefined> = new Array(n).fill(undefined);
    const hints = digests ? this.hintArray(n) : null;
    const repeats = digests ? this.zeroFlags(n) : null;
    const prepared: Prepared = { blocks, zero, digests, hints, repeats, fragments, prefetched: null, gen: this.meta.reuseGen };

    // ---- fingerprint: zero test and hashes, the whole chunk at once
    const t0 = performance.now();
    const nonzero = this.hasher(data, digests, zero);
    const t1 = performance.now();
    session.hashMicros += (t1 - t0) * 1000; // the zero test of every block, and the hashes
    if (digests) session.hashedBlocks += nonzero;
    if (nonzero === 0) return prepared;

    // ---- probe: likely duplicates (in the chunk, in a cached index page) and their candidates
    if (this.likelyNew.length < n) this.likelyNew = new Uint8Array(Math.max(n, 2 * this.likelyNew.length));
    const likelyNew = this.likelyNew;
    let reads: Array<Promise<unknown>> | null = null;
    let readsByBlock: Map<number, Promise<Uint8Array | null>> | null = null;
    let toCompress = 0;
    let mask = 0;
    if (digests) {
      let size = 128;
      while (size < 2 * n) size *= 2;
      if (this.seen.length < size) this.seen = new Int32Array(size);
      this.seen.fill(0, 0, size);
      mask = size - 1;
    }
    const seen = this.seen;
    for (let i = 0; i < n; i++) {
      likelyNew[i] = 0;
      if (zero[i]) continue;
      if (digests) {
        if (repeatOf(seen, mask, digests, i)) {
          repeats![i] = 1;
          continue; // a likely duplicate of an earlier block
        }
        const warming = this.meta.indexWarm(digests, i); // its index page, read now rather than under the mutex
        if (warming) (reads ??= []).push(warming);
        else {
          const loc = this.meta.indexPeek(digests, i);
          if (loc !== 0) {
            // A likely duplicate: plan tries this candidate first; read it now if it is not in
            // memory, so the verify under the metadata mutex needs no read.
            hints![i] = loc;
            readsByBlock ??= new Map();
            const pba = locPba(loc);
            const fresh = !readsByBlock.has(pba);
            const read = this.store.prefetch(loc, readsByBlock);
            if (read && fresh) {
              const got = (prepared.prefetched ??= new Map());
              (reads ??= []).push(read.then((b) => void got.set(pba, b)));
            }
            continue;
          }
        }
      }
      likelyNew[i] = 1;
      toCompress++;
    }
    const t2 = performance.now();
    if (digests) {
      session.probeMicros += (t2 - t1) * 1000;
      session.probedBlocks += nonzero;
    }

    // ---- compress: the likely-new blocks
    const codec = this.codec;
    let compress: number[] | null = null; // for the pool
    if (codec && toCompress > 0) {
      if (codec.inline) {
        // Native LZ4 costs ~1.5 us per block, a worker hop 35-100 us per message: inline is cheaper.
        if (codec.compressBlocks) {
          // One call for the chunk's likely-new blocks (`data` is the chunk, whole blocks).
          if (this.which.length < toCompress) this.which = new Int32Array(Math.max(toCompress, 2 * this.which.length));
          const which = this.which;
          let k = 0;
          for (let i = 0; i < n; i++) if (likelyNew[i]) which[k++] = i;
          codec.compressBlocks(data, which, k, fragments);
        } else for (let i = 0; i < n; i++) if (likelyNew[i]) fragments[i] = codec.compress(blocks[i]!);
        session.compressMicros += (performance.now() - t2) * 1000;
        session.compressedAttempts += toCompress;
      } else {
        compress = [];
        for (let i = 0; i < n; i++) if (likelyNew[i]) compress.push(i);
      }
    }
    if (!compress) return reads ? Promise.all(reads).then(() => prepared) : prepared;
    const list = compress;
    if (reads) {
      const waiting = reads;
      reads = null;
      return Promise.all(waiting).then(() => this.compressInPool(prepared, list));
    }
    return this.compressInPool(prepared, list);
  }

  private compressInPool(prepared: Prepared, list: number[]): Promise<Prepared> {
    const { blocks, fragments } = prepared;
    return this.pool.compress(
      list.map((i) => blocks[i]!),
      this.compression,
    ).then((out) => {
      list.forEach((i, k) => (fragments[i] = out.fragments[k]!));
      this.session.compressMicros += out.micros;
      this.session.compressedInWorkers += out.offloaded;
      this.session.compressedAttempts += list.length;
      return prepared;
    });
  }

  /**
   * Step 2: classify every block (zero, duplicate, new) without changing anything.
   * Synchronous (no Promise) while the index pages and candidates it needs are in memory;
   * at the first lookup that must wait, it goes on asynchronously from that block.
   * The synchronous part is timed (SessionStats.planMicros).
   */
  plan(p: Prepared): Plans | Promise<Plans> {
    const t0 = performance.now();
    if (p.prefetched) {
      // Read before the mutex; still these blocks' bytes if no freed block became reusable since.
      if (p.gen === this.meta.reuseGen) for (const [pba, block] of p.prefetched) if (block) this.store.adopt(pba, block);
      p.prefetched = null; // once (a retry after a commit plans again)
    }
    const plans = this.plansFor(p.blocks.length);
    let i = 0;
    let pending: Promise<void> | undefined;
    for (; i < p.blocks.length && !pending; i++) pending = this.planBlock(p, i, plans);
    this.session.planMicros += (performance.now() - t0) * 1000;
    this.session.plannedBlocks += i;
    return pending ? this.planRest(p, i - 1, plans, pending) : plans;
  }

  private async planRest(p: Prepared, i: number, plans: Plans, pending: Promise<void>): Promise<Plans> {
    await pending;
    for (i++; i < p.blocks.length; i++) {
      const w = this.planBlock(p, i, plans);
      if (w) await w;
    }
    return plans;
  }

  /** Plan block i into plans[i]; a Promise only when an index page or a candidate must be read. */
  private planBlock(p: Prepared, i: number, plans: Plans): Promise<void> | undefined {
    if (p.zero[i]) {
      plans.kind[i] = ZERO;
      return undefined;
    }
    const d = p.digests;
    if (!d) return this.planNew(p, i, plans);
    const data = p.blocks[i]!;
    // A duplicate of an earlier block of this chunk that is itself new: share its block
    // (looked for only when prepare saw an earlier block with this fingerprint).
    if (p.repeats![i]) {
      for (let j = 0; j < i; j++) {
        if (d[2 * j] !== d[2 * i] || d[2 * j + 1] !== d[2 * i + 1] || plans.kind[j] !== NEW) continue;
        if (sameBytes(p.blocks[j]!, data)) {
          plans.kind[i] = SAME_AS;
          plans.arg[i] = j;
          return undefined;
        }
      }
    }
    // The candidate prepare found, if any: verified like any index hit.
    const hint = p.hints ? p.hints[i]! : 0;
    if (hint !== 0) {
      const same = this.store.verifyCandidate(hint, data);
      if (same === true) return planDup(plans, i, hint);
      if (same !== false) return this.hintLater(p, i, plans, hint, same);
    }
    return this.planLookup(p, i, plans, hint);
  }

  // The synchronous steps (planBlock, planLookup, planCandidate) create no closure: V8 gives a
  // function whose parameters an inner arrow captures a context object on every call, taken
  // or not (#12: ~120 B per block at 0% duplicates). Their waits go on in the *Later methods.

  private hintLater(p: Prepared, i: number, plans: Plans, hint: number, same: Promise<boolean>): Promise<void> {
    return same.then((s) => (s ? planDup(plans, i, hint) : this.planLookup(p, i, plans, hint)));
  }

  /** Block i by the index as it is now (`tried`: a candidate already refused). */
  private planLookup(p: Prepared, i: number, plans: Plans, tried: number): Promise<void> | undefined {
    const candidate = this.meta.indexLookup(p.digests!, i);
    if (typeof candidate !== 'number') return this.lookupLater(p, i, plans, tried, candidate);
    return this.planCandidate(p, i, plans, candidate === tried ? 0 : candidate);
  }

  private lookupLater(p: Prepared, i: number, plans: Plans, tried: number, candidate: Promise<number>): Promise<void> {
    return candidate.then((c) => this.planCandidate(p, i, plans, c === tried ? 0 : c));
  }

  private planCandidate(p: Prepared, i: number, plans: Plans, candidate: number): Promise<void> | undefined {
    if (candidate === 0) return this.planNew(p, i, plans);
    const same = this.store.verifyCandidate(candidate, p.blocks[i]!);
    if (typeof same !== 'boolean') return this.candidateLater(p, i, plans, candidate, same);
    if (same) return planDup(plans, i, candidate);
    return this.planNew(p, i, plans);
  }

  private candidateLater(p: Prepared, i: number, plans: Plans, candidate: number, same: Promise<boolean>): Promise<void> {
    return same.then((s) => (s ? planDup(plans, i, candidate) : this.planNew(p, i, plans)));
  }

  private planNew(p: Prepared, i: number, plans: Plans): undefined {
    let fragment = p.fragments[i];
    if (fragment === undefined) {
      fragment = null;
      if (this.codec) {
        // Predicted a duplicate, but it is not (a stale index entry): compress it here.
        const t0 = performance.now();
        fragment = this.codec.compress(p.blocks[i]!);
        this.session.compressMicros += (performance.now() - t0) * 1000;
        this.session.compressedAttempts++;
      }
      p.fragments[i] = fragment;
    }
    plans.kind[i] = NEW;
    return undefined;
  }

  /** Data blocks the plans need (raw blocks and new packed blocks, given the open packer). */
  spaceNeeded(plans: Plans, p: Prepared): number {
    const fragments: number[] = [];
    let raw = 0;
    for (let i = 0; i < plans.kind.length; i++) {
      if (plans.kind[i] !== NEW) continue;
      const f = p.fragments[i];
      if (f) fragments.push(f.length);
      else raw++;
    }
    return raw + packedBlocksNeeded(fragments, this.store.packer?.space() ?? null);
  }

  /** Count an applied chunk's plans in the session counters. */
  count(plans: Plans, p: Prepared): void {
    for (let i = 0; i < plans.kind.length; i++) {
      const k = plans.kind[i];
      if (k === ZERO) this.session.zeroBlocksWritten++;
      else if (k === DUP || k === SAME_AS) this.session.dedupHits++;
      else if (p.fragments[i]) this.session.fragmentsStored++;
      else this.session.rawBlocksStored++;
    }
  }
}
