import type { BlockDevice } from '../../../block/types.ts';
import { VolumeFileSystem, type MountOptions } from './filesystem.ts';
import { replayJournal } from './journal.ts';
import { mkfs, type MkfsOptions } from './mkfs.ts';
import { BLOCK_SIZE, decodeSuperblock, isAllZero } from './superblock.ts';
import type { FileSystem } from './types.ts';
import { fsError } from '../../../util/errors.ts';

export { mkfs, type MkfsOptions } from './mkfs.ts';
export { fsck, type FsckResult } from './fsck.ts';
export { VolumeFileSystem, type MountOptions } from './filesystem.ts';
export * from './types.ts';

export interface OpenOptions extends MountOptions {
  /** Geometry and identity used if the volume is empty and gets formatted. */
  mkfs?: MkfsOptions;
}

/**
 * Open the filesystem on `device`: format it if the superblock is all zeroes
 * (a fresh volume), otherwise replay the journal and mount.
 */
export async function openFileSystem(device: BlockDevice, opts: OpenOptions = {}): Promise<FileSystem & VolumeFileSystem> {
  const log = opts.log ?? (() => {});
  if (device.size < 64 * BLOCK_SIZE) throw fsError('INVAL', `device of ${device.size} bytes is too small for a filesystem`);
  const b0 = new Uint8Array(BLOCK_SIZE);
  await device.pread(b0, 0);
  if (isAllZero(b0)) {
    if (device.readOnly) throw fsError('ROFS', 'empty read-only volume: cannot create a filesystem');
    log('empty volume: creating a filesystem');
    try {
      await mkfs(device, opts.mkfs);
    } catch (e) {
      throw fsError('INVAL', `mkfs failed: ${(e as Error).message}`);
    }
    await device.pread(b0, 0);
  }
  let sb;
  try {
    sb = decodeSuperblock(b0, device.size);
  } catch (e) {
    throw fsError('IO', `cannot mount: ${(e as Error).message}`);
  }
  let replay;
  try {
    replay = await replayJournal(device, sb);
  } catch (e) {
    throw fsError('IO', `cannot mount: ${(e as Error).message}`);
  }
  if (replay.records > 0) log(`journal: replayed ${replay.records} committed transactions`);
  const fs = await VolumeFileSystem.mount(device, sb, replay.header, opts);
  log(`mounted filesystem ${fs.fsid.toString(16)}: ${sb.totalBlocks} blocks, ${sb.inodeCount} inodes`);
  return fs;
}
