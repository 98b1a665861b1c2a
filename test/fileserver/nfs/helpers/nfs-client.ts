/**
 * NFSv3 + MOUNT v3 calls over RpcClient, decoded into plain objects. Every
 * method returns the nfsstat3 and whatever the reply carried, so tests can
 * assert on errors as easily as on success.
 */
import type { XdrDecoder, XdrEncoder } from '../../../../src/functions/fileserver/rpc/xdr.ts';
import { RpcClient, type Cred } from './rpc-client.ts';

export const NFS = 100003;
export const MOUNT = 100005;
export const PMAP = 100000;

export interface Fattr {
  type: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: bigint;
  used: bigint;
  fsid: bigint;
  fileid: bigint;
  atime: [number, number];
  mtime: [number, number];
  ctime: [number, number];
}

export interface Wcc {
  before?: { size: bigint; mtime: [number, number]; ctime: [number, number] };
  after?: Fattr;
}

const time = (d: XdrDecoder): [number, number] => [d.u32(), d.u32()];
export function fattr(d: XdrDecoder): Fattr {
  const type = d.u32();
  const mode = d.u32();
  const nlink = d.u32();
  const uid = d.u32();
  const gid = d.u32();
  const size = d.u64();
  const used = d.u64();
  d.u32();
  d.u32();
  const fsid = d.u64();
  const fileid = d.u64();
  return { type, mode, nlink, uid, gid, size, used, fsid, fileid, atime: time(d), mtime: time(d), ctime: time(d) };
}
export const postOp = (d: XdrDecoder) => (d.bool() ? fattr(d) : undefined);
export function wcc(d: XdrDecoder): Wcc {
  const before = d.bool() ? { size: d.u64(), mtime: time(d), ctime: time(d) } : undefined;
  return { before, after: postOp(d) };
}

export interface Sattr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: 'server' | [number, number];
  mtime?: 'server' | [number, number];
}
export function sattr(e: XdrEncoder, s: Sattr = {}): void {
  const opt = (v: number | undefined) => (v === undefined ? e.bool(false) : e.bool(true).u32(v));
  opt(s.mode);
  opt(s.uid);
  opt(s.gid);
  if (s.size === undefined) e.bool(false);
  else e.bool(true).u64(s.size);
  for (const t of [s.atime, s.mtime]) {
    if (t === undefined) e.u32(0);
    else if (t === 'server') e.u32(1);
    else e.u32(2).u32(t[0]).u32(t[1]);
  }
}

export class NfsClient {
  constructor(readonly rpc: RpcClient, public cred: Cred = { flavor: 1, uid: 0, gid: 0 }) {}

  static async connect(port: number, host = '127.0.0.1'): Promise<NfsClient> {
    return new NfsClient(await RpcClient.connect(port, host));
  }

  /** Call and require an accepted SUCCESS reply; returns the result decoder. */
  async nfs(proc: number, args?: (e: XdrEncoder) => void): Promise<XdrDecoder> {
    const r = await this.rpc.call(NFS, 3, proc, args, this.cred);
    if (r.replyStat !== 0 || r.stat !== 0) throw new Error(`NFS proc ${proc}: reply ${r.replyStat}/${r.stat}`);
    return r.body;
  }

  async mount(path: string): Promise<{ status: number; fh?: Buffer; flavors?: number[] }> {
    const r = await this.rpc.call(MOUNT, 3, 1, (e) => e.string(path), this.cred);
    const d = r.body;
    const status = d.u32();
    if (status !== 0) return { status };
    const fh = Buffer.from(d.opaque(64));
    const n = d.u32();
    const flavors = Array.from({ length: n }, () => d.u32());
    return { status, fh, flavors };
  }

  async root(path = '/export'): Promise<Buffer> {
    const m = await this.mount(path);
    if (!m.fh) throw new Error(`mount ${path}: status ${m.status}`);
    return m.fh;
  }

