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
import type { Fingerprint, Metadata } from './metadata.ts';
import type { SessionStats } from './stats.ts';
import type { Hasher } from './hash.ts';
import type { CompressPool } from './pool.ts';
import { locPba, type Compression } from './format.ts';

/** A planned block of a write, decided before anything is changed. */
export type Plan =
  | { kind: 'zero' }
  | { kind: 'dup'; loc: number }
  | { kind: 'sameAs'; index: number }
  | { kind: 'new'; tag: Fingerprint | null; fragment: Uint8Array | null };

/** What prepare() found out about one block: undefined fragment = not compressed yet. */
export interface Prepared {
  blocks: Uint8Array[];
  zero: boolean[];
  tags: Array<Fingerprint | null>;
  fragments: Array<Uint8Array | null | undefined>;
  /** Candidate blocks of likely duplicates read ahead (DataStore.prefetch), by block number; null bytes: the read failed. */
  prefetched: Map<number, Uint8Array | null> | null;
  /** Metadata.reuseGen when the prefetches started: their bytes count only while it is unchanged. */
  gen: number;
}

const ZERO_PLAN: Plan = Object.freeze({ kind: 'zero' });

/** A number key for a fingerprint (53 of its 64 bits): a hint only, every match is byte-compared or re-checked. */
const keyOf = (tag: Fingerprint): number => (tag.hi >>> 0) * 2097152 + (tag.lo >>> 11);

export const isZero = (b: Uint8Array): boolean => {
  const w = new Uint32Array(b.buffer, b.byteOffset, b.byteLength >>> 2); // callers pass 4 KiB-aligned views
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
};

export class Planner {
  constructor(
    private readonly meta: Metadata,
    private readonly store: DataStore,
    private readonly codec: Codec | null,
    private readonly compression: Compression,
    private readonly dedup: boolean,
    private readonly hasher: Hasher,
    private readonly pool: CompressPool,
    private readonly session: SessionStats,
  ) {}

