import { invalidArgument } from '../util/errors.ts';
import type { TcpServiceLimits } from './tcp-service.ts';

/** The connection limits a function takes from its config (functions[i].maxConnections / idleTimeoutMs). */
export interface ConnectionLimitOptions {
  /** Open client connections; more are accepted and closed at once. Default: the service's (128). */
  maxConnections?: number;
  /** Close a client idle this long, in ms (0 = never). Default: the protocol's. */
  idleTimeoutMs?: number;
}

export const CONNECTION_LIMIT_KEYS = ['maxConnections', 'idleTimeoutMs'] as const;
export const MAX_CONNECTIONS_CEILING = 65_536;
export const IDLE_TIMEOUT_CEILING_MS = 7 * 24 * 3600 * 1000;

/** Validate the limit options of function `fn`; the error names the field. */
export function parseConnectionLimits(raw: Record<string, unknown>, fn: string): ConnectionLimitOptions {
  const out: ConnectionLimitOptions = {};
  const { maxConnections, idleTimeoutMs } = raw;
  if (maxConnections !== undefined) {
    if (!Number.isInteger(maxConnections) || (maxConnections as number) < 1 || (maxConnections as number) > MAX_CONNECTIONS_CEILING) {
      throw invalidArgument(`${fn} option maxConnections must be an integer in [1, ${MAX_CONNECTIONS_CEILING}], got ${JSON.stringify(maxConnections)}`);
    }
    out.maxConnections = maxConnections as number;
  }
  if (idleTimeoutMs !== undefined) {
    if (!Number.isInteger(idleTimeoutMs) || (idleTimeoutMs as number) < 0 || (idleTimeoutMs as number) > IDLE_TIMEOUT_CEILING_MS) {
      throw invalidArgument(`${fn} option idleTimeoutMs must be an integer in [0, ${IDLE_TIMEOUT_CEILING_MS}] (0 = never), got ${JSON.stringify(idleTimeoutMs)}`);
    }
    out.idleTimeoutMs = idleTimeoutMs as number;
  }
  return out;
}

/** The service limits the options set (unset ones keep the protocol's defaults). */
export function limitsOf(o: ConnectionLimitOptions): Partial<TcpServiceLimits> {
  const out: Partial<TcpServiceLimits> = {};
  if (o.maxConnections !== undefined) out.maxConnections = o.maxConnections;
  if (o.idleTimeoutMs !== undefined) out.idleTimeoutMs = o.idleTimeoutMs;
  return out;
}
