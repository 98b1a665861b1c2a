#!/usr/bin/env node
// Compiles the guest entry points (src/deploy/guest/{worker,process}-main.ts
// and everything they import) to JavaScript in build/guest/ at `npm install`,
// so a guest starts without tsx transforming TypeScript in every new worker or
// process (0.5-1.5 s per start). build/guest/manifest.json lists every input
// with its size and mtime: a guest whose sources changed since falls back to
// tsx (src/deploy/guest/entry.ts). A failure here never fails the install.
import { statSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build', 'guest');
const say = (m) => process.stderr.write(`storvisor: ${m}\n`);

try {
  const esbuild = await import('esbuild');
  const started = Date.now();
  rmSync(out, { recursive: true, force: true });
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: ['src/deploy/guest/worker-main.ts', 'src/deploy/guest/process-main.ts'],
    outdir: out,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  const inputs = {};
  for (const file of Object.keys(result.metafile.inputs)) {
    const st = statSync(join(root, file));
    inputs[relative(root, join(root, file))] = { size: st.size, mtimeMs: st.mtimeMs };
  }
  writeFileSync(join(out, 'manifest.json'), JSON.stringify({ builtAt: new Date().toISOString(), inputs }, null, 1));
  say(`guest code compiled to build/guest in ${((Date.now() - started) / 1000).toFixed(1)} s (${Object.keys(inputs).length} sources)`);
} catch (err) {
  say(`could not compile the guest code (${err?.message ?? err}); guests will start through tsx (slower restarts)`);
}
