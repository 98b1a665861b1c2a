/**
 * On-volume format of a dedup volume (version 1). Everything is little-endian and
 * every metadata block carries a CRC32, so a damaged block is reported, never served.
 *
 * Backing volume, in 4 KiB blocks:
 *   0            superblock (written once, at format)
 *   1, 2         journal superblocks A/B (the checkpoint; the newer valid one wins)
 *   journal      redo journal of whole metadata-page images (see journal.ts)
 *   map          logical -> physical map pages, 510 entries of 8 bytes each
 *   refcount     one u32 per data block: reference count + fragment count
 *   index        fingerprint index pages (advisory, every hit is byte-verified)
 *   data         raw blocks and packed blocks of compressed fragments
 */
import { crc32 } from 'node:zlib';
import { invalidArgument } from '../../util/errors.ts';

export const BLOCK = 4096;
export const FORMAT_VERSION = 1;
export const SUPER_MAGIC = 'SVDEDUP\0';
export const VOLUME_TYPE_DEDUP = 1;

export const PAGE_MAGIC = 0x50445653; // "SVDP"
export const PAGE_HEADER = 16;
export enum PageType {
  Map = 1,
  Refcount = 2,
  Index = 3,
}
export const MAP_ENTRIES = (BLOCK - PAGE_HEADER) / 8; // 510
export const REF_ENTRIES = (BLOCK - PAGE_HEADER) / 4; // 1020
export const INDEX_ENTRIES = (BLOCK - PAGE_HEADER) / 16; // 255

export const COMPRESSION = ['none', 'lz4', 'deflate'] as const;
export type Compression = (typeof COMPRESSION)[number];

/**
 * The fingerprint function of the index, recorded in superblock byte 22 (0 in every
 * volume formatted before it was recorded: SHA-256). The index is advisory and every hit
 * is byte-compared, so code that ignores the byte stays correct (it only finds fewer
 * duplicates); that is why this needs no new format version.
 */
export const FINGERPRINTS = ['sha256', 'xxh64'] as const;
export type FingerprintFn = (typeof FINGERPRINTS)[number];

// ---------------------------------------------------------------- checksums

/** CRC32 of a block, skipping the 4-byte checksum field at `crcAt`. */
export function blockCrc(buf: Uint8Array, crcAt: number): number {
  return crc32(buf.subarray(crcAt + 4), crc32(buf.subarray(0, crcAt)));
}

// ---------------------------------------------------------------- 64-bit fields as two u32 (values < 2^53)

export const getU64 = (v: DataView, at: number): number => v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
export function setU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, value >>> 0, true);
  v.setUint32(at + 4, Math.floor(value / 2 ** 32), true);
}
export const viewOf = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

// ---------------------------------------------------------------- locations (map entries, index values)

/** Where a logical block's data lives. Encoded as pba*64 + slot*4 + kind; 0 = zero block. */
export enum LocKind {
  Zero = 0,
  Raw = 1,
  Packed = 2,
}
export const MAX_SLOTS = 16;
export const encodeLoc = (kind: LocKind, pba: number, slot = 0): number =>
  kind === LocKind.Zero ? 0 : pba * 64 + slot * 4 + kind;
export const locKind = (loc: number): LocKind => loc % 4;
export const locSlot = (loc: number): number => Math.floor(loc / 4) % 16;
export const locPba = (loc: number): number => Math.floor(loc / 64);

// ---------------------------------------------------------------- refcount entries

/** A refcount entry: low 27 bits references, high 5 bits fragments stored in the block. */
export const REF_MAX = 2 ** 27 - 1;
export const refCount = (e: number): number => e & REF_MAX;
export const refFragments = (e: number): number => e >>> 27;
export const refEntry = (refs: number, fragments: number): number => ((fragments << 27) | refs) >>> 0;

// ---------------------------------------------------------------- metadata page header

/**
 * Page header: magic u32, type u8, version u8, reserved u16, page number u32 (the
 * page's own block number: catches misdirected writes), crc32 u32.
 */
export function initPage(buf: Uint8Array, type: PageType, blockNo: number): void {
  buf.fill(0);
  const v = viewOf(buf);
  v.setUint32(0, PAGE_MAGIC, true);
  v.setUint8(4, type);
  v.setUint8(5, FORMAT_VERSION);
  v.setUint32(8, blockNo, true);
}
export function sealPage(buf: Uint8Array): void {
  viewOf(buf).setUint32(12, blockCrc(buf, 12), true);
}
/** Why a page is unusable, or null when it is intact. */
export function pageProblem(buf: Uint8Array, type: PageType, blockNo: number): string | null {
  const v = viewOf(buf);
  if (v.getUint32(0, true) !== PAGE_MAGIC) return 'bad magic';
  if (v.getUint32(12, true) !== blockCrc(buf, 12)) return 'checksum mismatch';
  if (v.getUint8(4) !== type) return `type ${v.getUint8(4)}, expected ${type}`;
  if (v.getUint8(5) !== FORMAT_VERSION) return `version ${v.getUint8(5)}`;
  if (v.getUint32(8, true) !== blockNo) return `page number ${v.getUint32(8, true)} (misdirected write)`;
  return null;
}

// ---------------------------------------------------------------- layout and superblock

export interface Layout {
  compression: Compression;
  dedup: boolean;
  fingerprint: FingerprintFn;
  logicalSize: number;
  backingBlocks: number;
  journalStart: number;
  journalBlocks: number;
  mapStart: number;
  mapPages: number;
  refStart: number;
  refPages: number;
  indexStart: number;
  indexPages: number;
  dataStart: number;
  dataBlocks: number;
}

