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
import type { Compression } from './format.ts';

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
}

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
    const compress: number[] = [];
    const seen = this.dedup ? new Set<number>() : null;
    const t0 = performance.now();
    let hashed = 0;
    for (let i = 0; i < n; i++) {
      zero[i] = isZero(blocks[i]!);
      if (zero[i]) continue;
      if (seen) {
        const tag = this.hasher(blocks[i]!);
        tags[i] = tag;
        hashed++;
        const key = keyOf(tag);
        if (seen.has(key) || this.meta.indexHas(tag)) continue; // a likely duplicate
        seen.add(key);
      }
      compress.push(i);
    }
    if (hashed > 0) {
      this.session.hashMicros += (performance.now() - t0) * 1000;
      this.session.hashedBlocks += hashed;
    }
    const prepared: Prepared = { blocks, zero, tags, fragments };
    if (!this.codec || compress.length === 0) return prepared;
    if (this.codec.inline) {
      // Native LZ4 costs ~1.5 us per block, a worker hop 35-100 us per message: inline is cheaper.
      const t1 = performance.now();
      for (let k = 0; k < compress.length; k++) fragments[compress[k]!] = this.codec.compress(blocks[compress[k]!]!);
      this.session.compressMicros += (performance.now() - t1) * 1000;
      this.session.compressedAttempts += compress.length;
      return prepared;
    }
    return this.pool.compress(
      compress.map((i) => blocks[i]!),
      this.compression,
    ).then((out) => {
      compress.forEach((i, k) => (fragments[i] = out.fragments[k]!));
      this.session.compressMicros += out.micros;
      this.session.compressedInWorkers += out.offloaded;
      this.session.compressedAttempts += compress.length;
      return prepared;
    });
  }

  /** Step 2: classify every block (zero, duplicate, new) without changing anything. */
  async plan(p: Prepared): Promise<Plan[]> {
    const plans: Plan[] = [];
    const seen = new Map<number, number>(); // duplicates inside this chunk
    for (let i = 0; i < p.blocks.length; i++) {
      const data = p.blocks[i]!;
      if (p.zero[i]) {
        plans.push({ kind: 'zero' });
        continue;
      }
      const tag = p.tags[i]!;
      if (tag) {
        const key = keyOf(tag);
        const earlier = seen.get(key);
        if (earlier !== undefined && sameBytes(p.blocks[earlier]!, data)) {
          plans.push({ kind: 'sameAs', index: earlier });
          continue;
        }
        let candidate = this.meta.indexLookup(tag);
        if (typeof candidate !== 'number') candidate = await candidate;
        let same = candidate !== 0 && this.store.verifyCandidate(candidate, data);
        if (typeof same !== 'boolean') same = await same;
        if (same) {
          plans.push({ kind: 'dup', loc: candidate });
          continue;
        }
        seen.set(key, i);
      }
      let fragment = p.fragments[i];
      if (fragment === undefined) {
        fragment = null;
        if (this.codec) {
          // Predicted a duplicate, but it is not (a stale index entry): compress it here.
          const t0 = performance.now();
          fragment = this.codec.compress(data);
          this.session.compressMicros += (performance.now() - t0) * 1000;
          this.session.compressedAttempts++;
        }
        p.fragments[i] = fragment;
      }
      plans.push({ kind: 'new', tag, fragment });
    }
    return plans;
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
