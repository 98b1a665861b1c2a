#!/usr/bin/env node
// Part of `npm test`: on a machine prepared by .ci/run (Linux with a C toolchain)
// the native addon must have been built by `npm install`, so the io_uring
// engine is tested rather than silently replaced by the fallback.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const addon = join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release', 'storvisor.node');
if (process.platform === 'linux' && !existsSync(addon)) {
  process.stderr.write(`npm test: the native addon is not built (${addon}).\nRun npm install with a C compiler (apt-get install build-essential); the io_uring engine's tests need it.\n`);
  process.exit(1);
}
