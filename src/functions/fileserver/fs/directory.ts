/**
 * Directories are B+trees of 4 KiB nodes keyed by (FNV-1a hash of the name,
 * collision sequence). The key doubles as the readdir cookie: hash * 2^20 + seq,
 * so a cookie stays valid across splits and unrelated inserts/removes, and a
 * lookup touches one leaf per tree level even with 100,000 entries.
 *
 * Node: magic "SVDN", type, version, kind (1 leaf / 2 internal), count, owner
 * directory inode, next leaf, entries, CRC-32 in the last 4 bytes.
 *   leaf entry:     hash u32, seq u32, ino u32, type u8, nameLen u8, name
 *   internal:       first child u32, then (hash u32, seq u32, child u32) * count;
 *                   child i+1 holds keys >= key i
 * The root block never moves (it is in the inode); a full root pushes its
 * halves into two new blocks. Empty leaves are kept (no merging): readdir skips them.
 */
import type { BlockAllocator } from './alloc.ts';
import type { BlockReader } from './blockmap.ts';
import { blockSealOk, sealBlock, viewOf } from './checksum.ts';
import type { Inode } from './inode.ts';
import type { Handle } from './journal.ts';
import { nameHash } from './names.ts';
import { BLOCK_SIZE, BlockType } from './superblock.ts';
import { fsError } from '../../../util/errors.ts';

const MAGIC_NODE = 0x4e445653; // "SVDN"
const NODE_VERSION = 1;
const HEADER = 20;
const LEAF_SPACE = BLOCK_SIZE - 4 - HEADER;
const INTERNAL_MAX = Math.floor((BLOCK_SIZE - 4 - HEADER - 4) / 12);
const SEQ_SPAN = 2 ** 20;
/** Blocks one insert may allocate (a split at every level plus a root split). */
export const INSERT_RESERVE = 8;

export interface DirEntryRec {
  key: number;
  ino: number;
  type: number;
  name: string;
  /** Encoded size in a leaf (14 + UTF-8 name bytes). Names are not kept as bytes:
   * 100,000 small buffers would cost more garbage-collector time than re-encoding. */
  size: number;
}

interface Leaf {
  kind: 1;
  next: number;
  entries: DirEntryRec[];
}
interface Internal {
  kind: 2;
  children: number[];
  keys: number[];
}
type Node = Leaf | Internal;

const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** Parsed nodes by buffer identity: cache buffers are stable and only change through writeNode. */
const parsed = new WeakMap<Uint8Array, Node>();

const keyOf = (hash: number, seq: number) => hash * SEQ_SPAN + seq;
const entrySize = (e: DirEntryRec) => e.size;

function parseNode(buf: Uint8Array, block: number): Node {
  const cached = parsed.get(buf);
  if (cached) return cached;
  const v = viewOf(buf);
  if (v.getUint32(0, true) !== MAGIC_NODE || v.getUint16(4, true) !== BlockType.dirNode || !blockSealOk(buf)) {
    throw fsError('IO', `directory block ${block} is corrupt`);
  }
  const kind = buf[7];
  const count = v.getUint16(8, true);
  let node: Node;
  if (kind === 1) {
    const entries: DirEntryRec[] = [];
    let off = HEADER;
    for (let i = 0; i < count; i++) {
      const len = buf[off + 13];
      entries.push({
        key: keyOf(v.getUint32(off, true), v.getUint32(off + 4, true)),
        ino: v.getUint32(off + 8, true),
        type: buf[off + 12],
        name: decoder.decode(buf.subarray(off + 14, off + 14 + len)),
        size: 14 + len,
      });
      off += 14 + len;
    }
    node = { kind: 1, next: v.getUint32(16, true), entries };
  } else if (kind === 2) {
    const children = [v.getUint32(HEADER, true)];
    const keys: number[] = [];
    for (let i = 0; i < count; i++) {
      const off = HEADER + 4 + 12 * i;
      keys.push(keyOf(v.getUint32(off, true), v.getUint32(off + 4, true)));
      children.push(v.getUint32(off + 8, true));
    }
    node = { kind: 2, children, keys };
  } else {
    throw fsError('IO', `directory block ${block} has unknown node kind ${kind}`);
  }
  parsed.set(buf, node);
  return node;
}

/** Encode one leaf entry at `off`; returns the offset after it. */
function writeLeafEntry(buf: Uint8Array, off: number, e: DirEntryRec): number {
  const v = viewOf(buf);
  v.setUint32(off, Math.floor(e.key / SEQ_SPAN), true);
  v.setUint32(off + 4, e.key % SEQ_SPAN, true);
  v.setUint32(off + 8, e.ino, true);
  buf[off + 12] = e.type;
  const n = e.size - 14;
  buf[off + 13] = n;
  encoder.encodeInto(e.name, buf.subarray(off + 14, off + 14 + n));
  return off + 14 + n;
}

