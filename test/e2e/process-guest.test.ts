import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { NbdClient } from '../../src/nbd/client.ts';
import type { ProcessGuest } from '../../src/deploy/guest/process-guest.ts';
import { fioVerify, nbdUri, startController, waitRunning } from '../helpers/controller.ts';
import { rng } from '../helpers/tmp.ts';
import { writeLoad, verifyBlocks, shuffledBlocks } from '../helpers/load.ts';

/**
 * Process guests: the function in its own OS process, on the same virtqueue
 * in a memfd both map. What /status reports is read back from /proc, and a
 * kill -9 mid-load harms nobody else and loses no acknowledged write.
 */
const cpus = Number(/^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!.split(/[-,]/).pop()) + 1;

test('fio verifies its writes through an NBD export running as a process guest', async (t) => {
  const c = await startController(t, {
    volumes: [{ name: 'v', sizeMiB: 32 }],
    functions: [{ name: 'p', function: 'nbd-export', volume: 'v', kind: 'process', options: { exportName: 'p' } }],
  });
  const addr = await waitRunning(c, 'p');
  const r = await fioVerify(nbdUri(addr, 'p'), 'randwrite');
  assert.equal(r.error, 0);
  assert.ok(r.writeIos > 0);
  const s = await c.deployment('p')!.status();
  assert.equal(s.guest?.kind, 'process');
  assert.notEqual(s.guest?.pid, process.pid);
  assert.ok((s.stats.queue_requests ?? 0) > 0, 'requests went through the shared-memory queue');
});

test('a process guest runs on its static core at its nice value, as /proc shows', async (t) => {
  const core = cpus - 1;
  const c = await startController(t, {
    volumes: [{ name: 'v', sizeMiB: 8 }],
    functions: [{ name: 'p', function: 'nbd-export', volume: 'v', kind: 'process', cores: [core], priority: 5, idle: 'adaptive', options: { exportName: 'p' } }],
  });
  await waitRunning(c, 'p');
  const pid = (c.deployment('p') as ProcessGuest).pid()!;
  const s = await c.deployment('p')!.status();
  assert.equal(s.guest?.pid, pid);
  assert.deepEqual(s.guest?.affinity, [String(core)]);
  assert.deepEqual(s.guest?.nice, [5]);
  assert.deepEqual(s.guest?.policy, ['other']);
  assert.deepEqual(s.guest?.priorityApplied, [`cores ${core}`, 'nice 5']);
  assert.equal(s.guest?.idle, 'adaptive');
  assert.equal(s.guest?.hugepages, false);
  // Every thread of the child, read from /proc directly.
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  assert.equal(/^Cpus_allowed_list:\s*(\S+)/m.exec(status)![1], String(core));
});

test('a process guest killed with SIGKILL mid-load loses no acknowledged write, the other guest keeps serving, and it serves again', async (t) => {
  const c = await startController(t, {
    volumes: [
      { name: 'va', sizeMiB: 32 },
      { name: 'vb', sizeMiB: 32 },
    ],
    functions: [
      { name: 'a', function: 'nbd-export', volume: 'va', kind: 'process', restart: 'on-failure', options: { exportName: 'a' } },
      { name: 'b', function: 'nbd-export', volume: 'vb', kind: 'process', options: { exportName: 'b' } },
    ],
  });
  const addrA = await waitRunning(c, 'a', 0);
  const addrB = await waitRunning(c, 'b', 0);
  const a = await NbdClient.connect({ ...addrA, exportName: 'a' });
  const b = await NbdClient.connect({ ...addrB, exportName: 'b' });
  const next = rng(9);
  let aDead = false;
  let bAfterCrash = 0;
  const loadA = writeLoad(a, {
    blocks: shuffledBlocks(8192, next),
    depth: 8,
    onAck: (n) => {
      if (n === 300) {
        process.kill((c.deployment('a') as ProcessGuest).pid()!, 'SIGKILL');
      }
    },
  }).then((r) => {
    aDead = true;
    return r;
  });
  const loadB = writeLoad(b, {
    blocks: shuffledBlocks(8192, next),
    depth: 4,
    stop: () => aDead && bAfterCrash >= 200,
    onAck: () => {
      if (aDead) bAfterCrash++;
    },
  });
  const [ra, rb] = await Promise.all([loadA, loadB]);
  assert.ok(ra.error, 'guest a died under its client');
  assert.ok(ra.acked.length >= 300);
  assert.equal(rb.error, undefined, 'guest b never failed a request');
  const back = await waitRunning(c, 'a', 1);
  const a2 = await NbdClient.connect({ ...back, exportName: 'a' });
  assert.deepEqual(back, addrA, 'a came back on the same address');
  assert.deepEqual(await verifyBlocks(a2, ra.acked), []);
  assert.deepEqual(await verifyBlocks(b, rb.acked), []);
  await Promise.all([a2.close(), b.close(), a.close().catch(() => {})]);
});

/** Reserve `pages` more huge pages for the test (root only); restores the old count after. Null when refused. */
function reserveHugePages(t: { after: (fn: () => void) => void }, pages: number): number | null {
  const file = '/proc/sys/vm/nr_hugepages';
  try {
    const before = Number(readFileSync(file, 'utf8'));
    writeFileSync(file, String(before + pages));
    t.after(() => writeFileSync(file, String(before)));
    const free = Number(/^HugePages_Free:\s*(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]);
    return free >= pages ? free : null;
  } catch {
    return null;
  }
}

test('a process guest asking for huge pages gets its region on them, as /proc shows', async (t) => {
  if (reserveHugePages(t, 4) === null) {
    t.skip('this machine refuses to reserve huge pages (nr_hugepages)');
    return;
  }
  const c = await startController(t, {
    volumes: [{ name: 'v', sizeMiB: 8 }],
    functions: [{ name: 'p', function: 'nbd-export', volume: 'v', kind: 'process', hugepages: true, standby: false, memoryMiB: 4, options: { exportName: 'p' } }],
  });
  await waitRunning(c, 'p');
  const s = await c.deployment('p')!.status();
  assert.equal(s.guest?.hugepages, true);
  assert.equal(s.guest?.hugepagesWhyNot, null);
  // The guest's mapping of its region, read from its smaps: 2 MiB pages.
  const smaps = readFileSync(`/proc/${s.guest?.pid}/smaps`, 'utf8');
  const region = smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/).find((m) => m.includes('storvisor:p'));
  assert.ok(region, 'the region is mapped in the guest');
  assert.match(region!, /KernelPageSize:\s+2048 kB/);
});

test('a process guest asking for huge pages where none are free falls back and says why', async (t) => {
  const free = Number(/^HugePages_Free:\s*(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]);
  if (free > 0) {
    t.skip('huge pages are free on this machine: no fallback to see');
    return;
  }
  const c = await startController(t, {
    volumes: [{ name: 'v', sizeMiB: 8 }],
    functions: [{ name: 'p', function: 'nbd-export', volume: 'v', kind: 'process', hugepages: true, standby: false, memoryMiB: 4, options: { exportName: 'p' } }],
  });
  await waitRunning(c, 'p');
  const s = await c.deployment('p')!.status();
  assert.equal(s.guest?.hugepages, false);
  assert.match(String(s.guest?.hugepagesWhyNot), /huge pages|hugetlb/);
});
