/**
 * The contract between the NFSv3 front end (src/functions/fileserver/nfs/) and the
 * filesystem that lives on a volume (src/functions/fileserver/fs/). Inode numbers
 * plus a per-inode generation make file handles that stay valid across server
 * restarts and go stale when an inode is freed and reused.
 */
import { StorvisorError } from '../../../util/errors.ts';
export type FileType = 'file' | 'dir' | 'symlink';

export interface Attr {
  ino: number;
  generation: number;
  type: FileType;
  /** Permission bits only (0o7777). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Logical size in bytes. */
  size: number;
  /** Bytes of storage allocated (sparse files use less than size). */
  used: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  /** Truncate or extend (sparse). */
  size?: number;
  atimeMs?: number;
  mtimeMs?: number;
}

export interface DirEntry {
  name: string;
  ino: number;
  /** Opaque, non-zero, stable position: readdir(dir, cookie) continues after this entry. */
  cookie: number;
}

export interface FsStat {
  totalBytes: number;
  freeBytes: number;
  totalFiles: number;
  freeFiles: number;
}

/** Error codes, named after NFS3ERR_* (the NFS layer maps them one-to-one). */
export type FsErrorCode =
  | 'PERM'
  | 'NOENT'
  | 'IO'
  | 'ACCES'
  | 'EXIST'
  | 'XDEV'
  | 'NOTDIR'
  | 'ISDIR'
  | 'INVAL'
  | 'FBIG'
  | 'NOSPC'
  | 'ROFS'
  | 'MLINK'
  | 'NAMETOOLONG'
  | 'NOTEMPTY'
  | 'STALE'
  | 'BADHANDLE'
  | 'NOTSUPP'
  | 'SERVERFAULT';

/**
 * A FileSystem refuses a call with a StorvisorError whose code is
 * SV_ERR_FS_<FsErrorCode> (util/errors.ts `fsError`); this reads the name back.
 */
export function fsCodeOf(err: unknown): FsErrorCode | undefined {
  if (!(err instanceof StorvisorError) || !err.code.startsWith('SV_ERR_FS_')) return undefined;
  const name = err.code.slice(10);
  return (FS_ERROR_CODES as readonly string[]).includes(name) ? (name as FsErrorCode) : undefined;
}
const FS_ERROR_CODES: readonly FsErrorCode[] = [
  'PERM', 'NOENT', 'IO', 'ACCES', 'EXIST', 'XDEV', 'NOTDIR', 'ISDIR', 'INVAL', 'FBIG', 'NOSPC', 'ROFS', 'MLINK',
  'NAMETOOLONG', 'NOTEMPTY', 'STALE', 'BADHANDLE', 'NOTSUPP', 'SERVERFAULT',
];

export interface CreateOptions {
  mode: number;
  uid: number;
  gid: number;
}

/**
 * A POSIX-like filesystem addressed by inode number. Every method that takes an
 * inode also takes its generation (from a file handle) and throws STALE when the
 * inode was freed or reused. Names are single path components: '', '.', '..'
 * (except where lookup allows them), and names containing '/' or NUL are INVAL.
 * Metadata-changing calls are durable when they resolve (journaled), so NFS can
 * reply to them as synchronous; `write` with stable=false may stay in memory
 * until `commit`.
 */
export interface FileSystem {
  /** Identifies this filesystem (stable across restarts; goes into fsid). */
  readonly fsid: bigint;
  readonly rootIno: number;
  /** The root directory's generation: with rootIno, the export root's file handle. */
  readonly rootGeneration: number;
  readonly blockSize: number;
  getattr(ino: number, gen: number): Promise<Attr>;
  setattr(ino: number, gen: number, attrs: SetAttr): Promise<Attr>;
  /** '.' and '..' are allowed here. */
  lookup(dir: number, dirGen: number, name: string): Promise<Attr>;
  /**
   * exclusive: fail with EXIST if the name exists; otherwise return the existing file (truncated if attrs.size = 0 is set by the caller via setattr).
   * `times`: the new file's atime and mtime, set in the same transaction as the name (NFS EXCLUSIVE
   * create keeps its verifier there, so a crash can never leave the file without it).
   */
  create(dir: number, dirGen: number, name: string, opts: CreateOptions & { exclusive: boolean; times?: { atimeMs: number; mtimeMs: number } }): Promise<Attr>;
  mkdir(dir: number, dirGen: number, name: string, opts: CreateOptions): Promise<Attr>;
  symlink(dir: number, dirGen: number, name: string, target: string, opts: CreateOptions): Promise<Attr>;
  readlink(ino: number, gen: number): Promise<string>;
  remove(dir: number, dirGen: number, name: string): Promise<void>;
  rmdir(dir: number, dirGen: number, name: string): Promise<void>;
  rename(fromDir: number, fromGen: number, fromName: string, toDir: number, toGen: number, toName: string): Promise<void>;
  link(ino: number, gen: number, dir: number, dirGen: number, name: string): Promise<Attr>;
  /**
   * `attr`, when given, is the file's attributes as of the read (taken under the
   * same lock), so a server needs no second call for its post-op attributes.
   */
  read(ino: number, gen: number, offset: number, length: number): Promise<{ data: Uint8Array; eof: boolean; attr?: Attr }>;
  /** stable=true: data and size durable before resolving (FILE_SYNC / DATA_SYNC). */
  write(ino: number, gen: number, offset: number, data: Uint8Array, stable: boolean): Promise<Attr>;
  /** Make every earlier unstable write to this inode (or all inodes) durable. */
  commit(ino?: number, gen?: number): Promise<void>;
  /** Entries after `cookie` (0 = from the start), without '.' and '..', at most `maxEntries`. */
  readdir(dir: number, dirGen: number, cookie: number, maxEntries: number): Promise<{ entries: DirEntry[]; eof: boolean }>;
  statfs(): Promise<FsStat>;
  /** Flush everything and release the device. */
  close(): Promise<void>;
}
