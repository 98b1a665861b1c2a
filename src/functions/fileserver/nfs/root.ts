/**
 * The export root's attributes: the FileSystem contract names the root by
 * `rootIno` and `rootGeneration`, so nothing is guessed.
 */
import type { Attr, FileSystem } from '../fs/types.ts';

export async function rootAttr(fs: FileSystem): Promise<Attr> {
  return fs.getattr(fs.rootIno, fs.rootGeneration);
}