function serializeNode(buf: Uint8Array, node: Node, dirIno: number): void {
  buf.fill(0);
  const v = viewOf(buf);
  v.setUint32(0, MAGIC_NODE, true);
  v.setUint16(4, BlockType.dirNode, true);
  buf[6] = NODE_VERSION;
  buf[7] = node.kind;
  v.setUint32(12, dirIno, true);
  if (node.kind === 1) {
    v.setUint16(8, node.entries.length, true);
    v.setUint32(16, node.next, true);
    let off = HEADER;
    for (const e of node.entries) off = writeLeafEntry(buf, off, e);
  } else {
    v.setUint16(8, node.keys.length, true);
    v.setUint32(HEADER, node.children[0], true);
    node.keys.forEach((k, i) => {
      const off = HEADER + 4 + 12 * i;
      v.setUint32(off, Math.floor(k / SEQ_SPAN), true);
      v.setUint32(off + 4, k % SEQ_SPAN, true);
      v.setUint32(off + 8, node.children[i + 1], true);
    });
  }
  sealBlock(buf);
  parsed.set(buf, node);
}

async function writeNode(h: Handle, block: number, node: Node, dirIno: number, fresh = false): Promise<void> {
  const buf = fresh ? h.create(block) : await h.get(block);
  serializeNode(buf, node, dirIno);
  h.dirty(block);
}

const leafBytes = (l: Leaf) => l.entries.reduce((n, e) => n + entrySize(e), 0);