  /**
   * Step 1: zero test, fingerprints and compression of likely-new blocks; changes nothing.
   * Synchronous (no Promise) when the codec compresses inline (native LZ4) or there is none.
   */
  prepare(blocks: Uint8Array[]): Prepared | Promise<Prepared> {
    const n = blocks.length;
    const zero: boolean[] = new Array(n);
    const tags: Array<Fingerprint | null> = new Array(n).fill(null);
    const fragments: Array<Uint8Array | null | undefined> = new Array(n).fill(undefined);
    const prepared: Prepared = { blocks, zero, tags, fragments, prefetched: null, gen: this.meta.reuseGen };
    let reads: Array<Promise<unknown>> | null = null;
    let readsByBlock: Map<number, Promise<Uint8Array | null>> | null = null;
    const codec = this.codec;
    const inline = codec !== null && codec.inline;
    let compress: number[] | null = null; // for the pool: blocks likely new
    let compressed = 0;
    let compressMicros = 0;
    const seen = this.dedup && n > 1 ? new Set<number>() : null;
    const t0 = performance.now();
    let hashed = 0;
    for (let i = 0; i < n; i++) {
      zero[i] = isZero(blocks[i]!);
      if (zero[i]) continue;
      if (this.dedup) {
        const tag = this.hasher(blocks[i]!);
        tags[i] = tag;
        hashed++;
        if (seen) {
          const key = keyOf(tag);
          if (seen.has(key)) continue; // a likely duplicate
          seen.add(key);
        }
        if (this.meta.indexHas(tag)) {
          // A likely duplicate: read its candidate now if it is not in memory, so the verify
          // under the metadata mutex needs no read.
          const loc = this.meta.indexLookup(tag);
          if (typeof loc === 'number' && loc !== 0) {
            readsByBlock ??= new Map();
            const pba = locPba(loc);
            const fresh = !readsByBlock.has(pba);
            const read = this.store.prefetch(loc, readsByBlock);
            if (read && fresh) {
              const got = (prepared.prefetched ??= new Map());
              (reads ??= []).push(read.then((b) => void got.set(pba, b)));
            }
          }
          continue;
        }
      }
      if (!codec) continue;
      if (inline) {
        // Native LZ4 costs ~1.5 us per block, a worker hop 35-100 us per message: inline is cheaper.
        const t1 = performance.now();
        fragments[i] = codec.compress(blocks[i]!);
        compressMicros += performance.now() - t1;
        compressed++;
      } else (compress ??= []).push(i);
    }
    if (hashed > 0) {
      this.session.hashMicros += (performance.now() - t0 - compressMicros) * 1000;
      this.session.hashedBlocks += hashed;
    }
    if (compressed > 0) {
      this.session.compressMicros += compressMicros * 1000;
      this.session.compressedAttempts += compressed;
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
   */
  plan(p: Prepared): Plan[] | Promise<Plan[]> {
    if (p.prefetched) {
      // Read before the mutex; still these blocks' bytes if no freed block became reusable since.
      if (p.gen === this.meta.reuseGen) for (const [pba, block] of p.prefetched) if (block) this.store.adopt(pba, block);
      p.prefetched = null; // once (a retry after a commit plans again)
    }
    const plans: Plan[] = new Array(p.blocks.length);
    const seen = new Map<number, number>(); // duplicates inside this chunk
    for (let i = 0; i < p.blocks.length; i++) {
      const w = this.planBlock(p, i, plans, seen);
      if (w) return this.planRest(p, i, plans, seen, w);
    }
    return plans;
  }

  private async planRest(p: Prepared, i: number, plans: Plan[], seen: Map<number, number>, pending: Promise<void>): Promise<Plan[]> {
    await pending;
    for (i++; i < p.blocks.length; i++) {
      const w = this.planBlock(p, i, plans, seen);
      if (w) await w;
    }
    return plans;
  }

  /** Plan block i into plans[i]; a Promise only when an index page or a candidate must be read. */
  private planBlock(p: Prepared, i: number, plans: Plan[], seen: Map<number, number>): Promise<void> | undefined {
    if (p.zero[i]) {
      plans[i] = ZERO_PLAN;
      return undefined;
    }
    const tag = p.tags[i]!;
    if (!tag) return this.planNew(p, i, plans, null);
    const data = p.blocks[i]!;
    const key = keyOf(tag);
    const earlier = seen.get(key);
    if (earlier !== undefined && sameBytes(p.blocks[earlier]!, data)) {
      plans[i] = { kind: 'sameAs', index: earlier };
      return undefined;
    }
    const candidate = this.meta.indexLookup(tag);
    if (typeof candidate !== 'number') return candidate.then((c) => this.planCandidate(p, i, plans, seen, c));
    return this.planCandidate(p, i, plans, seen, candidate);
  }

  private planCandidate(p: Prepared, i: number, plans: Plan[], seen: Map<number, number>, candidate: number): Promise<void> | undefined {
    if (candidate === 0) return this.planUnseen(p, i, plans, seen);
    const same = this.store.verifyCandidate(candidate, p.blocks[i]!);
    if (typeof same !== 'boolean') return same.then((same) => (same ? void (plans[i] = { kind: 'dup', loc: candidate }) : this.planUnseen(p, i, plans, seen)));
    if (same) {
      plans[i] = { kind: 'dup', loc: candidate };
      return undefined;
    }
    return this.planUnseen(p, i, plans, seen);
  }

  private planUnseen(p: Prepared, i: number, plans: Plan[], seen: Map<number, number>): undefined {
    seen.set(keyOf(p.tags[i]!), i);
    return this.planNew(p, i, plans, p.tags[i]!);
  }

  private planNew(p: Prepared, i: number, plans: Plan[], tag: Fingerprint | null): undefined {
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
    plans[i] = { kind: 'new', tag, fragment };
    return undefined;
  }

  /** Data blocks the plans need (raw blocks and new packed blocks, given the open packer). */
  spaceNeeded(plans: Plan[]): number {
    const fragments: number[] = [];
    let raw = 0;
    for (const p of plans) if (p.kind === 'new') p.fragment ? fragments.push(p.fragment.length) : raw++;
    return raw + packedBlocksNeeded(fragments, this.store.packer?.space() ?? null);
  }

  /** Count an applied chunk's plans in the session counters. */
  count(plans: Plan[]): void {
    for (const p of plans) {
      if (p.kind === 'zero') this.session.zeroBlocksWritten++;
      else if (p.kind === 'dup' || p.kind === 'sameAs') this.session.dedupHits++;
      else if (p.fragment) this.session.fragmentsStored++;
      else this.session.rawBlocksStored++;
    }
  }
}
