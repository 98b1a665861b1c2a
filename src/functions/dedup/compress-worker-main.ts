/**
 * Body of a compression worker (pool.ts). It owns three shared buffers, set once at start:
 * `input` (blocks to compress, 4 KiB each), `output` (one MAX_FRAGMENT slot per block) and
 * `lengths` (per block: fragment length, or 0 when the block does not compress well enough).
 * Each message names a batch size and the codec; the reply carries the CPU time spent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { codecFor, MAX_FRAGMENT } from './fragments.ts';
import { BLOCK, type Compression } from './format.ts';

interface Init {
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
  lengths: SharedArrayBuffer;
}

const { input, output, lengths } = workerData as Init;
const inBytes = new Uint8Array(input);
const outBytes = new Uint8Array(output);
const lens = new Int32Array(lengths);

parentPort!.on('message', (m: { n: number; codec: Compression }) => {
  const codec = codecFor(m.codec)!;
  const t0 = performance.now();
  for (let i = 0; i < m.n; i++) {
    const f = codec.compress(inBytes.subarray(i * BLOCK, (i + 1) * BLOCK));
    lens[i] = f ? f.length : 0;
    if (f) outBytes.set(f, i * MAX_FRAGMENT);
  }
  parentPort!.postMessage({ micros: (performance.now() - t0) * 1000 });
});
