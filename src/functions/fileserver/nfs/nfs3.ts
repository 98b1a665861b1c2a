/**
 * The NFSv3 program (RFC 1813): the procedure table. Each procedure is
 * decode (wire → args, GarbageArgs only) / handle (args → result, never throws:
 * every failure becomes an nfsstat3 through nfsStatusOf) / encode (result → wire),
 * and carries the wcc_data / post_op_attr the RFC asks for on success AND failure.
 * The procedures live in proc-*.ts and readdir.ts, grouped by what they touch.
 */
import type { Procedure, RpcProgram } from '../rpc/server.ts';
import { NFS_PROGRAM, NFS_V3, Nfs3Proc } from './constants.ts';
import type { NfsServerState } from './common.ts';
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
  return { prog: NFS_PROGRAM, versions: new Map([[NFS_V3, procs]]) };
}

