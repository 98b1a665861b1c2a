import type { NbdRequest } from './request-parser.ts';
import {
  NBD_CMD_CACHE,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EOVERFLOW,
  NBD_EPERM,
} from './protocol.ts';

/** What a connection agreed to at negotiation, which is all validation needs. */
export interface ExportLimits {
  size: number;
  readOnly: boolean;
  structuredReplies: boolean;
}

/** Command flags each command may carry; anything else is EINVAL by the spec. */
function allowedFlags(type: number, structuredReplies: boolean): number {
  switch (type) {
    case NBD_CMD_READ:
      return structuredReplies ? NBD_CMD_FLAG_DF : 0;
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
      return NBD_CMD_FLAG_FUA;
    case NBD_CMD_WRITE_ZEROES:
      return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
    default:
      return 0;
  }
}

/**
 * Validate, then handle: returns the NBD error a request must be answered
 * with, or 0 when the request is safe to hand to the device. Execution
 * trusts this verdict and never re-checks. (DISC is handled before this.)
 */
export function validateRequest(req: NbdRequest, limits: ExportLimits): number {
  const { type } = req;
  const writes = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES || type === NBD_CMD_TRIM;
  const known = writes || type === NBD_CMD_READ || type === NBD_CMD_FLUSH || type === NBD_CMD_CACHE;
  if (!known) return NBD_EINVAL;
  if ((req.flags & ~allowedFlags(type, limits.structuredReplies)) !== 0) return NBD_EINVAL;
  if (writes && limits.readOnly) return NBD_EPERM;
  if (type === NBD_CMD_FLUSH) return 0; // offset and length are reserved: nothing to range-check
  // Only data-carrying commands are bound by the maximum block size.
  if (req.oversized && (type === NBD_CMD_READ || type === NBD_CMD_WRITE)) {
    return type === NBD_CMD_READ && limits.structuredReplies ? NBD_EOVERFLOW : NBD_EINVAL;
  }
  if (req.offset + req.length > limits.size) {
    // The spec asks for ENOSPC when a write reaches past the end; EINVAL otherwise.
    return type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
  }
  return 0;
}

/**
 * A zero-length data command touches nothing: once it passed validation it
 * is answered with success without reaching the device (whose backends may
 * reject an empty transfer). Commands without data (FLUSH) are not no-ops.
 */
export function isNoOp(req: NbdRequest): boolean {
  return (
    req.length === 0 &&
    (req.type === NBD_CMD_READ ||
      req.type === NBD_CMD_WRITE ||
      req.type === NBD_CMD_TRIM ||
      req.type === NBD_CMD_WRITE_ZEROES ||
      req.type === NBD_CMD_CACHE)
  );
}
