import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { startController } from '../helpers/controller.ts';
import { tempDir } from '../helpers/tmp.ts';
import { loadOrCreateToken, readToken, tokenPath } from '../../src/api/token.ts';
import { call, startTestApi } from './helpers.ts';

/**
 * The management API trusts nobody until authenticated: no token, a wrong
 * token, a foreign Host (DNS rebinding) or a non-JSON state change (a browser's
 * "simple" cross-origin POST) is refused before anything is read or changed.
 */
const MiB = 2 ** 20;

async function setup(t: { after: (fn: () => unknown) => void }) {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }] });
  const api = await startTestApi(t, c);
  return { c, api };
}

test('state-changing calls without a token, or with a wrong one, get 401 and change nothing', async (t) => {
  const { c, api } = await setup(t);
  const before = c.store.list();
  for (const auth of [undefined, 'not-the-token', api.token.slice(0, -1), `${api.token}x`]) {
    const create = await call(api, 'POST', '/volumes', { auth, body: { name: 'evil', size: 4 * MiB } });
    assert.equal(create.status, 401, create.text);
    assert.equal(create.json.code, 'SV_ERR_UNAUTHORIZED');
    assert.match(String(create.headers['www-authenticate']), /^Bearer/);
    assert.equal((await call(api, 'POST', '/volumes/v/resize', { auth, body: { size: 4 * MiB, allowShrink: true } })).status, 401);
    assert.equal((await call(api, 'DELETE', '/volumes/v', { auth, body: {} })).status, 401);
  }
  assert.deepEqual(c.store.list(), before);
  const ok = await call(api, 'POST', '/volumes', { auth: true, body: { name: 'good', size: 4 * MiB } });
  assert.equal(ok.status, 201, ok.text);
  assert.equal(c.store.manifest('good').size, 4 * MiB);
});

test('reads need the token too: /status, /metrics and /volumes answer 401 without it', async (t) => {
  const { api } = await setup(t);
  for (const path of ['/status', '/metrics', '/volumes', '/no-such-route']) {
    assert.equal((await call(api, 'GET', path)).status, 401, path);
  }
  assert.equal((await call(api, 'GET', '/status', { auth: true })).status, 200);
  assert.match((await call(api, 'GET', '/metrics', { auth: true })).text, /storvisor_volume_size_bytes\{volume="v"\} 8388608/);
});

test('a request whose Host is not loopback or the API port is refused with 421 even with the right token', async (t) => {
  const { c, api } = await setup(t);
  for (const host of ['evil.example', `evil.example:${api.port}`, `127.0.0.1:${api.port + 1}`, `localhost.evil.example:${api.port}`, `127.0.0.1.nip.io:${api.port}`]) {
    const r = await call(api, 'POST', '/volumes', { auth: true, host, body: { name: 'rebound', size: 4 * MiB } });
    assert.equal(r.status, 421, `Host ${JSON.stringify(host)}: ${r.text}`);
    assert.equal(r.json.code, 'SV_ERR_MISDIRECTED');
  }
  assert.equal(c.store.exists('rebound'), false);
  // No Host at all (HTTP/1.0), written by hand since an HTTP client always adds one.
  const raw = await new Promise<string>((resolve, reject) => {
    const s = connect(api.port, api.host, () => s.end(`GET /status HTTP/1.0\r\nAuthorization: Bearer ${api.token}\r\n\r\n`));
    let text = '';
    s.on('data', (d) => (text += d));
    s.on('end', () => resolve(text));
    s.on('error', reject);
  });
  assert.match(raw, /^HTTP\/1\.1 421 /);
  for (const host of ['127.0.0.1', `localhost:${api.port}`, `[::1]:${api.port}`, `LOCALHOST:${api.port}`]) {
    assert.equal((await call(api, 'GET', '/volumes', { auth: true, host })).status, 200, host);
  }
});

test('a text/plain POST (a browser sends it cross-origin without preflight) gets 415 and creates nothing', async (t) => {
  const { c, api } = await setup(t);
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', null]) {
    const r = await call(api, 'POST', '/volumes', { auth: true, type, body: JSON.stringify({ name: 'csrf', size: 4 * MiB }) });
    assert.equal(r.status, 415, `${type}: ${r.text}`);
    assert.equal(r.json.code, 'SV_ERR_MEDIA_TYPE');
  }
  assert.equal((await call(api, 'DELETE', '/volumes/v', { auth: true, type: 'text/plain' })).status, 415);
  assert.equal(c.store.exists('csrf'), false);
  assert.equal(c.store.exists('v'), true);
  assert.equal((await call(api, 'POST', '/volumes', { auth: true, type: 'application/json; charset=utf-8', body: { name: 'json', size: 4 * MiB } })).status, 201);
});

test('the API sends no CORS headers, to a preflight or to an authenticated request', async (t) => {
  const { api } = await setup(t);
  const preflight = await call(api, 'OPTIONS', '/volumes', { type: null });
  assert.ok(preflight.status >= 400);
  const ok = await call(api, 'GET', '/status', { auth: true });
  for (const r of [preflight, ok]) {
    assert.deepEqual(Object.keys(r.headers).filter((h) => h.startsWith('access-control-')), []);
  }
});

test('malformed volume requests get 400 with the field named, not a volume called "undefined"', async (t) => {
  const { c, api } = await setup(t);
  const noName = await call(api, 'POST', '/volumes', { auth: true, body: { size: 4 * MiB } });
  assert.equal(noName.status, 400);
  assert.match(noName.json.error, /"name" must be a string/);
  assert.equal((await call(api, 'POST', '/volumes', { auth: true, body: { name: 'x', size: '4M' } })).status, 400);
  assert.equal((await call(api, 'POST', '/volumes', { auth: true, body: '[1,2]' })).status, 400);
  assert.equal(c.store.exists('undefined'), false);
});

test('the token file is created once with mode 0600 and reused; a token file others can read is refused', (t) => {
  const dir = tempDir(t);
  assert.equal(readToken(dir), undefined);
  const token = loadOrCreateToken(dir);
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(statSync(tokenPath(dir)).mode & 0o777, 0o600);
  assert.equal(loadOrCreateToken(dir), token);
  assert.notEqual(loadOrCreateToken(tempDir(t)), token);
  chmodSync(tokenPath(dir), 0o644);
  assert.throws(() => loadOrCreateToken(dir), (err: any) => err.code === 'SV_ERR_API_TOKEN' && /readable by others/.test(err.message));
  writeFileSync(tokenPath(dir), 'short\n', { mode: 0o600 });
  chmodSync(tokenPath(dir), 0o600);
  assert.throws(() => readToken(dir), (err: any) => err.code === 'SV_ERR_API_TOKEN');
});

test('creating a volume past the overcommit limit through the API gets 507 with SV_ERR_OVERCOMMIT', async (t) => {
  const { c, api } = await setup(t);
  const r = await call(api, 'POST', '/volumes', { auth: true, body: { name: 'huge', size: 15 * 2 ** 40 } });
  assert.equal(r.status, 507, r.text);
  assert.equal(r.json.code, 'SV_ERR_OVERCOMMIT');
  assert.match(r.json.error, /raise "overcommit"/);
  assert.equal(c.store.exists('huge'), false);
});
