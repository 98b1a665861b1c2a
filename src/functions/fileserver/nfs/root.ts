/**
 * The root directory's generation. The FileSystem contract names `rootIno` but
 * not the root's generation, which every handle needs. A filesystem may expose
 * it as `rootGeneration`; otherwise we take the first small generation the root
 * answers to (a fresh root is made at mkfs with generation 0 or 1).
 */
import { FsError, type Attr, type FileSystem } from '../fs/types.ts';

export async function rootAttr(fs: FileSystem): Promise<Attr> {
  const declared = (fs as { rootGeneration?: unknown }).rootGeneration;
  const candidates = typeof declared === 'number' ? [declared] : [1, 0, 2];
  let lastErr: unknown;
  for (const gen of candidates) {
    try {
      return await fs.getattr(fs.rootIno, gen);
    } catch (err) {
      lastErr = err;
      if (!(err instanceof FsError && err.code === 'STALE')) throw err;
    }
  }
  throw lastErr;
}
