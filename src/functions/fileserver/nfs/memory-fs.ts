import { fsError } from '../../../util/errors.ts';
/**
 * An in-memory FileSystem: the test double the NFS front end is developed and
 * tested against, and a reference for the contract in ../fs/types.ts. Freed
 * inode numbers are reused with a new generation, so stale handles are real.
 */
import {
  type Attr,
  type CreateOptions,
  type DirEntry,
  type FileSystem,
  type FileType,
  type FsStat,
  type SetAttr,
} from '../fs/types.ts';

interface Inode {
  attr: Attr;
  data?: Uint8Array; // files: bytes [0, capacity); size lives in attr
  target?: string; // symlinks
  dir?: Directory;
}

/** Entries in cookie order; cookies only grow, so readdir resumes with a binary search. */
class Directory {
  parent: number;
  private nextCookie = 1;
  readonly byName = new Map<string, { ino: number; cookie: number }>();
  private order: Array<{ name: string; cookie: number }> = [];
  private removed = 0;

  constructor(parent: number) {
    this.parent = parent;
  }

  add(name: string, ino: number): void {
    const cookie = this.nextCookie++;
    this.byName.set(name, { ino, cookie });
    this.order.push({ name, cookie });
  }

  delete(name: string): void {
    if (!this.byName.delete(name)) return;
    // Compact lazily so deleting many entries stays linear overall.
    if (++this.removed > 64 && this.removed > this.order.length / 2) {
      this.order = this.order.filter((e) => this.byName.get(e.name)?.cookie === e.cookie);
      this.removed = 0;
    }
  }

  after(cookie: number, max: number): { entries: DirEntry[]; eof: boolean } {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order[mid]!.cookie <= cookie) lo = mid + 1;
      else hi = mid;
    }
    const entries: DirEntry[] = [];
    let i = lo;
    for (; i < this.order.length && entries.length < max; i++) {
      const e = this.order[i]!;
      const live = this.byName.get(e.name);
      if (live?.cookie === e.cookie) entries.push({ name: e.name, ino: live.ino, cookie: e.cookie });
    }
    while (i < this.order.length && this.byName.get(this.order[i]!.name)?.cookie !== this.order[i]!.cookie) i++;
    return { entries, eof: i >= this.order.length };
  }
}

export interface MemoryFsOptions {
  /** Capacity in bytes for NOSPC (default 1 GiB). */
  totalBytes?: number;
  totalFiles?: number;
  fsid?: bigint;
  blockSize?: number;
  now?: () => number;
}

const ROOT = 1;
const NAME_MAX = 255;

export class MemoryFileSystem implements FileSystem {
  readonly fsid: bigint;
  readonly rootIno = ROOT;
  /** Set when the root is made (the first generation handed out). */
  readonly rootGeneration: number;
  readonly blockSize: number;
  private readonly inodes = new Map<number, Inode>();
  private readonly freeInos: number[] = [];
  private nextIno = ROOT + 1;
  private nextGen = 1;
  private usedBytes = 0;
  private readonly totalBytes: number;
  private readonly totalFiles: number;
  private readonly now: () => number;
  /** Counts for tests: how many writes were stable, how many commits happened. */
  readonly counters = { stableWrites: 0, unstableWrites: 0, commits: 0 };

  constructor(opts: MemoryFsOptions = {}) {
    this.fsid = opts.fsid ?? 0x5354_4f52_5649_534fn;
    this.blockSize = opts.blockSize ?? 4096;
    this.totalBytes = opts.totalBytes ?? 1 << 30;
    this.totalFiles = opts.totalFiles ?? 1_000_000;
    this.now = opts.now ?? Date.now;
    const root = this.newInode(ROOT, 'dir', { mode: 0o777, uid: 0, gid: 0 });
    this.rootGeneration = root.attr.generation;
    root.dir = new Directory(ROOT);
    root.attr.nlink = 2;
  }

