import { closeSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { FileBackend } from '../backend.ts';
import { BLOCK } from '../block-cache.ts';
import { StorvisorError } from '../../util/errors.ts';

/**
 * A persistent bitmap with one bit per 4 KiB block: which blocks a snapshot's
 * delta file (or a clone's own image) holds. The file is a 4096-byte header
 * (magic, version, block size, block count) followed by the bits, bit b at byte
 * HEADER + b/8, bit b%8. It only ever gains bits while in use (it is deleted
 * whole), so a torn sector write can only lose bits whose persist had not
 * completed: never invent one.
 *
 * Rules the users keep:
 * - `set` is called only once the data the bits vouch for is durable.
 * - `set` resolves once the bits are durable: the 512-byte sectors holding them
 *   are written with O_DSYNC. One sector write is in flight at a time per
 *   sector (a later write of an older copy could otherwise land last); writes
 *   that arrive meanwhile share the next one (group commit).
 *
 * Memory: pages of 4 KiB (32768 blocks, 128 MiB of data) are allocated when a
 * bit in them is first set, so a map costs what has been written, at most
 * blocks/8 bytes. Callers reserve that worst case up front (see Snapshots).
 */
export const MAP_HEADER = 4096;
const MAGIC = 'SVBLKMAP';
const VERSION = 1;
const SECTOR = 512;
const PAGE_BYTES = 4096;
const PAGE_BITS = PAGE_BYTES * 8;
const SECTORS_PER_PAGE = PAGE_BYTES / SECTOR;

export const mapBytesFor = (blocks: number): number => Math.ceil(blocks / 8);

export const badMap = (path: string, what: string) =>
  new StorvisorError('SV_ERR_BAD_SNAPSHOT_MAP', 'EIO', `block map ${path}: ${what}`);

interface SectorState {
  writing: boolean;
  /** Resolvers of `set` calls waiting for the write in flight (whose copy predates their bits). */
  next: Array<(err?: Error) => void>;
}

export class BlockMap {
  private readonly pages: Array<Uint8Array | undefined>;
  private readonly sectors = new Map<number, SectorState>();
  private readonly scratch: Buffer[] = [];
  /** Bits set (counted once each). */
  count = 0;
  /** Sector writes issued (for the per-write cost report). */
  persists = 0;

  private constructor(
    readonly path: string,
    readonly blocks: number,
    private readonly file: FileBackend,
  ) {
    this.pages = new Array(Math.ceil(blocks / PAGE_BITS)).fill(undefined);
  }

  /** Create an empty map file for `blocks` blocks, durable on return (the directory entry is the caller's). */
  static create(path: string, blocks: number): void {
    const header = Buffer.alloc(MAP_HEADER);
    header.write(MAGIC, 0, 'latin1');
    header.writeUInt32LE(VERSION, 8);
    header.writeUInt32LE(BLOCK, 12);
    header.writeDoubleLE(blocks, 16);
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, header, 0, MAP_HEADER, 0);
      ftruncateSync(fd, MAP_HEADER + Math.ceil(mapBytesFor(blocks) / SECTOR) * SECTOR);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Open a map file and load its bits (only pages with a bit set take memory). */
  static open(path: string, blocks: number): BlockMap {
    const fd = openSync(path, 'r');
    let map: BlockMap;
    try {
      const header = Buffer.alloc(MAP_HEADER);
      if (readSync(fd, header, 0, MAP_HEADER, 0) !== MAP_HEADER) throw badMap(path, 'short header');
      if (header.toString('latin1', 0, 8) !== MAGIC) throw badMap(path, 'bad magic');
      if (header.readUInt32LE(8) !== VERSION) throw badMap(path, `unknown version ${header.readUInt32LE(8)}`);
      if (header.readUInt32LE(12) !== BLOCK) throw badMap(path, `block size ${header.readUInt32LE(12)}, expected ${BLOCK}`);
      if (header.readDoubleLE(16) !== blocks) throw badMap(path, `${header.readDoubleLE(16)} blocks, expected ${blocks}`);
      map = new BlockMap(path, blocks, FileBackend.open(path, { direct: false }));
      const page = Buffer.alloc(PAGE_BYTES);
      const bytes = mapBytesFor(blocks);
      for (let p = 0; p * PAGE_BYTES < bytes; p++) {
        const n = readSync(fd, page, 0, Math.min(PAGE_BYTES, bytes - p * PAGE_BYTES), MAP_HEADER + p * PAGE_BYTES);
        page.fill(0, n);
        // Bits past the last block are never set; mask them anyway so `count` is exact.
        if ((p + 1) * PAGE_BITS > blocks) {
          for (let b = blocks - p * PAGE_BITS; b < PAGE_BITS; b++) page[b >> 3]! &= ~(1 << (b & 7));
        }
        if (page.some((v) => v !== 0)) {
          map.pages[p] = new Uint8Array(page);
          for (const v of page) map.count += popcount(v);
        }
      }
    } finally {
      closeSync(fd);
    }
    return map;
  }

  has(b: number): boolean {
    const page = this.pages[Math.floor(b / PAGE_BITS)];
    if (page === undefined) return false;
    const i = b % PAGE_BITS;
    return (page[i >> 3]! & (1 << (i & 7))) !== 0;
  }

  /** Whether every block in [first, +count) is set. */
  hasAll(first: number, count: number): boolean {
    for (let b = first; b < first + count; b++) if (!this.has(b)) return false;
    return true;
  }

  get full(): boolean {
    return this.count === this.blocks;
  }

  /** Memory the loaded pages take. */
  get bytes(): number {
    let n = 0;
    for (const p of this.pages) if (p !== undefined) n += PAGE_BYTES;
    return n;
  }

  /** Set the bits of [first, +count) (their data is durable) and resolve once the bits are too. */
  set(first: number, count: number): Promise<void> {
    const touched: number[] = [];
    for (let b = first; b < first + count; b++) {
      if (this.has(b)) continue;
      const p = Math.floor(b / PAGE_BITS);
      const page = (this.pages[p] ??= new Uint8Array(PAGE_BYTES));
      const i = b % PAGE_BITS;
      page[i >> 3]! |= 1 << (i & 7);
      this.count++;
      const sector = p * SECTORS_PER_PAGE + Math.floor((i >> 3) / SECTOR);
      if (touched[touched.length - 1] !== sector) touched.push(sector);
    }
    if (touched.length === 0) return Promise.resolve();
    if (touched.length === 1) return this.persist(touched[0]!);
    return Promise.all(touched.map((s) => this.persist(s))).then(() => undefined);
  }

  private persist(sector: number): Promise<void> {
    let st = this.sectors.get(sector);
    if (st?.writing) {
      // The write in flight copied the sector before our bit: ride on the next one.
      return new Promise((resolve, reject) => st!.next.push((err) => (err ? reject(err) : resolve())));
    }
    if (!st) this.sectors.set(sector, (st = { writing: false, next: [] }));
    return new Promise((resolve, reject) => this.write(sector, st!, [(err) => (err ? reject(err) : resolve())]));
  }

  private write(sector: number, st: SectorState, waiters: Array<(err?: Error) => void>): void {
    st.writing = true;
    const buf = this.scratch.pop() ?? Buffer.alloc(SECTOR);
    const page = this.pages[Math.floor(sector / SECTORS_PER_PAGE)];
    const from = (sector % SECTORS_PER_PAGE) * SECTOR;
    if (page) buf.set(page.subarray(from, from + SECTOR));
    else buf.fill(0);
    this.persists++;
    this.file.write(buf, 0, SECTOR, MAP_HEADER + sector * SECTOR).then(
      () => this.written(sector, st, buf, waiters),
      (err: Error) => this.written(sector, st, buf, waiters, err),
    );
  }

  private written(sector: number, st: SectorState, buf: Buffer, waiters: Array<(err?: Error) => void>, err?: Error): void {
    this.scratch.push(buf);
    for (const w of waiters) w(err);
    if (st.next.length > 0) {
      this.write(sector, st, st.next.splice(0));
      return;
    }
    st.writing = false;
    this.sectors.delete(sector);
  }

  /** Writes in flight: zero once every `set` has resolved. */
  get busy(): boolean {
    return this.sectors.size > 0;
  }

  close(): void {
    this.file.close();
  }

  stats(): { bits: number; bytes: number; persists: number; writes: number } {
    return { bits: this.count, bytes: this.bytes, persists: this.persists, writes: this.file.stats.writes };
  }
}

function popcount(v: number): number {
  let n = 0;
  for (; v; v &= v - 1) n++;
  return n;
}
