import { StorvisorError } from '../util/errors.ts';

/**
 * The CLI's side of the management API: one request, authenticated with the
 * token from the controller's data directory, answered with parsed JSON, or
 * an error of one line that says what to do next. A controller that is not
 * running is the common case, not a stack trace:
 *   no controller answering at http://127.0.0.1:10880 — is it running? (storvisor start)
 */
export const REQUEST_TIMEOUT_MS = 10_000;

export interface ClientOptions {
  base: string;
  token: string | undefined;
  /** Where the token was looked for (for the error that says it is missing). */
  tokenPath: string;
  timeoutMs?: number;
}

export const noController = (base: string) =>
  new StorvisorError('SV_ERR_NO_CONTROLLER', 'ESHUTDOWN', `no controller answering at ${base} — is it running? (storvisor start)`);

export class ApiClient {
  constructor(private readonly opts: ClientOptions) {}

  get base(): string {
    return this.opts.base;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const { base, token, tokenPath } = this.opts;
    // Without a token the request still goes out: "nothing answers" is the more useful error when both hold.
    let res: Response;
    try {
      res = await fetch(new URL(path, base), {
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(method === 'GET' ? {} : { 'content-type': 'application/json' }) },
        body: method === 'GET' ? undefined : JSON.stringify(body ?? {}),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      if (e.name === 'TimeoutError') {
        throw new StorvisorError('SV_ERR_TIMEOUT', 'EIO', `the controller at ${base} did not answer within ${(this.opts.timeoutMs ?? REQUEST_TIMEOUT_MS) / 1000} s — is it overloaded or stuck? (check its log)`);
      }
      throw noController(base);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.ok) return (json ?? text) as T;
    const e = json as { error?: string; code?: string } | undefined;
    if (res.status === 401 && !token) {
      throw new StorvisorError('SV_ERR_API_TOKEN', 'EACCES', `a controller answers at ${base}, but there is no API token at ${tokenPath} — pass the controller's --config (its data directory holds the token)`);
    }
    if (res.status === 401) {
      throw new StorvisorError('SV_ERR_UNAUTHORIZED', 'EACCES', `the controller at ${base} refused the token in ${tokenPath} — is it the controller of this data directory? (pass its --config)`);
    }
    throw new StorvisorError(e?.code ?? 'SV_ERR_HTTP', 'EIO', e?.error ?? `HTTP ${res.status} from ${base}${path}`);
  }

  /** The Prometheus text of /metrics (not JSON). */
  async text(path: string): Promise<string> {
    return String(await this.request<unknown>('GET', path));
  }
}
