import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startController } from '../helpers/controller.ts';
import { call, startTestApi } from './helpers.ts';

/** The management API's routes and the shapes they answer with (auth has its own file). */
const MiB = 2 ** 20;

async function setup(t: { after: (fn: () => unknown) => void }) {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }] });
  const api = await startTestApi(t, c);
  return { c, api };
}

test('GET /status answers JSON with volumes, functions, cache, poller, engine, nbd and controller counters', async (t) => {
  const { api } = await setup(t);
  const r = await call(api, 'GET', '/status', { auth: true });
  assert.equal(r.status, 200, r.text);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.deepEqual(Object.keys(r.json).sort(), ['cache', 'controller', 'engine', 'functions', 'nbd', 'poller', 'process', 'volumes']);
  const v = r.json.volumes.find((x: { name: string }) => x.name === 'v');
  assert.equal(v.size, 8 * MiB);
  assert.deepEqual(r.json.functions, []);
  assert.equal(r.json.controller.stopFailures, 0);
});

test('GET /volumes lists the manifests, and a created volume appears in it', async (t) => {
  const { api } = await setup(t);
  const created = await call(api, 'POST', '/volumes', { auth: true, body: { name: 'w', size: 4 * MiB } });
  assert.equal(created.status, 201, created.text);
  assert.equal(created.json.name, 'w');
  assert.equal(created.json.size, 4 * MiB);
  const list = await call(api, 'GET', '/volumes', { auth: true });
  assert.equal(list.status, 200);
  assert.deepEqual(list.json.map((m: { name: string }) => m.name).sort(), ['v', 'w']);
});

test('creating a volume that exists answers 409 with SV_ERR_EXISTS', async (t) => {
  const { api } = await setup(t);
  const r = await call(api, 'POST', '/volumes', { auth: true, body: { name: 'v', size: 4 * MiB } });
  assert.equal(r.status, 409, r.text);
  assert.equal(r.json.code, 'SV_ERR_EXISTS');
});

test('resize grows a volume; shrinking needs allowShrink, and a non-boolean allowShrink is 400', async (t) => {
  const { c, api } = await setup(t);
  const grown = await call(api, 'POST', '/volumes/v/resize', { auth: true, body: { size: 16 * MiB } });
  assert.equal(grown.status, 200, grown.text);
  assert.equal(grown.json.size, 16 * MiB);
  const refused = await call(api, 'POST', '/volumes/v/resize', { auth: true, body: { size: 4 * MiB } });
  assert.equal(refused.status, 400, refused.text);
  assert.match(refused.json.error, /allowShrink/);
  assert.equal(c.store.manifest('v').size, 16 * MiB);
  const bad = await call(api, 'POST', '/volumes/v/resize', { auth: true, body: { size: 4 * MiB, allowShrink: 'yes' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.code, 'SV_ERR_INVALID_ARGUMENT');
  const shrunk = await call(api, 'POST', '/volumes/v/resize', { auth: true, body: { size: 4 * MiB, allowShrink: true } });
  assert.equal(shrunk.status, 200, shrunk.text);
  assert.equal(c.store.manifest('v').size, 4 * MiB);
});

test('DELETE removes a volume and answers its name; deleting it again is 404', async (t) => {
  const { c, api } = await setup(t);
  const r = await call(api, 'DELETE', '/volumes/v', { auth: true, body: {} });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { deleted: 'v' });
  assert.equal(c.store.exists('v'), false);
  const again = await call(api, 'DELETE', '/volumes/v', { auth: true, body: {} });
  assert.equal(again.status, 404);
  assert.equal(again.json.code, 'SV_ERR_NOT_FOUND');
});

test('an unknown route, or a known one with extra path parts, is 404 SV_ERR_NO_ROUTE; a known path with another method is 405', async (t) => {
  const { api } = await setup(t);
  for (const [method, path] of [['GET', '/nope'], ['GET', '/status/extra'], ['POST', '/volumes/v/grow']] as const) {
    const r = await call(api, method, path, { auth: true, body: method === 'GET' ? undefined : {} });
    assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
    assert.equal(r.json.code, 'SV_ERR_NO_ROUTE');
  }
  const put = await call(api, 'PUT', '/volumes', { auth: true, body: {} });
  assert.equal(put.status, 405, put.text);
  assert.equal(put.json.code, 'SV_ERR_METHOD');
});

test('a body that is not a JSON object is 400, and one over 64 KiB is 413 with the connection closed', async (t) => {
  const { api } = await setup(t);
  for (const body of ['not json', '[1,2]', 'null']) {
    const r = await call(api, 'POST', '/volumes', { auth: true, body });
    assert.equal(r.status, 400, body);
    assert.equal(r.json.code, 'SV_ERR_INVALID_ARGUMENT');
  }
  const big = await call(api, 'POST', '/volumes', { auth: true, body: { name: 'x', size: 1, pad: 'a'.repeat(70 * 1024) } });
  assert.equal(big.status, 413);
  assert.equal(big.json.code, 'SV_ERR_BODY_TOO_LARGE');
  assert.equal(big.headers.connection, 'close');
});

test('GET /metrics is Prometheus text that counts failed stops of the controller', async (t) => {
  const { api } = await setup(t);
  const r = await call(api, 'GET', '/metrics', { auth: true });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(r.text, /^storvisor_volume_size_bytes\{volume="v"\} 8388608$/m);
  assert.match(r.text, /^storvisor_controller_stop_failures_total 0$/m);
});
