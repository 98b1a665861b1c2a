/**
 * MOUNT v3 (RFC 1813 Appendix I): hands out the root handle of the one export
 * (or of a directory under it, for clients that mount a sub-path), and keeps
 * the advisory list of who mounted what for DUMP. No source-port checks: libnfs
 * connects from a privileged port, other clients do not, neither proves anything.
 *
 * MNT is where the export's client list and AUTH_NONE policy first apply
 * (MOUNT3ERR_ACCES); a sub-path is walked as the (squashed) caller, with search
 * permission needed on every directory on the way, as a LOOKUP would.
 */
import type { FileSystem } from '../fs/types.ts';
import type { Procedure, RpcProgram } from '../rpc/server.ts';
import type { XdrDecoder, XdrEncoder } from '../rpc/xdr.ts';
import { AUTH_NONE, AUTH_SYS } from '../rpc/auth.ts';
import type { RpcCall } from '../rpc/server.ts';
import { MNTPATHLEN, MOUNT_PROGRAM, MOUNT_V3, MountStat3, PATH_MAX } from './constants.ts';
import { nfsStatusOf } from './errors.ts';
import type { HandleCodec } from './handle.ts';
import { rootAttr } from './root.ts';
import type { ExportPolicy } from './export.ts';
import { requireSearch } from './access.ts';

export interface MountState {
  fs: FileSystem;
  exportPath: string;
  handles: HandleCodec;
  policy: ExportPolicy;
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

  // The flavors MNT offers: AUTH_NONE only where the export lets it in.
  const flavors = state.policy.options.authNone === 'refuse' ? [AUTH_SYS] : [AUTH_SYS, AUTH_NONE];

  async function mnt(path: string, call: RpcCall): Promise<MntResult> {
    const caller = state.policy.admit(call);
    if (!caller) return { status: MountStat3.ACCES };
    if (Buffer.byteLength(path) > MNTPATHLEN) return { status: MountStat3.NAMETOOLONG };
    const wanted = normalizeExportPath(path);
    const rest = wanted === exportPath ? '' : wanted.startsWith(exportPath === '/' ? '/' : exportPath + '/') ? wanted.slice(exportPath.length) : null;
    if (rest === null) return { status: MountStat3.NOENT };
    try {
      let attr = await rootAttr(state.fs);
      for (const name of rest.split('/').filter((x) => x !== '')) {
        // No '..' walk-out: a sub-path mount must stay inside the export.
        if (name === '..' || name === '.') return { status: MountStat3.INVAL };
        if (attr.type !== 'dir') return { status: MountStat3.NOTDIR };
        requireSearch(attr, caller);
        attr = await state.fs.lookup(attr.ino, attr.generation, name);
      }
      if (attr.type !== 'dir') return { status: MountStat3.NOTDIR };
      return { status: MountStat3.OK, handle: state.handles.encode(attr.ino, attr.generation) };
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
      const r = await mnt(path, call);
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
      enc.u32(flavors.length);
      for (const f of flavors) enc.u32(f);
    },
  };
  procs[2] = {
    name: 'MOUNTPROC3_DUMP',
    decode: () => undefined,
    // Who mounted from where is for the export's own clients only.
    handle: (_: void, call: RpcCall) => (state.policy.allows(call.remote) ? mounts.map((m) => ({ ...m })) : []),
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
      // One export; its groups are the client list ('*' when open to every host).
      enc.bool(true).string(exportPath);
      for (const c of state.policy.options.clients) enc.bool(true).string(c);
      enc.bool(false);
      enc.bool(false);
    },
  };
  return { prog: MOUNT_PROGRAM, versions: new Map([[MOUNT_V3, procs]]), mounts };
}