  async getattr(fh: Buffer) {
    const d = await this.nfs(1, (e) => e.opaque(fh));
    const status = d.u32();
    return { status, attr: status === 0 ? fattr(d) : undefined };
  }

  async setattr(fh: Buffer, s: Sattr, guardCtime?: [number, number]) {
    const d = await this.nfs(2, (e) => {
      e.opaque(fh);
      sattr(e, s);
      if (guardCtime) e.bool(true).u32(guardCtime[0]).u32(guardCtime[1]);
      else e.bool(false);
    });
    return { status: d.u32(), wcc: wcc(d) };
  }

  async lookup(dir: Buffer, name: string) {
    const d = await this.nfs(3, (e) => e.opaque(dir).string(name));
    const status = d.u32();
    if (status !== 0) return { status, dirAttr: postOp(d) };
    const fh = Buffer.from(d.opaque(64));
    return { status, fh, attr: postOp(d), dirAttr: postOp(d) };
  }

  async access(fh: Buffer, bits: number) {
    const d = await this.nfs(4, (e) => e.opaque(fh).u32(bits));
    const status = d.u32();
    const attr = postOp(d);
    return { status, attr, access: status === 0 ? d.u32() : undefined };
  }

  async readlink(fh: Buffer) {
    const d = await this.nfs(5, (e) => e.opaque(fh));
    const status = d.u32();
    const attr = postOp(d);
    return { status, attr, target: status === 0 ? d.string(4096) : undefined };
  }

  async read(fh: Buffer, offset: number | bigint, count: number) {
    const d = await this.nfs(6, (e) => e.opaque(fh).u64(offset).u32(count));
    const status = d.u32();
    const attr = postOp(d);
    if (status !== 0) return { status, attr };
    const n = d.u32();
    const eof = d.bool();
    const data = Buffer.from(d.opaque(0x7fffffff));
    return { status, attr, count: n, eof, data };
  }

  async write(fh: Buffer, offset: number | bigint, data: Uint8Array, stable = 2, count = data.byteLength) {
    const d = await this.nfs(7, (e) => e.opaque(fh).u64(offset).u32(count).u32(stable).opaque(data));
    const status = d.u32();
    const w = wcc(d);
    if (status !== 0) return { status, wcc: w };
    return { status, wcc: w, count: d.u32(), committed: d.u32(), verf: Buffer.from(d.fixed(8)) };
  }

  private created(d: XdrDecoder) {
    const status = d.u32();
    if (status !== 0) return { status, dirWcc: wcc(d) };
    const fh = d.bool() ? Buffer.from(d.opaque(64)) : undefined;
    return { status, fh, attr: postOp(d), dirWcc: wcc(d) };
  }

  async create(dir: Buffer, name: string, how: 0 | 1 | 2 = 0, s: Sattr | Buffer = {}) {
    const d = await this.nfs(8, (e) => {
      e.opaque(dir).string(name).u32(how);
      if (how === 2) e.fixed(s as Buffer);
      else sattr(e, s as Sattr);
    });
    return this.created(d);
  }

  async mkdir(dir: Buffer, name: string, s: Sattr = {}) {
    return this.created(await this.nfs(9, (e) => (e.opaque(dir).string(name), sattr(e, s))));
  }

  async symlink(dir: Buffer, name: string, target: string) {
    return this.created(await this.nfs(10, (e) => (e.opaque(dir).string(name), sattr(e, {}), e.string(target))));
  }

  async mknod(dir: Buffer, name: string, type = 7) {
    return this.created(await this.nfs(11, (e) => (e.opaque(dir).string(name).u32(type), sattr(e, {}))));
  }

  async remove(dir: Buffer, name: string, proc = 12) {
    const d = await this.nfs(proc, (e) => e.opaque(dir).string(name));
    return { status: d.u32(), wcc: wcc(d) };
  }

  rmdir(dir: Buffer, name: string) {
    return this.remove(dir, name, 13);
  }

