/**
 * The process the kill -9 test kills (snapshots-crash.test.ts): writes to a
 * volume and to a clone, and takes and deletes snapshots, all at once,
 * printing a line for each thing that completed:
 *   A <volume> <block> <gen>   a write was acknowledged
 *   P <snap>                   a snapshot is about to be taken
 *   S <snap>                   it was taken
 *   X <snap>                   a snapshot is about to be deleted
 *   D <snap>                   it was deleted
 * Writes to stdout (a pipe) are synchronous on Linux: a printed line happened.
 * With a third argument `unsynced`, the writes are a write-back client's
 * (WriteFlags.unsynced: an NBD client's plain WRITE), left in the page cache.
 */
import { BlockCache } from '../../src/storage/block-cache.ts';
import { VolumeStore } from '../../src/storage/volume-store.ts';
import { B, block } from './helpers/blocks.ts';

const [dir, blocksArg, mode] = process.argv.slice(2);
const flags = mode === 'unsynced' ? { unsynced: true } : undefined;
const blocks = Number(blocksArg);
const s = new VolumeStore(dir!, new BlockCache(1 << 20));

const say = (line: string) => process.stdout.write(line + '\n');

async function writer(name: string, base: number, w: number): Promise<void> {
  const v = s.openVolume(name);
  let gen = base + w;
  for (let i = 0; ; i++) {
    const b = ((i * 13) % (blocks / 4)) * 4 + w;
    gen += 4;
    await v.pwrite(block(b, gen), b * B, flags);
    say(`A ${name} ${b} ${gen}`);
  }
}

async function admin(): Promise<void> {
  const taken: string[] = [];
  for (let n = 1; ; n++) {
    const name = `t${n}`;
    say(`P ${name}`);
    await s.snapshots.create('v', name);
    say(`S ${name}`);
    taken.push(name);
    if (taken.length > 2) {
      const old = taken.shift()!;
      say(`X ${old}`);
      await s.snapshots.delete('v', old);
      say(`D ${old}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (let w = 0; w < 4; w++) {
  void writer('v', 1_000_000, w);
  void writer('c', 2_000_000, w);
}
void admin();
