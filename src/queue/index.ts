/** Public surface of the shared-memory queue: region layout, device side (controller), driver side (guest). */
export { createRegion, regionLayout, QueueMode, type CreateRegionOptions, type QueueModeName, type RegionLayout } from './layout.ts';
export { VirtioBlkDevice, type VirtioBlkDeviceOptions, type VirtioBlkDeviceStats } from './blk-device.ts';
export { VirtioBlkDriver, type VirtioBlkDriverOptions, type VirtioBlkDriverStats } from './blk-driver.ts';
export { runDeviceLoop, type DeviceLoop, type DeviceLoopOptions } from './device-loop.ts';
export { SpinBudget } from './spin-budget.ts';
