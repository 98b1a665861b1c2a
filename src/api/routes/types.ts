import type { IncomingMessage } from 'node:http';
import type { Controller } from '../../controller/controller.ts';

/**
 * One REST route of the management API. A route module exports a list of
 * these; server.ts matches them after the Host, token and content-type checks,
 * so a route never sees an unauthenticated request. `:name` segments are
 * captured (URL-decoded) into `params` in order.
 */
export interface RouteContext {
  controller: Controller;
  req: IncomingMessage;
  params: string[];
  url: URL;
  /** The request's JSON object body (bounded; 400 if it is not a JSON object). */
  body(): Promise<Record<string, unknown>>;
}

export interface RouteReply {
  status: number;
  body: unknown;
  /** application/json unless given (then body is sent as text). */
  type?: string;
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH';
  path: string;
  handler(ctx: RouteContext): Promise<RouteReply>;
}
