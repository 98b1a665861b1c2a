/**
 * A small ONC RPC client over TCP for tests and the benchmark: pipelined calls
 * matched by xid, AUTH_SYS or AUTH_NONE credentials, raw access for malformed input.
 */
import net from 'node:net';
import { RecordReader, frameRecord } from '../../../../src/functions/fileserver/rpc/record-reader.ts';
import { XdrDecoder, XdrEncoder } from '../../../../src/functions/fileserver/rpc/xdr.ts';

export interface RpcReply {
  xid: number;
  /** 0 = MSG_ACCEPTED, 1 = MSG_DENIED. */
  replyStat: number;
  /** accept_stat when accepted; reject_stat when denied. */
  stat: number;
  /** The rest of the reply (results, mismatch info, or auth_stat). */
  body: XdrDecoder;
}

export type Cred = { flavor: 0 } | { flavor: 1; uid: number; gid: number; gids?: number[]; machine?: string };

export class RpcClient {
  private nextXid = 1;
  private readonly pending = new Map<number, { resolve: (r: RpcReply) => void; reject: (e: Error) => void }>();
  private closedError: Error | undefined;
  private corked = false;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    const reader = new RecordReader({
      maxRecordSize: 64 << 20,
      onRecord: (rec) => this.onReply(rec),
      onError: (_code, msg) => socket.destroy(new Error(msg)),
    });
    socket.on('data', (c) => reader.push(c));
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.closedError = new Error('connection closed');
        for (const p of this.pending.values()) p.reject(this.closedError);
        this.pending.clear();
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host, noDelay: true }, () => {
        s.off('error', reject);
        resolve(new RpcClient(s));
      });
      s.once('error', reject);
    });
  }

  private onReply(rec: Buffer): void {
    const dec = new XdrDecoder(rec);
    const xid = dec.u32();
    dec.u32(); // REPLY
    const replyStat = dec.u32();
    let stat: number;
    if (replyStat === 0) {
      dec.u32();
      dec.opaque(400); // verifier
      stat = dec.u32();
    } else stat = dec.u32();
    const p = this.pending.get(xid);
    if (!p) return;
    this.pending.delete(xid);
    p.resolve({ xid, replyStat, stat, body: dec });
  }

  /** Build a call record body (without the record mark). */
  static encodeCall(xid: number, prog: number, vers: number, proc: number, cred: Cred, args?: (e: XdrEncoder) => void, rpcvers = 2): Buffer {
    const e = new XdrEncoder();
    e.u32(xid).u32(0).u32(rpcvers).u32(prog).u32(vers).u32(proc);
    if (cred.flavor === 1) {
      const c = new XdrEncoder();
      c.u32(0).string(cred.machine ?? 'test').u32(cred.uid).u32(cred.gid).u32(cred.gids?.length ?? 0);
      for (const g of cred.gids ?? []) c.u32(g);
      e.u32(1).opaque(c.take());
    } else e.u32(0).u32(0);
    e.u32(0).u32(0); // verifier AUTH_NONE
    args?.(e);
    return e.take();
  }

  call(prog: number, vers: number, proc: number, args?: (e: XdrEncoder) => void, cred: Cred = { flavor: 1, uid: 0, gid: 0 }, rpcvers = 2): Promise<RpcReply> {
    const xid = this.nextXid++;
    return this.send(xid, frameRecord(RpcClient.encodeCall(xid, prog, vers, proc, cred, args, rpcvers)));
  }

  /** Send pre-framed bytes and wait for the reply carrying `xid`. */
  send(xid: number, bytes: Buffer): Promise<RpcReply> {
    if (this.closedError) return Promise.reject(this.closedError);
    const p = new Promise<RpcReply>((resolve, reject) => this.pending.set(xid, { resolve, reject }));
    // Calls issued in the same tick go out in one writev (matters for the benchmark).
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
    return p;
  }

  /** Write bytes with no reply expected (malformed streams). */
  writeRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  takeXid(): number {
    return this.nextXid++;
  }

  close(): Promise<void> {
    this.socket.end();
    this.socket.destroy();
    return this.closed;
  }
}