  private newInode(ino: number, type: FileType, opts: CreateOptions): Inode {
    const t = this.now();
    const attr: Attr = {
      ino,
      generation: this.nextGen++,
      type,
      mode: opts.mode & 0o7777,
      nlink: 1,
      uid: opts.uid,
      gid: opts.gid,
      size: 0,
      used: 0,
      atimeMs: t,
      mtimeMs: t,
      ctimeMs: t,
    };
    const node: Inode = { attr };
    this.inodes.set(ino, node);
    return node;
  }

  private allocate(type: FileType, opts: CreateOptions): Inode {
    if (this.inodes.size >= this.totalFiles) throw fsError('NOSPC', 'no free inodes');
    const ino = this.freeInos.pop() ?? this.nextIno++;
    return this.newInode(ino, type, opts);
  }

  private release(node: Inode): void {
    this.usedBytes -= node.attr.used;
    this.inodes.delete(node.attr.ino);
    this.freeInos.push(node.attr.ino);
  }

  private get(ino: number, gen: number): Inode {
    const node = this.inodes.get(ino);
    if (!node || node.attr.generation !== gen) throw fsError('STALE', `inode ${ino} gen ${gen} is stale`);
    return node;
  }

  private getDir(ino: number, gen: number): Inode & { dir: Directory } {
    const node = this.get(ino, gen);
    if (!node.dir) throw fsError('NOTDIR', `inode ${ino} is not a directory`);
    return node as Inode & { dir: Directory };
  }

