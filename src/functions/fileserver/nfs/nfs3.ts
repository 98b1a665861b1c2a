/**
 * The NFSv3 program (RFC 1813): the procedure table. Each procedure is
 * decode (wire → args, garbageArgs only) / handle (args → result, never throws:
 * every failure becomes an nfsstat3 through nfsStatusOf) / encode (result → wire),
 * and carries the wcc_data / post_op_attr the RFC asks for on success AND failure.
 * The procedures live in proc-*.ts and readdir.ts, grouped by what they touch.
 */
import type { Procedure, RpcProgram } from '../rpc/server.ts';
import { NFS_PROGRAM, NFS_V3, Nfs3Proc } from './constants.ts';
import { admitCall, type NfsServerState } from './common.ts';
import { NfsStat3 } from './constants.ts';
import { attributeProcedures } from './proc-attrs.ts';
import { ioProcedures } from './proc-io.ts';
import { createProcedures } from './proc-create.ts';
import { namespaceProcedures } from './proc-namespace.ts';
import { fsInfoProcedures } from './proc-fsinfo.ts';
import { readdirProcedures } from './readdir.ts';

export type { NfsServerState } from './common.ts';

export function nfsProgram(st: NfsServerState): RpcProgram {
  const p = {
    ...attributeProcedures(st),
    ...ioProcedures(st),
    ...createProcedures(st),
    ...namespaceProcedures(st),
    ...fsInfoProcedures(st),
    ...readdirProcedures(st),
  };
  const procs: Procedure[] = [];
  procs[Nfs3Proc.NULL] = p.NULL;
  procs[Nfs3Proc.GETATTR] = p.GETATTR;
  procs[Nfs3Proc.SETATTR] = p.SETATTR;
  procs[Nfs3Proc.LOOKUP] = p.LOOKUP;
  procs[Nfs3Proc.ACCESS] = p.ACCESS;
  procs[Nfs3Proc.READLINK] = p.READLINK;
  procs[Nfs3Proc.READ] = p.READ;
  procs[Nfs3Proc.WRITE] = p.WRITE;
  procs[Nfs3Proc.CREATE] = p.CREATE;
  procs[Nfs3Proc.MKDIR] = p.MKDIR;
  procs[Nfs3Proc.SYMLINK] = p.SYMLINK;
  procs[Nfs3Proc.MKNOD] = p.MKNOD;
  procs[Nfs3Proc.REMOVE] = p.REMOVE;
  procs[Nfs3Proc.RMDIR] = p.RMDIR;
  procs[Nfs3Proc.RENAME] = p.RENAME;
  procs[Nfs3Proc.LINK] = p.LINK;
  procs[Nfs3Proc.READDIR] = p.READDIR;
  procs[Nfs3Proc.READDIRPLUS] = p.READDIRPLUS;
  procs[Nfs3Proc.FSSTAT] = p.FSSTAT;
  procs[Nfs3Proc.FSINFO] = p.FSINFO;
  procs[Nfs3Proc.PATHCONF] = p.PATHCONF;
  procs[Nfs3Proc.COMMIT] = p.COMMIT;
  for (let i = 1; i < procs.length; i++) if (procs[i]) procs[i] = admitted(st, procs[i]!);
  return { prog: NFS_PROGRAM, versions: new Map([[NFS_V3, procs]]) };
}

/**
 * A result every NFSv3 encoder accepts: the status, and every optional attribute,
 * wcc and list field empty. What a caller the export does not admit gets.
 */
const DENIED = Object.freeze({
  status: NfsStat3.ACCES,
  wcc: Object.freeze({}),
  fromWcc: Object.freeze({}),
  toWcc: Object.freeze({}),
  access: 0,
  entries: Object.freeze([]),
  eof: false,
});

/**
 * Admission before any procedure but NULL: a peer off the client list, or an
 * AUTH_NONE caller the export refuses, gets NFS3ERR_ACCES without its handle
 * being looked at; everyone else runs as the Caller the export maps them to.
 */
function admitted(st: NfsServerState, p: Procedure): Procedure {
  return {
    name: p.name,
    decode: p.decode,
    encode: p.encode,
    handle(args, call) {
      const caller = st.policy.admit(call);
      if (!caller) {
        st.stats.errors++;
        st.stats.denied++;
        return DENIED;
      }
      admitCall(call, caller);
      return p.handle(args, call);
    },
  };
}

