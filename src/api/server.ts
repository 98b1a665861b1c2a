import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Controller } from '../controller/controller.ts';
import { bodyTooLarge, invalidArgument, methodNotAllowed, misdirected, noRoute, StorvisorError, unsupportedMediaType } from '../util/errors.ts';
import { checkBearer } from './token.ts';
import { statusRoutes } from './routes/status.ts';
import { volumeRoutes } from './routes/volumes.ts';
import { functionRoutes } from './routes/functions.ts';
import type { Route } from './routes/types.ts';
import { snapshotRoutes } from './routes/snapshots.ts';
import { rbdRoutes } from './routes/rbd.ts';

/**
 * The management API: plain REST, JSON over HTTP on loopback. The routes are
 * in routes/ (status.ts, volumes.ts, functions.ts), each file listing its own.
 * Errors are JSON `{"error": "...", "code": "SV_ERR_..."}` with a stable code
 * (src/util/errors.ts) and an HTTP status that follows from it (STATUS_BY_CODE).
 *
 * Every request, reads included, passes three checks in this order, before its
 * body is read:
 *  1. Host must be 127.0.0.1, localhost, [::1] or the configured API host, with
 *     no port or the API's own port (else 421): a page whose DNS name was
 *     rebound to 127.0.0.1 sends its own name and is refused.
 *  2. `Authorization: Bearer <token>`, the token from <dataDir>/api-token,
 *     compared in constant time (else 401).
 *  3. Anything but GET needs `content-type: application/json` (else 415): a
 *     browser cannot send that cross-origin without a CORS preflight, which
 *     this server never grants (it sends no CORS headers at all).
 */
const MAX_BODY = 64 * 1024;

export interface ApiOptions {
  host: string;
  port: number;
  /** The bearer token (see token.ts). */
  token: string;
}

export async function startApi(controller: Controller, opts: ApiOptions): Promise<{ server: Server; address: { host: string; port: number } }> {
  if (!opts.token) throw invalidArgument('the management API needs a token');
  let allowed: Set<string> = new Set();
  const server = createServer((req, res) => {
    handle(controller, opts.token, allowed, req, res).catch((err) => {
      const status = statusOf(err);
      const headers: Record<string, string> = {};
      if (status === 401) headers['www-authenticate'] = 'Bearer realm="storvisor"';
      // A refused request's body is never read: close instead of keeping the connection.
      if (status === 401 || status === 415 || status === 421 || status === 413) headers.connection = 'close';
      reply(res, status, { error: (err as Error).message, code: (err as StorvisorError).code ?? 'SV_ERR_INTERNAL' }, headers);
    });
  });
  // Slow or idle clients cannot hold the API: bounded header and request time, bounded connections.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 64;
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  allowed = allowedHosts(opts.host, a.port);
  return { server, address: { host: a.address, port: a.port } };
}

/** Every Host header value accepted: the loopback names and the configured host, bare or with the API's port. */
function allowedHosts(configured: string, port: number): Set<string> {
  const names = new Set(['127.0.0.1', 'localhost', '[::1]']);
  const c = configured.toLowerCase();
  names.add(c.includes(':') && !c.startsWith('[') ? `[${c}]` : c);
  const out = new Set<string>();
  for (const n of names) {
    out.add(n);
    out.add(`${n}:${port}`);
  }
  return out;
}

const STATUS_BY_CODE: Record<string, number> = {
  SV_ERR_UNAUTHORIZED: 401,
  SV_ERR_MISDIRECTED: 421,
  SV_ERR_MEDIA_TYPE: 415,
  SV_ERR_BODY_TOO_LARGE: 413,
  SV_ERR_NO_ROUTE: 404,
  SV_ERR_METHOD: 405,
  SV_ERR_LIMIT: 429,
  SV_ERR_IN_USE: 409,
  SV_ERR_OVERCOMMIT: 507,
};

function statusOf(err: unknown): number {
  if (err instanceof StorvisorError) {
    return STATUS_BY_CODE[err.code] ?? { ENOENT: 404, EEXIST: 409, EBUSY: 409, EINVAL: 400, ERANGE: 400, ENOSPC: 507 }[err.errno as string] ?? 500;
  }
  return 500;
}

function reply(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}, type = 'application/json'): void {
  const text = type === 'application/json' ? JSON.stringify(body, null, 2) + '\n' : String(body);
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  });
  res.end(text);
}

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const tooLarge = () => bodyTooLarge(`request body over ${MAX_BODY} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) throw tooLarge();
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  } catch {
    v = undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgument('request body must be a JSON object');
  return v as Record<string, unknown>;
}

function checkHost(req: IncomingMessage, allowed: Set<string>): void {
  const host = (req.headers.host ?? '').toLowerCase();
  if (!allowed.has(host)) {
    throw misdirected(`Host ${JSON.stringify(req.headers.host ?? '')} is not this API (use 127.0.0.1, localhost or [::1])`);
  }
}

function checkJson(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw unsupportedMediaType(`${req.method} needs content-type: application/json (got ${JSON.stringify(req.headers['content-type'] ?? 'none')})`);
  }
}

/** Every route, from the route modules (a new module adds its list here). */
const ROUTES: Route[] = [...statusRoutes, ...volumeRoutes, ...functionRoutes, ...snapshotRoutes, ...rbdRoutes];

/** The route for `method` and `path`, with its `:name` segments decoded; else the methods the path has (none: no such path). */
function match(method: string, parts: string[]): { route: Route; params: string[] } | { allowed: string[] } {
  const allowed: string[] = [];
  for (const route of ROUTES) {
    const pattern = route.path.split('/').filter(Boolean);
    if (pattern.length !== parts.length) continue;
    if (!pattern.every((p, i) => p.startsWith(':') || p === parts[i])) continue;
    const params: string[] = [];
    for (let i = 0; i < pattern.length; i++) {
      if (!pattern[i]!.startsWith(':')) continue;
      try {
        params.push(decodeURIComponent(parts[i]!));
      } catch {
        throw invalidArgument(`path segment ${JSON.stringify(parts[i])} is not valid percent-encoding`);
      }
    }
    if (route.method === method) return { route, params };
    allowed.push(route.method);
  }
  return { allowed };
}

async function handle(c: Controller, token: string, allowed: Set<string>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  checkHost(req, allowed);
  checkBearer(req.headers.authorization, token);
  if (req.method !== 'GET') checkJson(req);

  const url = new URL(req.url ?? '/', 'http://localhost');
  const parts = url.pathname.split('/').filter(Boolean);
  const m = match(req.method ?? 'GET', parts);
  if ('allowed' in m) {
    if (m.allowed.length > 0) throw methodNotAllowed(`${req.method} is not allowed on ${url.pathname} (allowed: ${m.allowed.join(', ')})`);
    throw noRoute(`no route ${req.method} ${url.pathname}`);
  }
  const r = await m.route.handler({ controller: c, req, params: m.params, url, body: () => body(req) });
  reply(res, r.status, r.body, {}, r.type);
}
