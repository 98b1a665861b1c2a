// Entry of a compression worker thread. Module loader hooks registered in the main
// thread do not reach worker threads on Node 20, so the worker registers tsx itself
// before loading the TypeScript worker body.
import { register } from 'tsx/esm/api';

register();
await import('./compress-worker-main.ts');
