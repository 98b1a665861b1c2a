import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, loadConfig, DEFAULT_CONFIG } from '../../src/config/config.ts';
import { tempDir } from '../helpers/tmp.ts';

const base = { volumes: [{ name: 'v', sizeMiB: 64 }], functions: [{ name: 'f', function: 'nbd-export', volume: 'v' }] };
const env = {};

test('the default config is valid and uses ./data', () => {
  const c = parseConfig(DEFAULT_CONFIG, '/srv', env);
  assert.equal(c.dataDir, '/srv/data');
  assert.equal(c.functions[0]!.deploy, 'guest');
  assert.equal(c.functions[0]!.notify, 'adaptive');
});

test('STORVISOR_DATA overrides the data directory', () => {
  assert.equal(parseConfig(base, '/srv', { STORVISOR_DATA: '/var/lib/sv' }).dataDir, '/var/lib/sv');
});

test('a function defaults to a guest with adaptive notification', () => {
  const f = parseConfig(base, '/', env).functions[0]!;
  assert.deepEqual([f.deploy, f.notify, f.restart, f.queueSize, f.memory], ['guest', 'adaptive', 'on-failure', 256, 64 * 2 ** 20]);
});

const bad: Array<[string, unknown, RegExp]> = [
  ['an unknown notification mode', { ...base, functions: [{ ...base.functions[0], notify: 'fast' }] }, /^functions\[0\]\.notify: must be one of poll, notify, adaptive, poll-guest, poll-controller \(got "fast"\)$/],
  ['a missing volume', { ...base, functions: [{ ...base.functions[0], volume: 'nope' }] }, /^functions\[0\]\.volume: no volume named 'nope' in volumes \(have: v\)$/],
  ['an unaligned volume size', { volumes: [{ name: 'v', size: 1000 }] }, /^volumes\[0\]\.size: must be a positive multiple of 4096 bytes \(got 1000\)$/],
  ['two sizes', { volumes: [{ name: 'v', size: 4096, sizeMiB: 1 }] }, /^volumes\[0\]\.sizeMiB: give only one of size, sizeMiB$/],
  ['an unknown field', { ...base, volumse: [] }, /^volumse: unknown field/],
  ['a bad port', { ...base, nbd: { port: 70000 } }, /^nbd\.port: must be a number from 0 to 65535 \(got 70000\)$/],
  ['a queue size that is not a power of two', { ...base, functions: [{ ...base.functions[0], queueSize: 100 }] }, /^functions\[0\]\.queueSize: must be a power of two \(got 100\)$/],
  ['a duplicate name', { volumes: [{ name: 'v', sizeMiB: 1 }, { name: 'v', sizeMiB: 1 }] }, /^volumes\[1\]\.name: 'v' is used twice$/],
  ['a bad name', { volumes: [{ name: '../etc', sizeMiB: 1 }] }, /^volumes\[0\]\.name: '\.\.\/etc' must be/],
  ['a virtual volume with a size', { volumes: [{ name: 'd', provider: 'p', sizeMiB: 1 }] }, /^volumes\[0\]\.provider: a virtual volume takes its size from its provider: give no size$/],
  ['a virtual volume whose provider is missing', { volumes: [{ name: 'd', provider: 'nope' }] }, /^volumes\[0\]\.provider: no function named 'nope' in functions$/],
  [
    'a consumer listed before its provider',
    {
      volumes: [{ name: 'b', sizeMiB: 64 }, { name: 'd', provider: 'p' }],
      functions: [{ name: 'c', function: 'nbd-export', volume: 'd' }, { name: 'p', function: 'dedup', volume: 'b' }],
    },
    /^functions\[0\]\.volume: 'd' is provided by 'p', which must come first in functions$/,
  ],
];
for (const [what, raw, message] of bad) {
  test(`config with ${what} is refused, naming the field`, () => {
    assert.throws(() => parseConfig(raw, '/', env), (err: Error) => err.name === 'ConfigError' && message.test(err.message));
  });
}

test('a config file that is not JSON is refused with its path', (t) => {
  const file = join(tempDir(t), 'c.json');
  writeFileSync(file, '{ nope');
  assert.throws(() => loadConfig(file, env), (err: Error) => err.message.startsWith(`${file}: is not valid JSON`));
});

test('a relative dataDir is resolved against the config file directory', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ dataDir: 'here' }));
  assert.equal(loadConfig(file, env).dataDir, join(dir, 'here'));
});
