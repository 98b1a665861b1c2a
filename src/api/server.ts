import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Controller } from '../controller/controller.ts';
import { StorvisorError } from '../util/errors.ts';
import { prometheus } from './metrics.ts';

/**
 * The management API: JSON over HTTP on loopback.
 *   GET    /status                   everything: volumes, functions, cache, poller, NBD
 *   GET    /metrics                  the same counters in Prometheus text format
 *   GET    /volumes                  volume manifests
 *   POST   /volumes                  {"name": "v1", "size": 1073741824}
 *   POST   /volumes/NAME/resize      {"size": 2147483648, "allowShrink": false}
 *   DELETE /volumes/NAME
 */
const MAX_BODY = 64 * 1024;

export async function startApi(controller: Controller, host: string, port: number): Promise<{ server: Server; address: { host: string; port: number } }> {
  const server = createServer((req, res) => {
    handle(controller, req, res).catch((err) => reply(res, statusOf(err), { error: (err as Error).message, code: (err as StorvisorError).code }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return { server, address: { host: a.address, port: a.port } };
}

function statusOf(err: unknown): number {
  if (err instanceof StorvisorError) {
    return { ENOENT: 404, EEXIST: 409, EINVAL: 400, ERANGE: 400 }[err.errno as string] ?? 500;
  }
  return (err as { status?: number }).status ?? 500;
}

function reply(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = type === 'application/json' ? JSON.stringify(body, null, 2) + '\n' : String(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk as Buffer);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    if (typeof v !== 'object' || v === null) throw new Error();
    return v;
  } catch {
    throw Object.assign(new Error('request body must be a JSON object'), { status: 400 });
  }
}

async function handle(c: Controller, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const parts = url.pathname.split('/').filter(Boolean);
  const route = `${req.method} /${parts[0] ?? ''}`;
  if (route === 'GET /status') return reply(res, 200, await c.status());
  if (route === 'GET /metrics') return reply(res, 200, prometheus(await c.status()), 'text/plain; version=0.0.4');
  if (route === 'GET /volumes' && parts.length === 1) return reply(res, 200, c.store.list());
  if (route === 'POST /volumes' && parts.length === 1) {
    const b = await body(req);
    return reply(res, 201, c.store.create(String(b.name), Number(b.size)));
  }
  if (route === 'POST /volumes' && parts.length === 3 && parts[2] === 'resize') {
    const b = await body(req);
    return reply(res, 200, await c.store.resize(parts[1]!, Number(b.size), { allowShrink: b.allowShrink === true }));
  }
  if (route === 'DELETE /volumes' && parts.length === 2) {
    await c.store.delete(parts[1]!);
    return reply(res, 200, { deleted: parts[1] });
  }
  reply(res, 404, { error: `no route ${req.method} ${url.pathname}` });
}
