/**
 * Portmapper v2 (RFC 1833 §3): enough for clients that ask where NFS and MOUNT
 * live (GETPORT) or what is registered (DUMP). Registration (SET/UNSET) is
 * refused: the table is fixed by this server.
 */
import type { Procedure, RpcProgram } from '../rpc/server.ts';
import type { XdrDecoder, XdrEncoder } from '../rpc/xdr.ts';
import { IPPROTO_TCP, MOUNT_PROGRAM, MOUNT_V3, NFS_PROGRAM, NFS_V3, PORTMAP_PROGRAM, PORTMAP_V2 } from './constants.ts';

export interface Mapping {
  prog: number;
  vers: number;
  prot: number;
  port: number;
}

/** `ports()` is read per call, so listeners can be bound after the program is built. */
export function portmapProgram(ports: () => { rpc: number; portmap?: number }): RpcProgram {
  const table = (): Mapping[] => {
    const p = ports();
    const rows: Mapping[] = [
      { prog: NFS_PROGRAM, vers: NFS_V3, prot: IPPROTO_TCP, port: p.rpc },
      { prog: MOUNT_PROGRAM, vers: MOUNT_V3, prot: IPPROTO_TCP, port: p.rpc },
    ];
    if (p.portmap) rows.push({ prog: PORTMAP_PROGRAM, vers: PORTMAP_V2, prot: IPPROTO_TCP, port: p.portmap });
    return rows;
  };
  const decodeMapping = (dec: XdrDecoder): Mapping => ({ prog: dec.u32(), vers: dec.u32(), prot: dec.u32(), port: dec.u32() });
  const refuse: Procedure = { name: 'PMAPPROC_SET', decode: decodeMapping, handle: () => false, encode: (enc: XdrEncoder, ok: boolean) => enc.bool(ok) };

  const procs: Procedure[] = [];
  procs[0] = { name: 'PMAPPROC_NULL', decode: () => undefined, handle: () => undefined, encode: () => {} };
  procs[1] = refuse;
  procs[2] = { ...refuse, name: 'PMAPPROC_UNSET' };
  procs[3] = {
    name: 'PMAPPROC_GETPORT',
    decode: decodeMapping,
    // The port field of the argument is ignored (RFC 1833); 0 means "not registered".
    handle: (m: Mapping) => table().find((r) => r.prog === m.prog && r.vers === m.vers && r.prot === m.prot)?.port ?? 0,
    encode: (enc: XdrEncoder, port: number) => enc.u32(port),
  };
  procs[4] = {
    name: 'PMAPPROC_DUMP',
    decode: () => undefined,
    handle: () => table(),
    encode(enc: XdrEncoder, rows: Mapping[]) {
      for (const r of rows) enc.bool(true).u32(r.prog).u32(r.vers).u32(r.prot).u32(r.port);
      enc.bool(false);
    },
  };
  return { prog: PORTMAP_PROGRAM, versions: new Map([[PORTMAP_V2, procs]]) };
}
