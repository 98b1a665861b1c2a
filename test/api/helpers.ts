import { request } from 'node:http';
import type { Controller } from '../../src/controller/controller.ts';
import { startApi } from '../../src/api/server.ts';
import { loadOrCreateToken } from '../../src/api/token.ts';

type T = { after: (fn: () => unknown) => void };

export interface Api {
  host: string;
  port: number;
  token: string;
}

/** The management API of `c` on 127.0.0.1, port picked by the kernel, its token made in the data directory. */
export async function startTestApi(t: T, c: Controller): Promise<Api> {
  const token = loadOrCreateToken(c.config.dataDir);
  const { server, address } = await startApi(c, { host: '127.0.0.1', port: 0, token });
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { host: address.host, port: address.port, token };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/**
 * One HTTP request with full control of every header (fetch would not let a
 * test forge Host). `auth: true` sends the right token; a string sends that.
 */
export function call(
  api: Api,
  method: string,
  path: string,
  opts: { auth?: boolean | string; body?: string | object; type?: string | null; host?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { host: opts.host ?? `127.0.0.1:${api.port}` };
  if (opts.auth !== undefined && opts.auth !== false) headers.authorization = `Bearer ${opts.auth === true ? api.token : opts.auth}`;
  let body: string | undefined;
  if (opts.body !== undefined) body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const type = opts.type === undefined ? (body !== undefined || method !== 'GET' ? 'application/json' : null) : opts.type;
  if (type !== null) headers['content-type'] = type;
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const req = request({ host: api.host, port: api.port, method, path, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let json: any;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}
