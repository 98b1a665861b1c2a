import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { MemoryBlockDevice } from '../../src/block/memory-device.ts';
import dedup, { parseDedupOptions, type RunningDedup } from '../../src/functions/dedup/index.ts';
import { randomBlock } from './data.ts';

test('options are validated with errors that name the field', () => {
  assert.throws(() => parseDedupOptions({ compresion: 'lz4' }), { errno: 'EINVAL', message: "dedup: unknown option 'compresion'" });
  assert.throws(() => parseDedupOptions({ compression: 'zstd' }), {
    errno: 'EINVAL',
    message: "dedup: option 'compression' must be one of none, lz4, deflate, got zstd",
  });
  assert.throws(() => parseDedupOptions({ logicalSize: 1000 }), {
    errno: 'EINVAL',
    message: "dedup: option 'logicalSize' must be a positive multiple of 4096, got 1000",
  });
  assert.throws(() => parseDedupOptions({ dedup: 'yes' }), { errno: 'EINVAL', message: "dedup: option 'dedup' must be a boolean, got yes" });
  assert.throws(() => parseDedupOptions({ workers: -1 }), { errno: 'EINVAL', message: "dedup: option 'workers' must be an integer from 0 to 64, got -1" });
  assert.deepEqual(parseDedupOptions({}), { compression: 'lz4', dedup: true, exportName: 'dedup' });
  assert.deepEqual(parseDedupOptions({ workers: 2 }), { compression: 'lz4', dedup: true, workers: 2, exportName: 'dedup' });
});

test('the function listens for NBD clients and exposes its volume as a plain BlockDevice', async () => {
  const backing = new MemoryBlockDevice(8 << 20);
  const running = (await dedup.start({
    device: backing,
    listen: { host: '127.0.0.1', port: 0 },
    options: parseDedupOptions({ logicalSize: 16 << 20 }),
    instance: 'unit',
    log: () => {},
  })) as RunningDedup;
  try {
    assert.equal(dedup.name, 'dedup');
    assert.ok(running.address.port > 0);
    const socket = connect(running.address.port, '127.0.0.1');
    const [greeting] = (await once(socket, 'data')) as [Buffer];
    assert.equal(greeting.subarray(0, 8).toString('latin1'), 'NBDMAGIC');
    socket.destroy();
    const dev = running.device;
    assert.equal(dev.size, 16 << 20);
    await dev.pwrite(randomBlock(1), 0);
    await dev.pwrite(randomBlock(1), 4096);
    await dev.flush();
    const back = new Uint8Array(4096);
    await dev.pread(back, 4096);
    assert.deepEqual(back, randomBlock(1));
    const s = running.stats();
    assert.equal(s.mappedBlocks, 2);
    assert.equal(s.physicalBlocksUsed, 1);
    assert.equal(s.dedupRatio, 2);
  } finally {
    await running.stop();
  }
});
