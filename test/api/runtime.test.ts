import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { parseConfig, type Config } from '../../src/config/config.ts';
import { Controller } from '../../src/controller/controller.ts';
import { readRuntimeState, writeRuntimeState, emptyState, RUNTIME_STATE_FILE } from '../../src/controller/runtime-state.ts';
import { tempDir } from '../helpers/tmp.ts';
import { fioVerify, nbdUri, run, startController } from '../helpers/controller.ts';
import { call, startTestApi, type Api } from './helpers.ts';

/**
 * Runtime management through the authenticated API: volumes and functions
 * change on a running controller, the changes are persisted, and a restarted
 * controller comes back in the same shape.
 */
const MiB = 2 ** 20;
type T = { after: (fn: () => unknown) => void };

function configFor(dataDir: string): Config {
  return parseConfig(
    {
      dataDir,
      cacheMiB: 16,
      api: null,
      nbd: { port: 0 },
      volumes: [{ name: 'cv', sizeMiB: 8 }],
      functions: [{ name: 'cfgfn', function: 'nbd-export', volume: 'cv', options: { exportName: 'cv' } }],
    },
    dataDir,
    {},
  );
}

async function boot(t: T, dataDir: string): Promise<{ c: Controller; api: Api }> {
  const c = await Controller.start(configFor(dataDir));
  t.after(() => c.stop());
  return { c, api: await startTestApi(t, c) };
}

/** What must survive a restart: volumes and their sizes; functions, how they run, where they listen. */
async function shape(api: Api): Promise<unknown> {
  const vols = (await call(api, 'GET', '/volumes', { auth: true })).json as Array<{ name: string; size: number; uuid: string }>;
  const fns = (await call(api, 'GET', '/functions', { auth: true })).json as Array<Record<string, unknown>>;
  return {
    volumes: vols.map((v) => ({ name: v.name, size: v.size, uuid: v.uuid })),
    functions: fns.map((f) => ({ name: f.name, function: f.function, volume: f.volume, deploy: f.deploy, notify: f.notify, state: f.state, address: f.address })),
  };
}

test('a volume and an nbd-export guest made at runtime serve fio verify; after undeploy, deploy and a restart the controller has the same shape', async (t) => {
  const dataDir = tempDir(t);
  const first = await boot(t, dataDir);
  const { api } = first;

  const vol = await call(api, 'POST', '/volumes', { auth: true, body: { name: 'rt', size: 32 * MiB } });
  assert.equal(vol.status, 201, vol.text);
  const dep = await call(api, 'POST', '/functions', { auth: true, body: { name: 'rt0', function: 'nbd-export', volume: 'rt', options: { exportName: 'rt' } } });
  assert.equal(dep.status, 201, dep.text);
  assert.equal(dep.json.state, 'running');
  const r = await fioVerify(nbdUri(dep.json.address, 'rt'), 'randwrite');
  assert.equal(r.error, 0);
  assert.ok(r.writeIos > 0);

  // In use: no shrink, no delete, and no second writer on the same volume.
  const del = await call(api, 'DELETE', '/volumes/rt', { auth: true });
  assert.equal(del.status, 409, del.text);
  assert.equal(del.json.code, 'SV_ERR_IN_USE');
  assert.equal((await call(api, 'POST', '/volumes/rt/resize', { auth: true, body: { size: 16 * MiB, allowShrink: true } })).json.code, 'SV_ERR_IN_USE');
  const second = await call(api, 'POST', '/functions', { auth: true, body: { name: 'rt9', function: 'nbd-export', volume: 'rt' } });
  assert.equal(second.status, 409, second.text);
  assert.equal(second.json.code, 'SV_ERR_IN_USE');

  // Undeploy it; deploy another guest on the same volume, in poll mode; undeploy the config's function and delete its volume.
  assert.equal((await call(api, 'DELETE', '/functions/rt0', { auth: true })).status, 200);
  assert.equal((await call(api, 'GET', '/functions/rt0', { auth: true })).status, 404);
  const rt1 = await call(api, 'POST', '/functions', { auth: true, body: { name: 'rt1', function: 'nbd-export', volume: 'rt', options: { exportName: 'rt' } } });
  assert.equal(rt1.status, 201, rt1.text);
  const polled = await call(api, 'POST', '/functions/rt1/notify', { auth: true, body: { notify: 'poll' } });
  assert.equal(polled.status, 200, polled.text);
  assert.equal(polled.json.notify, 'poll');
  assert.deepEqual(polled.json.address, rt1.json.address, 'a pinned port survives the switch');
  assert.equal((await call(api, 'DELETE', '/functions/cfgfn', { auth: true })).status, 200);
  assert.equal((await call(api, 'DELETE', '/volumes/cv', { auth: true })).status, 200);
  const before = await shape(api);
  assert.deepEqual((before as { functions: Array<{ name: string }> }).functions.map((f) => f.name), ['rt1']);

  await first.c.stop();
  const second2 = await boot(t, dataDir);
  assert.deepEqual(await shape(second2.api), before);
  // The data written through rt0 reads back through rt1, at the address it had.
  const check = await run('fio', [
    '--name=verify', '--ioengine=nbd', `--uri=${nbdUri(rt1.json.address, 'rt')}`, '--rw=randwrite', '--bs=4k', '--size=16M',
    '--verify=crc32c', '--verify_only=1', '--verify_fatal=1', '--verify_state_save=0', '--output-format=json',
  ]);
  assert.equal(JSON.parse(check.stdout.slice(check.stdout.indexOf('{'))).jobs[0].error, 0);
});

