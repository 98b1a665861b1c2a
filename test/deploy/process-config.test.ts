import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, ConfigError } from '../../src/config/config.ts';

/** Process guests' static resources are checked at start, naming the bad field. */
const env = { STORVISOR_CPUS: '2' };
const base = (fn: Record<string, unknown>, more: Record<string, unknown> = {}) => ({
  volumes: [{ name: 'v', sizeMiB: 8 }, { name: 'w', sizeMiB: 8 }],
  functions: [{ name: 'p', function: 'nbd-export', volume: 'v', kind: 'process', ...fn }],
  ...more,
});
const fails = (raw: unknown, path: string, message: RegExp) =>
  assert.throws(() => parseConfig(raw, '/tmp', env), (err: unknown) => err instanceof ConfigError && err.path === path && message.test(err.message));

test('a process guest takes cores as a list or a CPU-list string, sorted', () => {
  assert.deepEqual(parseConfig(base({ cores: [1, 0] }), '/tmp', env).functions[0]!.cores, [0, 1]);
  assert.deepEqual(parseConfig(base({ cores: '0-1' }), '/tmp', env).functions[0]!.cores, [0, 1]);
});

test('a core that does not exist is a config error naming the field', () => {
  fails(base({ cores: [2] }), 'functions[0].cores', /CPU 2 does not exist \(this machine has CPUs 0-1\)/);
  fails(base({ cores: '0,7' }), 'functions[0].cores', /CPU 7 does not exist/);
  fails(base({ cores: 'one' }), 'functions[0].cores', /CPU list/);
  fails(base({ cores: [] }), 'functions[0].cores', /at least one CPU/);
});

test('two guests given the same core is a config error naming the second', () => {
  const raw = base({ cores: [0] });
  raw.functions.push({ name: 'q', function: 'nbd-export', volume: 'w', kind: 'process', cores: [1, 0] } as never);
  fails(raw, 'functions[1].cores', /CPU 0 is already given to functions\[0\]\.cores \(p\)/);
});

test('a guest given the poller\'s core is a config error naming the guest', () => {
  fails(base({ cores: [1] }, { poller: { cores: [1] } }), 'functions[0].cores', /CPU 1 is already given to poller\.cores/);
  fails(base({}, { poller: { cores: [3] } }), 'poller.cores', /CPU 3 does not exist/);
});

test('cores, huge pages and priority are refused on a thread guest', () => {
  fails(base({ kind: 'thread', cores: [0] }), 'functions[0].cores', /only a process guest/);
  fails(base({ kind: undefined, hugepages: true }), 'functions[0].hugepages', /only a process guest/);
  fails(base({ kind: 'vm' }), 'functions[0].kind', /must be one of thread, process/);
});

test('a priority is a nice value or a real-time policy, checked', () => {
  assert.deepEqual(parseConfig(base({ priority: -5 }), '/tmp', env).functions[0]!.priority, { nice: -5 });
  assert.deepEqual(parseConfig(base({ priority: { policy: 'rr', rtPriority: 10 } }), '/tmp', env).functions[0]!.priority, { policy: 'rr', rtPriority: 10 });
  fails(base({ priority: 40 }), 'functions[0].priority', /-20 to 19/);
  fails(base({ priority: { policy: 'fifo', rtPriority: 100 } }), 'functions[0].priority.rtPriority', /1 to 99/);
  fails(base({}, { poller: { priority: { policy: 'batch' } } }), 'poller.priority.policy', /fifo, rr/);
});

test('the default config runs the NBD re-export as a process guest on its own core, the poller on another', async () => {
  const { defaultConfig } = await import('../../src/config/config.ts');
  const two = parseConfig(defaultConfig(2), '/tmp', env);
  const nbd0 = two.functions.find((f) => f.name === 'nbd0')!;
  assert.equal(nbd0.kind, 'process');
  assert.deepEqual(nbd0.cores, [1]);
  assert.deepEqual(two.poller?.cores, [0]);
  // One CPU: nothing to give statically, still a process guest.
  const one = parseConfig(defaultConfig(1), '/tmp', { STORVISOR_CPUS: '1' });
  assert.equal(one.functions.find((f) => f.name === 'nbd0')!.cores, undefined);
  assert.equal(one.poller?.cores, undefined);
});
