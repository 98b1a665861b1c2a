#!/usr/bin/env node
// The storvisor launcher. It sizes libuv's thread pool before anything can
// start it (the pool is created on first use and never resized): the backend
// engine keeps up to this many disk requests in flight, so queue-depth-32
// workloads need well over the default 4. Then it loads the TypeScript CLI
// and exits with its code (0 ok, 1 failed, 2 usage).
process.env.UV_THREADPOOL_SIZE ??= '64';
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/cli.ts');
process.exit(await main(process.argv.slice(2)));
