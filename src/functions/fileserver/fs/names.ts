import { fsError } from '../../../util/errors.ts';

/** Longest name, in UTF-8 bytes (POSIX NAME_MAX). */
export const NAME_MAX = 255;
/** Longest symlink target, in bytes (NFS MAXPATHLEN). */
export const PATH_MAX = 1024;

const encoder = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Check a single path component and return its UTF-8 bytes. Throws INVAL for
 * '', '.', '..', '/', NUL or lone surrogates, NAMETOOLONG past 255 bytes.
 */
export function validateName(name: unknown): Uint8Array {
  if (typeof name !== 'string' || name.length === 0) throw fsError('INVAL', 'empty name');
  if (name === '.' || name === '..') throw fsError('INVAL', `name '${name}' is reserved`);
  if (name.includes('/')) throw fsError('INVAL', "name contains '/'");
  if (name.includes('\0')) throw fsError('INVAL', 'name contains NUL');
  if (LONE_SURROGATE.test(name)) throw fsError('INVAL', 'name is not valid Unicode');
  const bytes = encoder.encode(name);
  if (bytes.byteLength > NAME_MAX) throw fsError('NAMETOOLONG', `name is ${bytes.byteLength} bytes (max ${NAME_MAX})`);
  return bytes;
}

/** FNV-1a, 32 bits: directory entries are ordered and found by this. */
export function nameHash(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.byteLength; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
