/**
 * Filesystem tools on an image file:
 *
 *   node --import tsx src/functions/fileserver/fs/cli.ts mkfs IMAGE [--size MiB] [--inodes N] [--journal BLOCKS]
 *   node --import tsx src/functions/fileserver/fs/cli.ts fsck IMAGE
 *   node --import tsx src/functions/fileserver/fs/cli.ts ls IMAGE [/path/in/fs]
 *
 * fsck never writes (it reads through the journal); ls mounts, which replays
 * the journal like any start would. Exit codes: 0 ok, 1 problems found or
 * operation failed, 2 usage.
 */
import { stat } from 'node:fs/promises';
import { FileBlockDevice } from '../../../block/file-device.ts';
import { fsck, mkfs, openFileSystem } from './index.ts';
import { fsError, usage, StorvisorError } from '../../../util/errors.ts';

const isUsage = (e: unknown): e is StorvisorError => e instanceof StorvisorError && e.code === 'SV_ERR_USAGE';

const USAGE = 'usage: cli.ts mkfs IMAGE [--size MiB] [--inodes N] [--journal BLOCKS] | fsck IMAGE | ls IMAGE [PATH]';

function flag(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = Number(args[i + 1]);
  if (!Number.isSafeInteger(v) || v <= 0) throw usage(`${name} needs a positive integer`);
  return v;
}

async function imageSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

async function runMkfs(image: string, args: string[]): Promise<number> {
  const sizeMiB = flag(args, '--size');
  const size = sizeMiB !== undefined ? sizeMiB * 2 ** 20 : await imageSize(image);
  if (!size) throw usage('mkfs: the image does not exist; give --size MiB');
  const dev = await FileBlockDevice.open(image, size);
  try {
    const sb = await mkfs(dev, { inodes: flag(args, '--inodes'), journalBlocks: flag(args, '--journal') });
    console.log(`${image}: ${sb.totalBlocks} blocks of 4096, ${sb.inodeCount} inodes, journal ${sb.journalBlocks} blocks, data from block ${sb.dataStart}`);
    return 0;
  } finally {
    await dev.close();
  }
}

async function runFsck(image: string): Promise<number> {
  const size = await imageSize(image);
  if (size === undefined) throw usage(`fsck: ${image} does not exist`);
  const dev = await FileBlockDevice.open(image, size, { readOnly: true });
  try {
    const r = await fsck(dev);
    for (const p of r.problems) console.log(`problem: ${p}`);
    const s = r.stats;
    console.log(
      `${image}: ${r.ok ? 'clean' : `${r.problems.length} problem(s)`}; ${s.files} files, ${s.dirs} directories, ` +
        `${s.symlinks} symlinks, ${s.usedBlocks}/${s.totalBlocks} blocks used, ${s.journalRecords} journal records pending`,
    );
    return r.ok ? 0 : 1;
  } finally {
    await dev.close();
  }
}

async function runLs(image: string, path: string): Promise<number> {
  const size = await imageSize(image);
  if (size === undefined) throw usage(`ls: ${image} does not exist`);
  const dev = await FileBlockDevice.open(image, size);
  const fs = await openFileSystem(dev);
  try {
    let dir = await fs.getattr(fs.rootIno, 1);
    for (const part of path.split('/').filter(Boolean)) dir = await fs.lookup(dir.ino, dir.generation, part);
    if (dir.type !== 'dir') throw fsError('NOTDIR', `${path} is not a directory`);
    let cookie = 0;
    for (;;) {
      const r = await fs.readdir(dir.ino, dir.generation, cookie, 1000);
      for (const e of r.entries) {
        const a = await fs.lookup(dir.ino, dir.generation, e.name);
        const kind = a.type === 'dir' ? 'd' : a.type === 'symlink' ? 'l' : '-';
        const target = a.type === 'symlink' ? ` -> ${await fs.readlink(a.ino, a.generation)}` : '';
        console.log(`${kind}${a.mode.toString(8).padStart(4, '0')} ${String(a.nlink).padStart(3)} ${String(a.uid).padStart(5)} ${String(a.size).padStart(12)} ${e.name}${target}`);
      }
      if (r.eof) break;
      cookie = r.entries[r.entries.length - 1].cookie;
    }
    return 0;
  } finally {
    await fs.close();
    await dev.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, image, ...rest] = argv;
  try {
    if (!image) throw usage(USAGE);
    if (cmd === 'mkfs') return await runMkfs(image, rest);
    if (cmd === 'fsck') return await runFsck(image);
    if (cmd === 'ls') return await runLs(image, rest[0] ?? '/');
    throw usage(USAGE);
  } catch (e) {
    console.error(isUsage(e) ? e.message : `${cmd}: ${(e as Error).message}`);
    return isUsage(e) ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
