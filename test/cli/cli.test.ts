import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startController } from '../helpers/controller.ts';
import { tempDir } from '../helpers/tmp.ts';
import { startTestApi } from '../api/helpers.ts';
import { cli, closedPort } from './helpers.ts';

/** The command line against a running controller, and without one. */
test('with no controller running, status prints one line that says to start it, and exits 1', async (t) => {
  const dir = tempDir(t);
  const port = await closedPort();
  const config = join(dir, 'c.json');
  writeFileSync(config, JSON.stringify({ dataDir: dir, api: { port } }));
  const r = await cli(['status', '--config', config]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `storvisor: no controller answering at http://127.0.0.1:${port} — is it running? (storvisor start) [SV_ERR_NO_CONTROLLER]\n`);
  const j = await cli(['function', 'list', '--json', '--config', config]);
  assert.equal(j.code, 1);
  assert.equal(JSON.parse(j.stderr).code, 'SV_ERR_NO_CONTROLLER');
});

test('a command with missing arguments prints usage help and exits 2', async () => {
  const r = await cli(['volume', 'create', 'only-a-name']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /missing required argument 'size'/);
});

test('volume and function commands drive a running controller: tables for people, --json for scripts, one-line refusals', async (t) => {
  const c = await startController(t, { volumes: [{ name: 'v', sizeMiB: 8 }] });
  const api = await startTestApi(t, c);
  const config = join(c.config.dataDir, 'cli.json');
  writeFileSync(config, JSON.stringify({ dataDir: c.config.dataDir, api: { host: '127.0.0.1', port: api.port } }));

  const created = await cli(['volume', 'create', 'v2', '8M', '-c', config]);
  assert.equal(created.stdout, 'created volume v2 (8 MiB)\n', created.stderr);
  const deployed = await cli(['fn', 'deploy', 'f2', 'nbd-export', 'v2', '--deploy', 'integrated', '-o', 'exportName=e2', '-c', config, '--json']);
  assert.equal(deployed.code, 0, deployed.stderr);
  assert.equal(JSON.parse(deployed.stdout).state, 'running');
  const list = await cli(['volume', 'list', '-c', config]);
  assert.match(list.stdout, /^NAME +SIZE +USED +STATE +USED BY\nv +8 MiB +\S+ B +closed +-\nv2 +8 MiB +\S+ B +open +f2\n$/);
  const refused = await cli(['volume', 'delete', 'v2', '-c', config]);
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, "storvisor: cannot delete volume 'v2': it is in use by function 'f2' (integrated); stop them first [SV_ERR_IN_USE]\n");
  const fns = await cli(['fn', 'list', '-c', config, '--json']);
  assert.deepEqual((JSON.parse(fns.stdout) as Array<{ name: string }>).map((f) => f.name), ['f2']);
  const top = await cli(['top', '-n', '1', '--interval', '0.2', '-c', config]);
  assert.equal(top.code, 0, top.stderr);
  assert.match(top.stdout, /^storvisor top — pid \d+, up /);
  assert.match(top.stdout, /^f2 +nbd-export +integrated +running +\d+/m);
  assert.match(top.stdout, /^v2 +8 MiB +/m);
  assert.equal((await cli(['fn', 'undeploy', 'f2', '-c', config])).stdout, 'undeployed f2\n');
  assert.equal(c.store.exists('v2'), true);
});
