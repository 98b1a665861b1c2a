/**
 * storvisor runs TypeScript through tsx. A worker thread or child process does
 * not inherit a loader registered programmatically (bin/storvisor.js does that),
 * so every Worker and fork gets `--import tsx` explicitly, unless the parent was
 * itself started with it (as `node --import tsx --test` is).
 */
export function tsxExecArgv(): string[] {
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if ((a === '--import' || a === '--loader') && /tsx/.test(argv[i + 1] ?? '')) return argv;
    if (/^--(import|loader)=.*tsx/.test(a)) return argv;
  }
  return [...argv, '--import', import.meta.resolve('tsx')];
}
