import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (IEEE) over metadata. zlib's native implementation is an order of
 * magnitude faster than a table in JS, and journal commits checksum every
 * block they carry.
 */
export function crc32(data: Uint8Array, start = 0, end = data.byteLength): number {
  // Below ~1 KiB the call into zlib costs more than a table loop.
  if (end - start < 1024) {
    let c = 0xffffffff;
    for (let i = start; i < end; i++) c = TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }
  return zlibCrc32(data.subarray(start, end)) >>> 0;
}

const TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** Continue a running CRC over more bytes (journal commit records cover many blocks). */
export function crc32Update(crc: number, data: Uint8Array): number {
  return zlibCrc32(data, crc) >>> 0;
}

/** Metadata blocks keep their CRC in the last 4 bytes; it covers everything before. */
export function sealBlock(block: Uint8Array): void {
  const end = block.byteLength - 4;
  new DataView(block.buffer, block.byteOffset, block.byteLength).setUint32(end, crc32(block, 0, end), true);
}

export function blockSealOk(block: Uint8Array): boolean {
  const end = block.byteLength - 4;
  return new DataView(block.buffer, block.byteOffset, block.byteLength).getUint32(end, true) === crc32(block, 0, end);
}

const views = new WeakMap<Uint8Array, DataView>();

/** A DataView over `b`, reused for long-lived block buffers (they are read and written field by field). */
export function viewOf(b: Uint8Array): DataView {
  let v = views.get(b);
  if (!v) {
    v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (b.byteLength === 4096) views.set(b, v);
  }
  return v;
}