test('a runtime deploy with bad fields, an unknown module, a missing volume or a taken name is refused with a stable code and leaves nothing behind', async (t) => {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }], functions: [{ name: 'f0', function: 'nbd-export', volume: 'v' }] });
  const api = await startTestApi(t, c);
  await call(api, 'POST', '/volumes', { auth: true, body: { name: 'free', size: 8 * MiB } });
  const cases: Array<[Record<string, unknown>, number, string]> = [
    [{ name: 'x', function: 'nbd-export', volume: 'free', notify: 'sometimes' }, 400, 'SV_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', function: 'nbd-export', volume: 'free', bogus: 1 }, 400, 'SV_ERR_INVALID_ARGUMENT'],
    [{ name: 'bad name!', function: 'nbd-export', volume: 'free' }, 400, 'SV_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', function: 'no-such-module', volume: 'free' }, 400, 'SV_ERR_INVALID_ARGUMENT'],
    [{ name: 'x', function: 'nbd-export', volume: 'missing' }, 404, 'SV_ERR_NOT_FOUND'],
    [{ name: 'f0', function: 'nbd-export', volume: 'free' }, 409, 'SV_ERR_EXISTS'],
    [{ name: 'x', function: 'nbd-export', volume: 'free', options: { pad: 'x'.repeat(20_000) } }, 400, 'SV_ERR_INVALID_ARGUMENT'],
  ];
  for (const [body, status, code] of cases) {
    const r = await call(api, 'POST', '/functions', { auth: true, body });
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.code, code, JSON.stringify(body));
  }
  assert.deepEqual(((await call(api, 'GET', '/functions', { auth: true })).json as Array<{ name: string }>).map((f) => f.name), ['f0']);
  assert.deepEqual(readRuntimeState(c.config.dataDir), emptyState());
});

test('notify, restart and undeploy of a missing function answer 404, and a notify mode outside the list 400', async (t) => {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }], functions: [{ name: 'f0', function: 'nbd-export', volume: 'v', deploy: 'integrated' }] });
  const api = await startTestApi(t, c);
  for (const [method, path] of [['DELETE', '/functions/nope'], ['POST', '/functions/nope/restart'], ['GET', '/functions/nope']] as const) {
    const r = await call(api, method, path, { auth: true, body: {} });
    assert.equal(r.status, 404, `${method} ${path}`);
    assert.equal(r.json.code, 'SV_ERR_NOT_FOUND');
  }
  assert.equal((await call(api, 'POST', '/functions/f0/notify', { auth: true, body: { notify: 'loud' } })).json.code, 'SV_ERR_INVALID_ARGUMENT');
  const integrated = await call(api, 'POST', '/functions/f0/notify', { auth: true, body: { notify: 'poll' } });
  assert.equal(integrated.status, 400, 'an integrated function has no queue');
  const restarted = await call(api, 'POST', '/functions/f0/restart', { auth: true, body: {} });
  assert.equal(restarted.status, 200, restarted.text);
  assert.equal(restarted.json.state, 'running');
});

test('function routes refuse a missing token (401), a non-JSON body (415) and a wrong method (405) before changing anything', async (t) => {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }] });
  const api = await startTestApi(t, c);
  const body = { name: 'evil', function: 'nbd-export', volume: 'v' };
  assert.equal((await call(api, 'POST', '/functions', { body })).status, 401);
  assert.equal((await call(api, 'POST', '/functions', { auth: 'wrong', body })).status, 401);
  assert.equal((await call(api, 'POST', '/functions', { auth: true, type: 'text/plain', body: JSON.stringify(body) })).status, 415);
  const wrong = await call(api, 'PUT', '/functions', { auth: true, body });
  assert.equal(wrong.status, 405, wrong.text);
  assert.equal(wrong.json.code, 'SV_ERR_METHOD');
  assert.deepEqual((await call(api, 'GET', '/functions', { auth: true })).json, []);
});

test('the runtime state is replaced atomically and a damaged one stops the start with an error naming the file', async (t) => {
  const dataDir = tempDir(t);
  const state = { ...emptyState(), deletedVolumes: ['a'], notify: { f: 'poll' as const } };
  writeRuntimeState(dataDir, state);
  writeRuntimeState(dataDir, { ...state, deletedVolumes: ['b'] });
  assert.deepEqual(readRuntimeState(dataDir).deletedVolumes, ['b']);
  assert.deepEqual(readdirSync(dataDir), [RUNTIME_STATE_FILE], 'no temporary files left');
  writeFileSync(`${dataDir}/${RUNTIME_STATE_FILE}`, '{"version": 1, "deletedVol');
  await assert.rejects(Controller.start(configFor(dataDir)), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'SV_ERR_RUNTIME_STATE');
    assert.match(err.message, /runtime-state\.json is not valid JSON/);
    return true;
  });
});

test('concurrent deploys on one volume are taken one at a time: one runs, the other is refused as a second writer', async (t) => {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }] });
  const api = await startTestApi(t, c);
  const [a, b] = await Promise.all([
    call(api, 'POST', '/functions', { auth: true, body: { name: 'a', function: 'nbd-export', volume: 'v', deploy: 'integrated' } }),
    call(api, 'POST', '/functions', { auth: true, body: { name: 'b', function: 'nbd-export', volume: 'v', deploy: 'integrated' } }),
  ]);
  assert.deepEqual([a.status, b.status].sort(), [201, 409], `${a.text} ${b.text}`);
  assert.equal((a.status === 409 ? a : b).json.code, 'SV_ERR_IN_USE');
  assert.equal(((await call(api, 'GET', '/functions', { auth: true })).json as unknown[]).length, 1);
});