  async rename(fromDir: Buffer, from: string, toDir: Buffer, to: string) {
    const d = await this.nfs(14, (e) => e.opaque(fromDir).string(from).opaque(toDir).string(to));
    return { status: d.u32(), fromWcc: wcc(d), toWcc: wcc(d) };
  }

  async link(file: Buffer, dir: Buffer, name: string) {
    const d = await this.nfs(15, (e) => e.opaque(file).opaque(dir).string(name));
    return { status: d.u32(), attr: postOp(d), wcc: wcc(d) };
  }

  async readdir(dir: Buffer, cookie = 0n, verf: Buffer = Buffer.alloc(8), count = 8192) {
    const d = await this.nfs(16, (e) => e.opaque(dir).u64(cookie).fixed(verf).u32(count));
    const status = d.u32();
    const dirAttr = postOp(d);
    if (status !== 0) return { status, dirAttr, entries: [], eof: false };
    const cookieverf = Buffer.from(d.fixed(8));
    const entries: Array<{ fileid: bigint; name: string; cookie: bigint }> = [];
    while (d.bool()) entries.push({ fileid: d.u64(), name: d.string(4096), cookie: d.u64() });
    return { status, dirAttr, cookieverf, entries, eof: d.bool() };
  }

  async readdirplus(dir: Buffer, cookie = 0n, verf: Buffer = Buffer.alloc(8), dircount = 8192, maxcount = 32768) {
    const d = await this.nfs(17, (e) => e.opaque(dir).u64(cookie).fixed(verf).u32(dircount).u32(maxcount));
    const status = d.u32();
    const dirAttr = postOp(d);
    if (status !== 0) return { status, dirAttr, entries: [], eof: false };
    const cookieverf = Buffer.from(d.fixed(8));
    const entries: Array<{ fileid: bigint; name: string; cookie: bigint; attr?: Fattr; fh?: Buffer }> = [];
    while (d.bool()) {
      const fileid = d.u64();
      const name = d.string(4096);
      const cookie = d.u64();
      const attr = postOp(d);
      const fh = d.bool() ? Buffer.from(d.opaque(64)) : undefined;
      entries.push({ fileid, name, cookie, attr, fh });
    }
    return { status, dirAttr, cookieverf, entries, eof: d.bool() };
  }

  async fsstat(fh: Buffer) {
    const d = await this.nfs(18, (e) => e.opaque(fh));
    const status = d.u32();
    const attr = postOp(d);
    if (status !== 0) return { status, attr };
    return { status, attr, tbytes: d.u64(), fbytes: d.u64(), abytes: d.u64(), tfiles: d.u64(), ffiles: d.u64(), afiles: d.u64(), invarsec: d.u32() };
  }

  async fsinfo(fh: Buffer) {
    const d = await this.nfs(19, (e) => e.opaque(fh));
    const status = d.u32();
    const attr = postOp(d);
    if (status !== 0) return { status, attr };
    return {
      status,
      attr,
      rtmax: d.u32(),
      rtpref: d.u32(),
      rtmult: d.u32(),
      wtmax: d.u32(),
      wtpref: d.u32(),
      wtmult: d.u32(),
      dtpref: d.u32(),
      maxfilesize: d.u64(),
      timeDelta: time(d),
      properties: d.u32(),
    };
  }

  async pathconf(fh: Buffer) {
    const d = await this.nfs(20, (e) => e.opaque(fh));
    const status = d.u32();
    const attr = postOp(d);
    if (status !== 0) return { status, attr };
    return { status, attr, linkmax: d.u32(), nameMax: d.u32(), noTrunc: d.bool(), chownRestricted: d.bool(), caseInsensitive: d.bool(), casePreserving: d.bool() };
  }

  async commit(fh: Buffer, offset = 0, count = 0) {
    const d = await this.nfs(21, (e) => e.opaque(fh).u64(offset).u32(count));
    const status = d.u32();
    const w = wcc(d);
    return { status, wcc: w, verf: status === 0 ? Buffer.from(d.fixed(8)) : undefined };
  }

  close() {
    return this.rpc.close();
  }
}
