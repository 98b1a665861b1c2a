/**
 * Write planner, phase 1 of a write: classify every block of a chunk as zero, a
 * duplicate of a stored block (index hit, byte-compared), a duplicate of an earlier block
 * of the same chunk, or new (with its fingerprint and compressed fragment), without
 * changing anything; then refuse the chunk with ENOSPC if it cannot fit.
 */
import { createHash, hash as oneShotHash } from 'node:crypto';
import { noSpace } from '../../util/errors.ts';
import { packedBlocksNeeded, type Codec } from './fragments.ts';
import type { DataStore } from './data-store.ts';
import { sameBytes } from './data-store.ts';
import type { Fingerprint, Metadata } from './metadata.ts';
import type { SessionStats } from './stats.ts';

/** A planned block of a write, decided before anything is changed. */
export type Plan =
  | { kind: 'zero' }
  | { kind: 'dup'; loc: number }
  | { kind: 'sameAs'; index: number }
  | { kind: 'new'; tag: Fingerprint | null; fragment: Uint8Array | null };

const sha256 = (data: Uint8Array): Buffer =>
  typeof oneShotHash === 'function' ? (oneShotHash('sha256', data, 'buffer') as Buffer) : createHash('sha256').update(data).digest();

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
    private readonly dedup: boolean,
    private readonly session: SessionStats,
  ) {}

  /** Classify every block (zero, duplicate, new) without changing anything. */
  async plan(blocks: Uint8Array[]): Promise<Plan[]> {
    const plans: Plan[] = [];
    const seen = new Map<string, number>(); // duplicates inside this chunk
    for (let i = 0; i < blocks.length; i++) {
      const data = blocks[i]!;
      if (isZero(data)) {
        this.session.zeroBlocksWritten++;
        plans.push({ kind: 'zero' });
        continue;
      }
      let tag: Fingerprint | null = null;
      if (this.dedup) {
        const t0 = performance.now();
        const h = sha256(data);
        this.session.hashMicros += (performance.now() - t0) * 1000;
        this.session.hashedBlocks++;
        tag = { hi: h.readUInt32LE(0), lo: h.readUInt32LE(4) };
        const key = `${tag.hi}:${tag.lo}`;
        const earlier = seen.get(key);
        if (earlier !== undefined && sameBytes(blocks[earlier]!, data)) {
          this.session.dedupHits++;
          plans.push({ kind: 'sameAs', index: earlier });
          continue;
        }
        const candidate = await this.meta.indexLookup(tag);
        if (candidate !== 0 && (await this.store.verifyCandidate(candidate, data))) {
          this.session.dedupHits++;
          plans.push({ kind: 'dup', loc: candidate });
          continue;
        }
        seen.set(key, i);
      }
      let fragment: Uint8Array | null = null;
      if (this.codec) {
        const t0 = performance.now();
        fragment = this.codec.compress(data);
        this.session.compressMicros += (performance.now() - t0) * 1000;
        this.session.compressedAttempts++;
      }
      if (fragment) this.session.fragmentsStored++;
      else this.session.rawBlocksStored++;
      plans.push({ kind: 'new', tag, fragment });
    }
    return plans;
  }

  /** Refuse the whole chunk with ENOSPC before anything is written if it cannot fit. */
  reserveSpace(plans: Plan[]): void {
    const fragments: number[] = [];
    let raw = 0;
    for (const p of plans) if (p.kind === 'new') p.fragment ? fragments.push(p.fragment.length) : raw++;
    const n = raw + packedBlocksNeeded(fragments, this.store.packer?.space() ?? null);
    if (n > this.meta.freeBlocks()) {
      throw noSpace(`dedup volume is full: the write needs ${n} data block(s), ${this.meta.freeBlocks()} free`);
    }
  }
}