  private checkName(name: string): void {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw fsError('INVAL', `invalid name ${JSON.stringify(name)}`);
    }
    if (Buffer.byteLength(name) > NAME_MAX) throw fsError('NAMETOOLONG', 'name too long');
  }

  private touch(node: Inode, content = true): void {
    const t = this.now();
    node.attr.ctimeMs = t;
    if (content) node.attr.mtimeMs = t;
  }

  private snapshot(node: Inode): Attr {
    return { ...node.attr };
  }

  async getattr(ino: number, gen: number): Promise<Attr> {
    return this.snapshot(this.get(ino, gen));
  }

  async setattr(ino: number, gen: number, s: SetAttr): Promise<Attr> {
    const node = this.get(ino, gen);
    if (s.size !== undefined) {
      if (node.attr.type === 'dir') throw fsError('ISDIR', 'cannot truncate a directory');
      if (node.attr.type !== 'file') throw fsError('INVAL', 'cannot truncate a symlink');
      this.resize(node, s.size);
      node.attr.mtimeMs = this.now();
    }
    if (s.mode !== undefined) node.attr.mode = s.mode & 0o7777;
    if (s.uid !== undefined) node.attr.uid = s.uid;
    if (s.gid !== undefined) node.attr.gid = s.gid;
    if (s.atimeMs !== undefined) node.attr.atimeMs = s.atimeMs;
    if (s.mtimeMs !== undefined) node.attr.mtimeMs = s.mtimeMs;
    node.attr.ctimeMs = this.now();
    return this.snapshot(node);
  }

  private resize(node: Inode, size: number): void {
    if (size > this.totalBytes) throw fsError('FBIG', `size ${size} exceeds the filesystem`);
    const used = Math.ceil(size / this.blockSize) * this.blockSize;
    if (this.usedBytes - node.attr.used + used > this.totalBytes) throw fsError('NOSPC', 'filesystem full');
    const data = node.data ?? new Uint8Array(0);
    if (size > data.length) {
      const grown = new Uint8Array(Math.max(size, Math.min(data.length * 2, size + (1 << 20))));
      grown.set(data.subarray(0, node.attr.size));
      node.data = grown;
    } else {
      data.fill(0, size, Math.max(size, node.attr.size));
    }
    this.usedBytes += used - node.attr.used;
    node.attr.used = used;
    node.attr.size = size;
  }

  async lookup(dir: number, dirGen: number, name: string): Promise<Attr> {
    const d = this.getDir(dir, dirGen);
    if (name === '.') return this.snapshot(d);
    if (name === '..') return this.snapshot(this.inodes.get(d.dir.parent)!);
    this.checkName(name);
    const e = d.dir.byName.get(name);
    if (!e) throw fsError('NOENT', `${name} not found`);
    return this.snapshot(this.inodes.get(e.ino)!);
  }

  private insert(d: Inode & { dir: Directory }, name: string, exclusive = true): void {
    this.checkName(name);
    if (exclusive && d.dir.byName.has(name)) throw fsError('EXIST', `${name} exists`);
  }

  async create(dir: number, dirGen: number, name: string, opts: CreateOptions & { exclusive: boolean; times?: { atimeMs: number; mtimeMs: number } }): Promise<Attr> {
    const d = this.getDir(dir, dirGen);
    this.checkName(name);
    const existing = d.dir.byName.get(name);
    if (existing) {
      if (opts.exclusive) throw fsError('EXIST', `${name} exists`);
      const node = this.inodes.get(existing.ino)!;
      if (node.attr.type === 'dir') throw fsError('ISDIR', `${name} is a directory`);
      return this.snapshot(node);
    }
    const node = this.allocate('file', opts);
    if (opts.times) {
      node.attr.atimeMs = opts.times.atimeMs;
      node.attr.mtimeMs = opts.times.mtimeMs;
    }
    d.dir.add(name, node.attr.ino);
    this.touch(d);
    return this.snapshot(node);
  }

  async mkdir(dir: number, dirGen: number, name: string, opts: CreateOptions): Promise<Attr> {
    const d = this.getDir(dir, dirGen);
    this.insert(d, name);
    const node = this.allocate('dir', opts);
    node.dir = new Directory(dir);
    node.attr.nlink = 2;
    d.dir.add(name, node.attr.ino);
    d.attr.nlink++;
    this.touch(d);
    return this.snapshot(node);
  }

  async symlink(dir: number, dirGen: number, name: string, target: string, opts: CreateOptions): Promise<Attr> {
    const d = this.getDir(dir, dirGen);
    this.insert(d, name);
    const node = this.allocate('symlink', opts);
    node.target = target;
    node.attr.size = Buffer.byteLength(target);
    d.dir.add(name, node.attr.ino);
    this.touch(d);
    return this.snapshot(node);
  }

  async readlink(ino: number, gen: number): Promise<string> {
    const node = this.get(ino, gen);
    if (node.attr.type !== 'symlink') throw fsError('INVAL', 'not a symlink');
    return node.target!;
  }

  private unlinkNode(node: Inode): void {
    node.attr.nlink--;
    this.touch(node, false);
    if (node.attr.nlink === 0) this.release(node);
  }

  async remove(dir: number, dirGen: number, name: string): Promise<void> {
    const d = this.getDir(dir, dirGen);
    this.checkName(name);
    const e = d.dir.byName.get(name);
    if (!e) throw fsError('NOENT', `${name} not found`);
    const node = this.inodes.get(e.ino)!;
    if (node.attr.type === 'dir') throw fsError('ISDIR', `${name} is a directory`);
    d.dir.delete(name);
    this.touch(d);
    this.unlinkNode(node);
  }

  async rmdir(dir: number, dirGen: number, name: string): Promise<void> {
    const d = this.getDir(dir, dirGen);
    this.checkName(name);
    const e = d.dir.byName.get(name);
    if (!e) throw fsError('NOENT', `${name} not found`);
    const node = this.inodes.get(e.ino)!;
    if (!node.dir) throw fsError('NOTDIR', `${name} is not a directory`);
    if (node.dir.byName.size > 0) throw fsError('NOTEMPTY', `${name} is not empty`);
    d.dir.delete(name);
    d.attr.nlink--;
    this.touch(d);
    this.release(node);
  }

  async rename(fromDir: number, fromGen: number, fromName: string, toDir: number, toGen: number, toName: string): Promise<void> {
    const from = this.getDir(fromDir, fromGen);
    const to = this.getDir(toDir, toGen);
    this.checkName(fromName);
    this.checkName(toName);
    const e = from.dir.byName.get(fromName);
    if (!e) throw fsError('NOENT', `${fromName} not found`);
    const node = this.inodes.get(e.ino)!;
    if (node.dir) {
      // Moving a directory into its own subtree would detach it.
      for (let p = toDir; ; p = this.inodes.get(p)!.dir!.parent) {
        if (p === node.attr.ino) throw fsError('INVAL', 'cannot move a directory into itself');
        if (p === ROOT) break;
      }
    }
    const target = to.dir.byName.get(toName);
    if (target) {
      if (target.ino === e.ino) return;
      const victim = this.inodes.get(target.ino)!;
      if (victim.dir && !node.dir) throw fsError('ISDIR', `${toName} is a directory`);
      if (!victim.dir && node.dir) throw fsError('NOTDIR', `${toName} is not a directory`);
      if (victim.dir && victim.dir.byName.size > 0) throw fsError('NOTEMPTY', `${toName} is not empty`);
      to.dir.delete(toName);
      if (victim.dir) {
        to.attr.nlink--;
        this.release(victim);
      } else this.unlinkNode(victim);
    }
    from.dir.delete(fromName);
    to.dir.add(toName, node.attr.ino);
    if (node.dir && fromDir !== toDir) {
      node.dir.parent = toDir;
      from.attr.nlink--;
      to.attr.nlink++;
    }
    this.touch(from);
    this.touch(to);
    this.touch(node, false);
  }

  async link(ino: number, gen: number, dir: number, dirGen: number, name: string): Promise<Attr> {
    const node = this.get(ino, gen);
    const d = this.getDir(dir, dirGen);
    if (node.dir) throw fsError('ISDIR', 'cannot hard-link a directory');
    this.insert(d, name);
    d.dir.add(name, ino);
    node.attr.nlink++;
    this.touch(node, false);
    this.touch(d);
    return this.snapshot(node);
  }

  async read(ino: number, gen: number, offset: number, length: number): Promise<{ data: Uint8Array; eof: boolean }> {
    const node = this.get(ino, gen);
    if (node.attr.type === 'dir') throw fsError('ISDIR', 'is a directory');
    if (node.attr.type !== 'file') throw fsError('INVAL', 'not a regular file');
    const end = Math.min(node.attr.size, offset + length);
    const data = offset >= end ? new Uint8Array(0) : node.data!.slice(offset, end);
    return { data, eof: offset + data.length >= node.attr.size };
  }

  async write(ino: number, gen: number, offset: number, data: Uint8Array, stable: boolean): Promise<Attr> {
    const node = this.get(ino, gen);
    if (node.attr.type === 'dir') throw fsError('ISDIR', 'is a directory');
    if (node.attr.type !== 'file') throw fsError('INVAL', 'not a regular file');
    const end = offset + data.length;
    if (end > node.attr.size) this.resize(node, end);
    if (data.length > 0) node.data!.set(data, offset);
    this.touch(node);
    if (stable) this.counters.stableWrites++;
    else this.counters.unstableWrites++;
    return this.snapshot(node);
  }

  async commit(ino?: number, gen?: number): Promise<void> {
    if (ino !== undefined) this.get(ino, gen ?? 0);
    this.counters.commits++;
  }

  async readdir(dir: number, dirGen: number, cookie: number, maxEntries: number): Promise<{ entries: DirEntry[]; eof: boolean }> {
    const d = this.getDir(dir, dirGen);
    return d.dir.after(cookie, Math.max(1, maxEntries));
  }

  async statfs(): Promise<FsStat> {
    return {
      totalBytes: this.totalBytes,
      freeBytes: this.totalBytes - this.usedBytes,
      totalFiles: this.totalFiles,
      freeFiles: this.totalFiles - this.inodes.size,
    };
  }

  async close(): Promise<void> {}
}