/** Index of the first key > k (the child to descend into). */
function upperBound(keys: number[], k: number): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid] <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first leaf entry with key > k. */
function firstAbove(entries: DirEntryRec[], k: number): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (entries[mid].key <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function readNode(read: BlockReader, block: number): Promise<Node> {
  const b = read(block);
  return parseNode(b instanceof Uint8Array ? b : await b, block);
}

/** The leaf that would hold key `k`, and the internal nodes above it (with the child index taken). */
async function descend(read: BlockReader, root: number, k: number) {
  const path: Array<{ block: number; node: Internal; idx: number }> = [];
  let block = root;
  let node = await readNode(read, block);
  while (node.kind === 2) {
    const idx = upperBound(node.keys, k);
    path.push({ block, node, idx });
    block = node.children[idx];
    node = await readNode(read, block);
  }
  return { path, block, leaf: node };
}

/** Create an empty directory tree; returns its root block. */
export async function dirCreate(h: Handle, alloc: BlockAllocator, dirIno: number): Promise<number> {
  const root = await alloc.allocate(h);
  await writeNode(h, root, { kind: 1, next: 0, entries: [] }, dirIno, true);
  return root;
}

/** Every entry with the name's hash, in key order, with the leaves they sit in. */
async function scanHash(read: BlockReader, root: number, hash: number) {
  const lo = keyOf(hash, 0);
  const hi = keyOf(hash, SEQ_SPAN);
  const found: Array<{ block: number; entry: DirEntryRec }> = [];
  let { block, leaf } = await descend(read, root, lo);
  for (;;) {
    let passed = false;
    const entries = leaf.entries;
    for (let i = firstAbove(entries, lo); i < entries.length; i++) {
      const e = entries[i];
      if (e.key >= hi) {
        passed = true;
        break;
      }
      found.push({ block, entry: e });
    }
    if (passed || leaf.next === 0) return found;
    block = leaf.next;
    const n = await readNode(read, block);
    if (n.kind !== 1) throw fsError('IO', `directory leaf chain reaches non-leaf block ${block}`);
    leaf = n;
  }
}

/**
 * One scan for both questions a create asks: does the name exist, and if not,
 * which key would it get (the next collision sequence after its hash's last).
 */
export async function dirProbe(
  read: BlockReader,
  root: number,
  nameBytes: Uint8Array,
  name: string,
): Promise<{ existing: DirEntryRec | null; key: number }> {
  const hash = nameHash(nameBytes);
  const same = await scanHash(read, root, hash);
  let maxSeq = 0;
  for (const x of same) {
    if (x.entry.name === name) return { existing: x.entry, key: x.entry.key };
    maxSeq = Math.max(maxSeq, x.entry.key % SEQ_SPAN);
  }
  if (maxSeq + 1 >= SEQ_SPAN) throw fsError('NOSPC', 'too many names with the same hash in one directory');
  return { existing: null, key: keyOf(hash, maxSeq + 1) };
}

export async function dirLookup(read: BlockReader, root: number, nameBytes: Uint8Array, name: string): Promise<DirEntryRec | null> {
  const hits = await scanHash(read, root, nameHash(nameBytes));
  for (const x of hits) if (x.entry.name === name) return x.entry;
  return null;
}

/**
 * Insert a name the caller has checked is absent, under `key` from dirProbe
 * (same lock) or a fresh probe. Allocates nodes out of the caller's
 * reservation (INSERT_RESERVE) and counts them in `dir.blocks`.
 */
export async function dirInsert(
  h: Handle,
  alloc: BlockAllocator,
  dirIno: number,
  dir: Inode,
  nameBytes: Uint8Array,
  name: string,
  ino: number,
  type: number,
  probedKey?: number,
): Promise<number> {
  const read = h.read;
  const key = probedKey ?? (await dirProbe(read, dir.dirRoot, nameBytes, name)).key;
  const entry: DirEntryRec = { key, ino, type, name, size: 14 + nameBytes.byteLength };
  const { path, block, leaf } = await descend(read, dir.dirRoot, key);
  // The parsed node mirrors the buffer, which changes right below: update both in place.
  const entries = leaf.entries;
  let at = 0;
  let atByte = HEADER;
  let used = HEADER;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.key < key) {
      at = i + 1;
      atByte += e.size;
    }
    used += e.size;
  }
  const buf = await h.get(block);
  entries.splice(at, 0, entry);
  const updated: Leaf = leaf;
  if (used - HEADER + entrySize(entry) <= LEAF_SPACE) {
    // Common case: shift the tail and write one entry in place (no full re-encode).
    buf.copyWithin(atByte + entrySize(entry), atByte, used);
    writeLeafEntry(buf, atByte, entry);
    viewOf(buf).setUint16(8, entries.length, true);
    sealBlock(buf);
    h.dirty(block);
    return key;
  }
  parsed.delete(buf);
  // Split by bytes so both halves fit.
  let bytes = 0;
  let cut = 0;
  const half = leafBytes(updated) / 2;
  while (cut < entries.length - 1 && bytes + entrySize(entries[cut]) <= half) bytes += entrySize(entries[cut++]);
  cut = Math.max(1, cut);
  const newNode = () => allocNode(h, alloc, dir);
  const right: Leaf = { kind: 1, next: updated.next, entries: entries.slice(cut) };
  const sep = right.entries[0].key;
  if (path.length === 0) {
    const lb = await newNode();
    const rb = await newNode();
    await writeNode(h, rb, right, dirIno, true);
    await writeNode(h, lb, { kind: 1, next: rb, entries: entries.slice(0, cut) }, dirIno, true);
    await writeNode(h, block, { kind: 2, children: [lb, rb], keys: [sep] }, dirIno);
    return key;
  }
  const rb = await newNode();
  await writeNode(h, rb, right, dirIno, true);
  await writeNode(h, block, { kind: 1, next: rb, entries: entries.slice(0, cut) }, dirIno);
  // Push the separator up, splitting full internal nodes on the way.
  let upKey = sep;
  let upChild = rb;
  for (let level = path.length - 1; level >= 0; level--) {
    const { block: pb, node, idx } = path[level];
    const keys = node.keys.slice();
    const children = node.children.slice();
    keys.splice(idx, 0, upKey);
    children.splice(idx + 1, 0, upChild);
    if (keys.length <= INTERNAL_MAX) {
      await writeNode(h, pb, { kind: 2, children, keys }, dirIno);
      return key;
    }
    const mid = keys.length >> 1;
    const leftNode: Internal = { kind: 2, keys: keys.slice(0, mid), children: children.slice(0, mid + 1) };
    const rightNode: Internal = { kind: 2, keys: keys.slice(mid + 1), children: children.slice(mid + 1) };
    upKey = keys[mid];
    if (level === 0) {
      const lb = await newNode();
      const rb2 = await newNode();
      await writeNode(h, lb, leftNode, dirIno, true);
      await writeNode(h, rb2, rightNode, dirIno, true);
      await writeNode(h, pb, { kind: 2, children: [lb, rb2], keys: [upKey] }, dirIno);
      return key;
    }
    upChild = await newNode();
    await writeNode(h, upChild, rightNode, dirIno, true);
    await writeNode(h, pb, leftNode, dirIno);
  }
  return key;
}

async function allocNode(h: Handle, alloc: BlockAllocator, dir: Inode): Promise<number> {
  const b = await alloc.allocate(h);
  dir.blocks++;
  return b;
}

/** Remove `name`; returns the removed entry or null if absent. */
export async function dirRemove(h: Handle, dirIno: number, dir: Inode, nameBytes: Uint8Array, name: string): Promise<DirEntryRec | null> {
  const read = h.read;
  const hit = (await scanHash(read, dir.dirRoot, nameHash(nameBytes))).find((x) => x.entry.name === name);
  if (!hit) return null;
  const leaf = (await readNode(read, hit.block)) as Leaf;
  let at = HEADER;
  let used = HEADER;
  for (const e of leaf.entries) {
    if (e.key < hit.entry.key) at += e.size;
    used += e.size;
  }
  const buf = await h.get(hit.block);
  const sz = entrySize(hit.entry);
  buf.copyWithin(at, at + sz, used);
  buf.fill(0, used - sz, used);
  const entries = leaf.entries.filter((e) => e !== hit.entry);
  viewOf(buf).setUint16(8, entries.length, true);
  sealBlock(buf);
  parsed.set(buf, { kind: 1, next: leaf.next, entries });
  h.dirty(hit.block);
  return hit.entry;
}

