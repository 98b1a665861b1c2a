/** Test helpers: a device and a driver on one region, in one thread. */
import { MemoryBlockDevice } from '../../../src/block/memory-device.ts';
import { VirtioBlkDevice } from '../../../src/queue/blk-device.ts';
import { VirtioBlkDriver } from '../../../src/queue/blk-driver.ts';
import { runDeviceLoop, type DeviceLoop } from './device-loop.ts';
import { createRegion, type QueueModeName } from '../../../src/queue/layout.ts';

export interface PairOptions {
  mode?: QueueModeName;
  queueSize?: number;
  dataBytes?: number;
  capacityBytes?: number;
  sizeMax?: number;
}

export interface Pair {
  region: SharedArrayBuffer;
  backend: MemoryBlockDevice;
  device: VirtioBlkDevice;
  driver: VirtioBlkDriver;
  loop: DeviceLoop;
  brokenReports: string[];
  close(): Promise<void>;
}

/** Pairs not yet closed: a test that fails early still gets its loops stopped (see closeOpenPairs). */
const openPairs = new Set<{ close(): Promise<void> }>();

/** Register something to close in closeOpenPairs(); returns it. */
export function track<T extends { close(): Promise<void> }>(item: T): T {
  const close = item.close.bind(item);
  item.close = async () => {
    openPairs.delete(item);
    await close();
  };
  openPairs.add(item);
  return item;
}

/** For afterEach: stop every device loop and driver a test left open. */
export async function closeOpenPairs(): Promise<void> {
  for (const item of [...openPairs]) await item.close();
}

export function makePair(options: PairOptions = {}): Pair {
  const mode = options.mode ?? 'poll';
  const capacityBytes = options.capacityBytes ?? 1024 * 1024;
  const region = createRegion({
    mode,
    queueSize: options.queueSize ?? 16,
    dataBytes: options.dataBytes ?? 256 * 1024,
    capacityBytes,
    ...(options.sizeMax !== undefined ? { sizeMax: options.sizeMax } : {}),
  });
  const backend = new MemoryBlockDevice(capacityBytes);
  const brokenReports: string[] = [];
  const device = new VirtioBlkDevice({ region, backend, name: 'test-vol', onBroken: (r) => brokenReports.push(r) });
  const driver = new VirtioBlkDriver({ region });
  const loop = runDeviceLoop(device, { mode });
  return track({
    region, backend, device, driver, loop, brokenReports,
    async close() {
      driver.close();
      await loop.stop();
    },
  });
}

/** Deterministic pseudo-random bytes. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