/** Metadata sizes for a backing volume: the journal ~1.5%, the index ~2 slots per data block. */
export function computeLayout(backingSize: number, logicalSize: number, compression: Compression, dedup: boolean, fingerprint: FingerprintFn = 'xxh64'): Layout {
  if (!Number.isSafeInteger(logicalSize) || logicalSize <= 0 || logicalSize % BLOCK !== 0) {
    throw invalidArgument(`logicalSize must be a positive multiple of ${BLOCK}, got ${logicalSize}`);
  }
  if (!COMPRESSION.includes(compression)) {
    throw invalidArgument(`compression must be one of ${COMPRESSION.join(', ')}, got ${String(compression)}`);
  }
  if (!FINGERPRINTS.includes(fingerprint)) {
    throw invalidArgument(`fingerprint must be one of ${FINGERPRINTS.join(', ')}, got ${String(fingerprint)}`);
  }
  const backingBlocks = Math.floor(backingSize / BLOCK);
  const journalBlocks = Math.min(4096, Math.max(256, Math.floor(backingBlocks / 64)));
  const mapPages = Math.ceil(logicalSize / BLOCK / MAP_ENTRIES);
  const journalStart = 3;
  const mapStart = journalStart + journalBlocks;
  const refStart = mapStart + mapPages;
  const rest = backingBlocks - refStart;
  const perBlock = 1 + 1 / REF_ENTRIES + (dedup ? 2 / INDEX_ENTRIES : 0);
  let dataBlocks = Math.floor(rest / perBlock);
  const metaFor = (d: number) => ({ ref: Math.ceil(d / REF_ENTRIES), index: dedup ? Math.ceil((2 * d) / INDEX_ENTRIES) : 0 });
  while (dataBlocks > 0 && dataBlocks + metaFor(dataBlocks).ref + metaFor(dataBlocks).index > rest) dataBlocks--;
  if (dataBlocks < 16) {
    throw invalidArgument(`backing volume of ${backingSize} bytes is too small for a dedup volume (metadata needs ${refStart} blocks)`);
  }
  const { ref: refPages, index: indexPages } = metaFor(dataBlocks);
  const indexStart = refStart + refPages;
  return {
    compression,
    dedup,
    fingerprint,
    logicalSize,
    backingBlocks,
    journalStart,
    journalBlocks,
    mapStart,
    mapPages,
    refStart,
    refPages,
    indexStart,
    indexPages,
    dataStart: indexStart + indexPages,
    dataBlocks,
  };
}

const SB_CRC_AT = 80;

export function encodeSuperblock(l: Layout): Uint8Array {
  const buf = new Uint8Array(BLOCK);
  const v = viewOf(buf);
  new TextEncoder().encodeInto(SUPER_MAGIC, buf);
  v.setUint32(8, VOLUME_TYPE_DEDUP, true);
  v.setUint32(12, FORMAT_VERSION, true);
  v.setUint32(16, BLOCK, true);
  v.setUint8(20, COMPRESSION.indexOf(l.compression));
  v.setUint8(21, l.dedup ? 1 : 0);
  v.setUint8(22, FINGERPRINTS.indexOf(l.fingerprint));
  setU64(v, 24, l.logicalSize);
  setU64(v, 32, l.backingBlocks * BLOCK);
  const fields = [l.journalStart, l.journalBlocks, l.mapStart, l.mapPages, l.refStart, l.refPages, l.indexStart, l.indexPages, l.dataStart, l.dataBlocks];
  fields.forEach((f, i) => v.setUint32(40 + 4 * i, f, true));
  v.setUint32(SB_CRC_AT, crc32(buf.subarray(0, SB_CRC_AT)), true);
  return buf;
}

export type SuperblockResult = { kind: 'blank' } | { kind: 'foreign'; why: string } | { kind: 'corrupt'; why: string } | { kind: 'ok'; layout: Layout };

export function decodeSuperblock(buf: Uint8Array): SuperblockResult {
  if (buf.every((b) => b === 0)) return { kind: 'blank' };
  const v = viewOf(buf);
  if (new TextDecoder().decode(buf.subarray(0, 8)) !== SUPER_MAGIC) return { kind: 'foreign', why: 'bad magic' };
  if (v.getUint32(SB_CRC_AT, true) !== crc32(buf.subarray(0, SB_CRC_AT))) return { kind: 'corrupt', why: 'superblock checksum mismatch' };
  if (v.getUint32(8, true) !== VOLUME_TYPE_DEDUP) return { kind: 'foreign', why: `volume type ${v.getUint32(8, true)}` };
  if (v.getUint32(12, true) !== FORMAT_VERSION) return { kind: 'foreign', why: `format version ${v.getUint32(12, true)}` };
  if (v.getUint32(16, true) !== BLOCK) return { kind: 'foreign', why: `block size ${v.getUint32(16, true)}` };
  const compression = COMPRESSION[v.getUint8(20)];
  if (compression === undefined) return { kind: 'corrupt', why: `compression code ${v.getUint8(20)}` };
  const fingerprint = FINGERPRINTS[v.getUint8(22)];
  if (fingerprint === undefined) return { kind: 'corrupt', why: `fingerprint code ${v.getUint8(22)}` };
  const f = (i: number) => v.getUint32(40 + 4 * i, true);
  return {
    kind: 'ok',
    layout: {
      compression,
      dedup: v.getUint8(21) === 1,
      fingerprint,
      logicalSize: getU64(v, 24),
      backingBlocks: getU64(v, 32) / BLOCK,
      journalStart: f(0),
      journalBlocks: f(1),
      mapStart: f(2),
      mapPages: f(3),
      refStart: f(4),
      refPages: f(5),
      indexStart: f(6),
      indexPages: f(7),
      dataStart: f(8),
      dataBlocks: f(9),
    },
  };
}
