import { closeSync, constants, fstatSync, fsyncSync, linkSync, mkdirSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { StorvisorError, unauthorized, apiToken } from '../util/errors.ts';

/**
 * The management API's bearer token: 32 random bytes (base64url, 43
 * characters) in `<dataDir>/api-token`, mode 0600, owned by the controller's
 * user. Made at the first start, reused afterwards; delete the file and
 * restart to rotate it. Whoever can read the data directory's token can manage
 * the controller, which is also who could edit its volumes directly.
 *
 * Created atomically: written and fsynced under a private temporary name
 * (O_CREAT|O_EXCL, mode 0600 from the first instant), then published with
 * link(2), which never replaces an existing file, so two starting processes
 * agree on one token and a crash leaves either no token or a whole one.
 */
export const TOKEN_FILE = 'api-token';
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export function tokenPath(dataDir: string): string {
  return join(dataDir, TOKEN_FILE);
}

/** Read the token; undefined if there is none yet. Refuses a token file others could read. */
export function readToken(dataDir: string): string | undefined {
  const path = tokenPath(dataDir);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw apiToken(`cannot read the API token ${path}: ${(err as Error).message}`, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw tokenError(path, 'is not a regular file');
    if (process.getuid && st.uid !== process.getuid()) throw tokenError(path, `belongs to uid ${st.uid}, not to this user; delete it and restart the controller`);
    if (st.mode & 0o077) throw tokenError(path, `is readable by others (mode ${(st.mode & 0o777).toString(8)}); delete it and restart the controller to get a new token`);
    const buf = Buffer.alloc(128);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const token = buf.subarray(0, n).toString('utf8').trim();
    if (!TOKEN.test(token)) throw tokenError(path, 'does not hold a token; delete it and restart the controller to get a new one');
    return token;
  } finally {
    closeSync(fd);
  }
}

/** The token, created on first use (see the module comment). */
export function loadOrCreateToken(dataDir: string): string {
  const existing = readToken(dataDir);
  if (existing) return existing;
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(32).toString('base64url');
  const path = tokenPath(dataDir);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, `${token}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(tmp);
  }
  const dir = openSync(dataDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return readToken(dataDir)!; // ours, or the one a concurrent start published first
}

/**
 * Check an Authorization header against the token in constant time: both sides
 * are hashed first, so neither the length nor any prefix of the token leaks
 * through timing.
 */
export function checkBearer(header: string | undefined, token: string): void {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  const given = createHash('sha256').update(m?.[1] ?? '').digest();
  const want = createHash('sha256').update(token).digest();
  if (!timingSafeEqual(given, want) || !m) {
    throw unauthorized(header === undefined ? 'missing Authorization: Bearer <token> (the token is in <dataDir>/api-token)' : 'wrong API token');
  }
}

function tokenError(path: string, what: string): StorvisorError {
  return apiToken(`API token ${path} ${what}`);
}
