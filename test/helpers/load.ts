import type { BlockDevice } from '../../src/block/types.ts';

/** The 4 KiB pattern written to block `b` by the load helpers: recognisable and different per block and seed. */
export function pattern(b: number, seed = 1): Buffer {
  const buf = Buffer.alloc(4096);
  for (let i = 0; i < 4096; i += 8) {
    buf.writeUInt32LE(b, i);
    buf.writeUInt32LE((Math.imul(b + 1, 2654435761) ^ Math.imul(i + seed, 40503)) >>> 0, i + 4);
  }
  return buf;
}

/**
 * Write distinct blocks (each at most once, so an acknowledged block has exactly
 * one right answer) with `depth` writes in flight, until `stop()` returns true or a
 * write fails. Resolves with the blocks whose writes were acknowledged.
 */
export async function writeLoad(
  dev: BlockDevice,
  opts: { blocks: number[]; depth: number; seed?: number; stop?: () => boolean; onAck?: (n: number) => void },
): Promise<{ acked: number[]; error: unknown }> {
  const acked: number[] = [];
  let next = 0;
  let error: unknown;
  const worker = async () => {
    while (error === undefined && next < opts.blocks.length && !opts.stop?.()) {
      const b = opts.blocks[next++]!;
      try {
        await dev.pwrite(pattern(b, opts.seed), b * 4096);
        acked.push(b);
        opts.onAck?.(acked.length);
      } catch (err) {
        error ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: opts.depth }, worker));
  return { acked, error };
}

/** Blocks among `acked` that do not read back as their pattern. */
export async function verifyBlocks(dev: BlockDevice, acked: number[], seed = 1): Promise<number[]> {
  const bad: number[] = [];
  const buf = Buffer.alloc(4096);
  for (const b of acked) {
    await dev.pread(buf, b * 4096);
    if (!buf.equals(pattern(b, seed))) bad.push(b);
  }
  return bad;
}

/** A shuffled list of block numbers in [0, n). */
export function shuffledBlocks(n: number, next: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