/** Entries with key > cookie, at most `max`, and whether the listing is complete. */
export async function dirList(read: BlockReader, root: number, cookie: number, max: number): Promise<{ entries: DirEntryRec[]; eof: boolean }> {
  const out: DirEntryRec[] = [];
  let { leaf } = await descend(read, root, cookie);
  for (;;) {
    const entries = leaf.entries;
    for (let i = firstAbove(entries, cookie); i < entries.length; i++) {
      if (out.length === max) return { entries: out, eof: false };
      out.push(entries[i]);
    }
    if (leaf.next === 0) return { entries: out, eof: true };
    const n = await readNode(read, leaf.next);
    if (n.kind !== 1) throw fsError('IO', `directory leaf chain reaches non-leaf block ${leaf.next}`);
    leaf = n;
  }
}

/** Every block of the tree (for rmdir and fsck), root first. */
export async function dirBlocks(read: BlockReader, root: number): Promise<number[]> {
  const out: number[] = [];
  const visit = async (b: number) => {
    out.push(b);
    const n = await readNode(read, b);
    if (n.kind === 2) for (const c of n.children) await visit(c);
  };
  await visit(root);
  return out;
}

export interface DirCheck {
  entries: DirEntryRec[];
  blocks: number[];
  problems: string[];
}

/** Walk a tree checking node checksums, key order, separators and hashes (fsck). */
export async function dirCheck(read: BlockReader, root: number, dirIno: number, isValidBlock: (b: number) => boolean): Promise<DirCheck> {
  const entries: DirEntryRec[] = [];
  const blocks: number[] = [];
  const problems: string[] = [];
  const leaves: number[] = [];
  const visit = async (b: number, lo: number, hi: number, depth: number): Promise<void> => {
    if (!isValidBlock(b)) {
      problems.push(`directory ${dirIno}: node pointer ${b} is outside the data area`);
      return;
    }
    if (depth > 16) {
      problems.push(`directory ${dirIno}: tree deeper than 16 levels (a cycle?)`);
      return;
    }
    blocks.push(b);
    const buf = await read(b);
    if (viewOf(buf).getUint32(12, true) !== dirIno && blockSealOk(buf)) {
      problems.push(`directory ${dirIno}: node ${b} claims to belong to inode ${viewOf(buf).getUint32(12, true)}`);
    }
    let n: Node;
    try {
      n = parseNode(buf, b);
    } catch (e) {
      problems.push(`directory ${dirIno}: ${(e as Error).message}`);
      return;
    }
    if (n.kind === 1) {
      leaves.push(b);
      let prev = -1;
      for (const e of n.entries) {
        if (e.key <= prev) problems.push(`directory ${dirIno}: leaf ${b} keys out of order`);
        if (e.key < lo || e.key >= hi) problems.push(`directory ${dirIno}: entry '${e.name}' outside its node's key range`);
        if (Math.floor(e.key / SEQ_SPAN) !== nameHash(encoder.encode(e.name))) problems.push(`directory ${dirIno}: entry '${e.name}' has a wrong hash`);
        prev = e.key;
        entries.push(e);
      }
    } else {
      for (let i = 0; i < n.children.length; i++) {
        const clo = i === 0 ? lo : n.keys[i - 1];
        const chi = i === n.keys.length ? hi : n.keys[i];
        if (clo > chi) problems.push(`directory ${dirIno}: node ${b} separators out of order`);
        await visit(n.children[i], clo, chi, depth + 1);
      }
    }
  };
  await visit(root, 0, Number.MAX_SAFE_INTEGER, 0);
  // The leaf chain must visit the leaves in tree order.
  for (let i = 0; i < leaves.length; i++) {
    const n = parsed.get(await read(leaves[i]));
    const want = i + 1 < leaves.length ? leaves[i + 1] : 0;
    if (n && n.kind === 1 && n.next !== want) problems.push(`directory ${dirIno}: leaf ${leaves[i]} links to ${n.next}, expected ${want}`);
  }
  return { entries, blocks, problems };
}

/** An empty root leaf for mkfs (written without a journal). */
export function encodeEmptyLeaf(dirIno: number): Uint8Array {
  const buf = new Uint8Array(BLOCK_SIZE);
  serializeNode(buf, { kind: 1, next: 0, entries: [] }, dirIno);
  return buf;
}
