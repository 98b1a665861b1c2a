/**
 * MOUNT v3 (RFC 1813 Appendix I): hands out the root handle of the one export
 * (or of a directory under it, for clients that mount a sub-path), and keeps
 * the advisory list of who mounted what for DUMP. No source-port checks: libnfs
 * connects from a privileged port, other clients do not, neither proves anything.
 */
import type { FileSystem } from '../fs/types.ts';
import type { Procedure, RpcProgram } from '../rpc/server.ts';
import type { XdrDecoder, XdrEncoder } from '../rpc/xdr.ts';
import { AUTH_NONE, AUTH_SYS } from '../rpc/auth.ts';
import { MNTPATHLEN, MOUNT_PROGRAM, MOUNT_V3, MountStat3, PATH_MAX } from './constants.ts';
import { nfsStatusOf } from './errors.ts';
import { encodeHandle } from './handle.ts';
import { rootAttr } from './root.ts';

export interface MountState {
  fs: FileSystem;
  exportPath: string;
}

/** '/export/', '//export' → '/export'. */
export function normalizeExportPath(p: string): string {
  const parts = p.split('/').filter((x) => x !== '');
  return '/' + parts.join('/');
}

type MntResult = { status: MountStat3; handle?: Buffer };

export function mountProgram(state: MountState): RpcProgram & { mounts: Array<{ host: string; dir: string }> } {
  const exportPath = normalizeExportPath(state.exportPath);
  const mounts: Array<{ host: string; dir: string }> = [];
  const hostOf = (remote: string) => remote.slice(0, remote.lastIndexOf(':'));
  const decodePath = (dec: XdrDecoder) => dec.string(PATH_MAX);

  async function mnt(path: string): Promise<MntResult> {
    if (Buffer.byteLength(path) > MNTPATHLEN) return { status: MountStat3.NAMETOOLONG };
    const wanted = normalizeExportPath(path);
    const rest = wanted === exportPath ? '' : wanted.startsWith(exportPath === '/' ? '/' : exportPath + '/') ? wanted.slice(exportPath.length) : null;
    if (rest === null) return { status: MountStat3.NOENT };
    try {
      let attr = await rootAttr(state.fs);
      for (const name of rest.split('/').filter((x) => x !== '')) {
        // No '..' walk-out: a sub-path mount must stay inside the export.
        if (name === '..' || name === '.') return { status: MountStat3.INVAL };
        attr = await state.fs.lookup(attr.ino, attr.generation, name);
      }
      if (attr.type !== 'dir') return { status: MountStat3.NOTDIR };
      return { status: MountStat3.OK, handle: encodeHandle(state.fs.fsid, attr.ino, attr.generation) };
    } catch (err) {
      const s = nfsStatusOf(err);
      return { status: s in MountStat3 ? (s as number as MountStat3) : MountStat3.SERVERFAULT };
    }
  }

  const procs: Procedure[] = [];
  procs[0] = { name: 'MOUNTPROC3_NULL', decode: () => undefined, handle: () => undefined, encode: () => {} };
  procs[1] = {
    name: 'MOUNTPROC3_MNT',
    decode: decodePath,
    async handle(path: string, call) {
      const r = await mnt(path);
      if (r.status === MountStat3.OK) {
        const host = hostOf(call.remote);
        const dir = normalizeExportPath(path);
        if (!mounts.some((m) => m.host === host && m.dir === dir)) mounts.push({ host, dir });
      }
      return r;
    },
    encode(enc: XdrEncoder, r: MntResult) {
      enc.u32(r.status);
      if (r.status !== MountStat3.OK) return;
      enc.opaque(r.handle!);
      enc.u32(2).u32(AUTH_SYS).u32(AUTH_NONE);
    },
  };
  procs[2] = {
    name: 'MOUNTPROC3_DUMP',
    decode: () => undefined,
    handle: () => mounts.map((m) => ({ ...m })),
    encode(enc: XdrEncoder, list: Array<{ host: string; dir: string }>) {
      for (const m of list) enc.bool(true).string(m.host).string(m.dir);
      enc.bool(false);
    },
  };
  procs[3] = {
    name: 'MOUNTPROC3_UMNT',
    decode: decodePath,
    handle(path: string, call) {
      const host = hostOf(call.remote);
      const dir = normalizeExportPath(path);
      for (let i = mounts.length - 1; i >= 0; i--) if (mounts[i]!.host === host && mounts[i]!.dir === dir) mounts.splice(i, 1);
    },
    encode: () => {},
  };
  procs[4] = {
    name: 'MOUNTPROC3_UMNTALL',
    decode: () => undefined,
    handle(_: void, call) {
      const host = hostOf(call.remote);
      for (let i = mounts.length - 1; i >= 0; i--) if (mounts[i]!.host === host) mounts.splice(i, 1);
    },
    encode: () => {},
  };
  procs[5] = {
    name: 'MOUNTPROC3_EXPORT',
    decode: () => undefined,
    handle: () => undefined,
    encode(enc: XdrEncoder) {
      // One export, no group list: open to every host.
      enc.bool(true).string(exportPath).bool(false);
      enc.bool(false);
    },
  };
  return { prog: MOUNT_PROGRAM, versions: new Map([[MOUNT_V3, procs]]), mounts };
}
