// Entry of a guest worker thread. Module loader hooks registered in the
// controller do not reach worker threads on Node 20, so the worker registers
// tsx itself before loading the TypeScript guest.
import { register } from 'tsx/esm/api';

register();
await import('./worker-main.ts');
