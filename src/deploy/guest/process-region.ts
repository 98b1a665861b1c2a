import { bindDoorbells, createRegion, Ctl, type CreateRegionOptions } from '../../queue/layout.ts';
import { EventfdDoorbells, closeFd, createEventfd, createSharedRegion, mapSharedRegion } from '../../native/shm.ts';

/**
 * A process guest's region, both ends. The controller creates the region (a
 * sealed memfd, see src/native/shm.ts) and two eventfds: `kick` (the guest
 * writes, the controller watches) and `call` (the other way). The guest gets
 * the three fds at spawn and maps the same memory. Driver and device are the
 * thread guests' code; only the doorbells differ (bound to the buffer here).
 */
export interface ProcessRegionFds {
  region: number;
  kick: number;
  call: number;
}

export interface ControllerRegion {
  region: ArrayBuffer;
  regionBytes: number;
  fds: ProcessRegionFds;
  huge: boolean;
  hugeWhy: string;
  locked: boolean;
  /** Close the region fd once the child has it (both mappings stay). */
  closeFds(): void;
  /** Stop watching the kick eventfd (after the guest is gone). */
  close(): void;
}

export function createControllerRegion(
  name: string,
  options: Omit<CreateRegionOptions, 'allocate' | 'shared'>,
  memory: { hugepages: boolean; lock: boolean },
): ControllerRegion {
  let shared: ReturnType<typeof createSharedRegion> | undefined;
  const region = createRegion({
    ...options,
    allocate: (bytes) => {
      shared = createSharedRegion(`storvisor:${name}`, bytes, memory);
      return shared.buffer;
    },
  }) as unknown as ArrayBuffer;
  const s = shared!;
  let kick = -1;
  let call = -1;
  try {
    kick = createEventfd();
    call = createEventfd();
  } catch (err) {
    closeFd(s.fd);
    if (kick >= 0) closeFd(kick);
    throw err;
  }
  const bells = new EventfdDoorbells(new Map([[Ctl.call, call]]), new Map([[Ctl.kick, kick]]));
  bindDoorbells(region, bells);
  let fdsOpen = true;
  const closeFds = () => {
    if (!fdsOpen) return;
    fdsOpen = false;
    closeFd(s.fd);
  };
  return {
    region,
    regionBytes: region.byteLength,
    fds: { region: s.fd, kick, call },
    huge: s.huge,
    hugeWhy: s.hugeWhy,
    locked: s.locked,
    // The eventfds stay open while the guest runs: we watch kick and write call.
    closeFds,
    close() {
      closeFds();
      bells.close();
      closeFd(kick);
      closeFd(call);
    },
  };
}

/** Guest side: map the region handed over as fds and bind its doorbells. */
export function attachGuestRegion(fds: ProcessRegionFds, regionBytes: number): { region: ArrayBuffer; close(): void } {
  const region = mapSharedRegion(fds.region, regionBytes);
  closeFd(fds.region); // the mapping stays
  const bells = new EventfdDoorbells(new Map([[Ctl.kick, fds.kick]]), new Map([[Ctl.call, fds.call]]));
  bindDoorbells(region, bells);
  return { region, close: () => bells.close() };
}
