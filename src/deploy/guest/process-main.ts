import { Socket } from 'node:net';
import { LineChannel } from './line-channel.ts';
import { attachGuestRegion } from './process-region.ts';
import { runGuest } from './guest-runtime.ts';
import type { ProcessBootData, ToGuest, ToProcessGuest } from './messages.ts';

/**
 * Entry of a process guest: fd 3 is its channel to the controller (JSON
 * lines), fd 4 its region (a memfd), fds 5 and 6 the kick and call eventfds.
 * The first message is `boot`. When the channel closes (the controller went
 * away), the guest ends: it serves nobody without its controller.
 */
const socket = new Socket({ fd: 3, readable: true, writable: true });
let handler: ((m: ToGuest) => void) | undefined;
let booted = false;
const channel = new LineChannel(
  socket,
  16 * 1024 * 1024,
  (m) => {
    const msg = m as ToProcessGuest;
    if (msg.type === 'boot') {
      if (booted) return;
      booted = true;
      void boot(msg.data);
    } else {
      handler?.(msg);
    }
  },
  (why) => {
    process.stderr.write(`process guest: bad message from the controller (${why})\n`);
    process.exit(71);
  },
);
socket.on('close', () => process.exit(booted ? 0 : 72));

async function boot(data: ProcessBootData): Promise<void> {
  const { region } = attachGuestRegion({ region: 4, kick: 5, call: 6 }, data.regionBytes);
  await runGuest(
    data,
    region,
    {
      send: (m) => channel.send(m),
      onMessage: (h) => (handler = h),
      close: () => {
        channel.close();
        // Give the last line time to leave, then end (the function's servers are closed).
        setTimeout(() => process.exit(0), 50).unref();
      },
    },
    data.regionBytes,
  );
}
