#!/usr/bin/env node
// Builds the native addon (native/storvisor.c → build/Release/storvisor.node)
// at `npm install`. node-gyp builds offline when it is pointed at the headers
// of the running Node (its install prefix holds include/node/node_api.h);
// without that it would try to download them. A machine without a compiler
// (or not Linux) gets a clear message and the portable fallback engine: the
// install itself never fails because of the addon.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (m) => process.stderr.write(`storvisor: ${m}\n`);

if (process.env.STORVISOR_SKIP_NATIVE === '1') {
  say('STORVISOR_SKIP_NATIVE=1: not building the native addon; the portable engine will run');
  process.exit(0);
}
if (process.platform !== 'linux') {
  say(`no native addon on ${process.platform}: the portable (libuv) engine will run`);
  process.exit(0);
}

const nodedir = dirname(dirname(process.execPath));
if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
  say(`Node headers not found under ${nodedir}/include/node: not building the native addon; the portable engine will run`);
  process.exit(0);
}

// npm hands its own node-gyp to lifecycle scripts; else a dependency or PATH.
function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return [process.execPath, process.env.npm_config_node_gyp];
  try {
    return [process.execPath, createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    const npmGyp = join(nodedir, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(npmGyp)) return [process.execPath, npmGyp];
    return ['node-gyp'];
  }
}

// LZ4 for the dedup volume (native/lz4.c) needs <lz4.h> and liblz4: a test program must
// compile and link, else the addon is built without it and the dedup volume uses its LZ4
// in TypeScript (same block format, slower).
function hasLz4() {
  if (process.env.STORVISOR_NATIVE_LZ4 === '0') return 'disabled by STORVISOR_NATIVE_LZ4=0';
  const cc = process.env.CC || 'cc';
  const probe = '#include <lz4.h>\nint main(void) { return LZ4_versionNumber() > 0 ? 0 : 1; }\n';
  const t = spawnSync(cc, ['-x', 'c', '-', '-llz4', '-o', '/dev/null'], { input: probe, encoding: 'utf8' });
  return t.status === 0 ? '' : 'lz4.h or liblz4 not found (apt-get install liblz4-dev)';
}
const lz4Missing = hasLz4();

const [cmd, ...pre] = nodeGyp();
const started = Date.now();
const r = spawnSync(cmd, [...pre, 'rebuild', `--nodedir=${nodedir}`, '--loglevel=warn', `--storvisor_lz4=${lz4Missing ? 0 : 1}`], { cwd: root, stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
if (r.status === 0) {
  say(`native addon built in ${((Date.now() - started) / 1000).toFixed(1)} s (io_uring engine available)`);
  say(lz4Missing ? `native LZ4 not built: ${lz4Missing}; the dedup volume compresses with its LZ4 in TypeScript` : 'native LZ4 built in (liblz4)');
} else {
  const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').slice(-6).join('\n');
  say(`could not build the native addon (is a C compiler installed? apt-get install build-essential):\n${why}\nstorvisor will run with the portable (libuv thread pool) engine.`);
}
process.exit(0);
