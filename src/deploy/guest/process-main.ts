import { Socket } from 'node:net';
import { loadFunction } from '../../functions/registry.ts';
import { LineChannel } from './line-channel.ts';
import { attachGuestRegion } from './process-region.ts';
import { runGuest } from './guest-runtime.ts';
import type { FromGuest, ToGuest } from './messages.ts';

/**
 * Entry of a process guest: fd 3 is its channel to the controller (JSON
 * lines), fd 4 its region (a memfd), fds 5 and 6 the kick and call eventfds.
 * `prepare` maps the region and loads the function's code; `boot` starts it
 * (a warm standby waits in between). When the channel closes (the controller
 * went away), the guest ends: it serves nobody without its controller.
 */
const socket = new Socket({ fd: 3, readable: true, writable: true });
let handler: ((m: ToGuest) => void) | undefined;
let region: ArrayBuffer | undefined;
let regionBytes = 0;
let booted = false;
const channel = new LineChannel(
  socket,
  16 * 1024 * 1024,
  (m) => {
    const msg = m as ToGuest;
    if (msg.type === 'prepare') {
      if (region) return;
      regionBytes = msg.regionBytes;
      region = attachGuestRegion({ region: 4, kick: 5, call: 6 }, regionBytes).region;
      // Warm the module cache; a failure is reported at boot.
      loadFunction(msg.functionName).then(
        () => channel.send({ type: 'prepared' } satisfies FromGuest),
        () => {},
      );
    } else if (msg.type === 'boot') {
      if (booted || !region) return;
      booted = true;
      void runGuest(
        msg.data,
        region,
        {
          send: (out) => channel.send(out),
          onMessage: (h) => (handler = h),
          close: () => {
            channel.close();
            // Give the last line time to leave, then end (the function's servers are closed).
            setTimeout(() => process.exit(0), 50).unref();
          },
        },
      );
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
