/**
 * Who may use the export, and as whom: the client address list, root squash /
 * all squash, and what AUTH_NONE callers get. One place turns an RPC call into
 * the Caller every permission check (access.ts) works with.
 *
 * AUTH_SYS carries no proof; these rules are the same trust model as a Linux
 * knfsd export with sec=sys: the address list decides which machines may speak,
 * squashing decides what their root may do.
 */
import net from 'node:net';
import { invalidArgument } from '../../../util/errors.ts';
import { AUTH_SYS, type Credential } from '../rpc/auth.ts';
import type { RpcCall } from '../rpc/server.ts';

export type AuthNonePolicy = 'refuse' | 'read-only';

export interface ExportOptions {
  /** Addresses and CIDRs (IPv4 or IPv6) allowed to MOUNT and call NFS; '*' = any. */
  clients: string[];
  /** uid 0 (and gid 0) become anonUid/anonGid. */
  rootSquash: boolean;
  /** Every caller becomes anonUid/anonGid. */
  allSquash: boolean;
  anonUid: number;
  anonGid: number;
  /** AUTH_NONE callers: refused (NFS3ERR_ACCES / MOUNT3ERR_ACCES), or anonymous and read-only. */
  authNone: AuthNonePolicy;
}

export const DEFAULT_EXPORT: Readonly<ExportOptions> = Object.freeze({
  clients: ['127.0.0.0/8', '::1'],
  rootSquash: true,
  allSquash: false,
  anonUid: 65534,
  anonGid: 65534,
  authNone: 'refuse',
});

const MAX_CLIENTS = 1024;

/** The identity a call acts as, after squashing. */
export interface Caller {
  uid: number;
  gid: number;
  gids: readonly number[];
  /** AUTH_NONE under authNone: 'read-only': every change is NFS3ERR_ACCES. */
  readOnly: boolean;
}

const isId = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
const bad = (field: string, want: string, got: unknown) =>
  invalidArgument(`fileserver: options.${field} must be ${want}, got ${JSON.stringify(got)}`);

/** Validate the export fields of the function's options; unknown values are errors naming the field. */
export function parseExportOptions(raw: Record<string, unknown>): ExportOptions {
  const o: ExportOptions = { ...DEFAULT_EXPORT, clients: [...DEFAULT_EXPORT.clients] };
  if (raw.clients !== undefined) {
    const c = raw.clients;
    if (!Array.isArray(c) || c.length === 0 || c.length > MAX_CLIENTS) {
      throw bad('clients', `a non-empty array of at most ${MAX_CLIENTS} addresses or CIDRs`, c);
    }
    c.forEach((entry, i) => {
      if (typeof entry !== 'string' || !parseClientEntry(entry)) {
        throw bad(`clients[${i}]`, 'an IPv4/IPv6 address, a CIDR such as "10.0.0.0/8" or "fd00::/8", or "*"', entry);
      }
    });
    o.clients = c as string[];
  }
  for (const k of ['rootSquash', 'allSquash'] as const) {
    if (raw[k] === undefined) continue;
    if (typeof raw[k] !== 'boolean') throw bad(k, 'true or false', raw[k]);
    o[k] = raw[k];
  }
  for (const k of ['anonUid', 'anonGid'] as const) {
    if (raw[k] === undefined) continue;
    if (!isId(raw[k])) throw bad(k, 'an integer id between 0 and 4294967295', raw[k]);
    o[k] = raw[k];
  }
  if (raw.authNone !== undefined) {
    if (raw.authNone !== 'refuse' && raw.authNone !== 'read-only') throw bad('authNone', '"refuse" or "read-only"', raw.authNone);
    o.authNone = raw.authNone;
  }
  return o;
}

type ClientRule = { any: true } | { any?: false; address: string; prefix: number; family: 'ipv4' | 'ipv6' };

function parseClientEntry(entry: string): ClientRule | null {
  if (entry === '*') return { any: true };
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const v = net.isIP(address);
  if (v === 0) return null;
  const family = v === 4 ? 'ipv4' : 'ipv6';
  const max = v === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = entry.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return null;
    prefix = Number(p);
  }
  return { address, prefix, family };
}

/** The peer address of "address:port" (what RpcCall.remote carries), IPv4-mapped IPv6 unwrapped. */
export function peerAddress(remote: string): string {
  const host = remote.slice(0, Math.max(0, remote.lastIndexOf(':')));
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return mapped ? mapped[1]! : host;
}

/** The export's rules, compiled once per server. */
/** Peers ("address:port") whose admission is remembered. */
const DECIDED_PEERS = 1024;

export class ExportPolicy {
  private readonly list = new net.BlockList();
  private readonly any: boolean;

  constructor(readonly options: ExportOptions) {
    let any = false;
    for (const entry of options.clients) {
      const r = parseClientEntry(entry);
      if (!r) throw bad('clients', 'addresses or CIDRs', entry);
      if (r.any) any = true;
      else this.list.addSubnet(r.address, r.prefix, r.family);
    }
    this.any = any;
  }

  /** Is the peer of this connection ("address:port") on the client list? */
  allows(remote: string): boolean {
    if (this.any) return true;
    // The answer per peer is fixed for the life of the policy: remember it (BlockList.check
    // builds SocketAddress objects, a measurable cost on every READ). Bounded; cleared when full.
    const known = this.decided.get(remote);
    if (known !== undefined) return known;
    const addr = peerAddress(remote);
    const v = net.isIP(addr);
    const ok = v !== 0 && this.list.check(addr, v === 4 ? 'ipv4' : 'ipv6');
    if (this.decided.size >= DECIDED_PEERS) this.decided.clear();
    this.decided.set(remote, ok);
    return ok;
  }
  private readonly decided = new Map<string, boolean>();

  /** The identity the call acts as, or null when it may not act at all (refused AUTH_NONE). */
  callerOf(cred: Credential): Caller | null {
    const o = this.options;
    if (cred.flavor !== AUTH_SYS) return o.authNone === 'read-only' ? { uid: o.anonUid, gid: o.anonGid, gids: [], readOnly: true } : null;
    if (o.allSquash) return { uid: o.anonUid, gid: o.anonGid, gids: [], readOnly: false };
    if (!o.rootSquash) return { uid: cred.uid, gid: cred.gid, gids: cred.gids, readOnly: false };
    // Like knfsd's root_squash: uid 0 and gid 0 (primary and auxiliary) are mapped.
    return {
      uid: cred.uid === 0 ? o.anonUid : cred.uid,
      gid: cred.gid === 0 ? o.anonGid : cred.gid,
      gids: cred.gids.map((g) => (g === 0 ? o.anonGid : g)),
      readOnly: false,
    };
  }

  /** Address check and identity in one: null = NFS3ERR_ACCES / MOUNT3ERR_ACCES. */
  admit(call: Pick<RpcCall, 'remote' | 'cred'>): Caller | null {
    return this.allows(call.remote) ? this.callerOf(call.cred) : null;
  }
}
