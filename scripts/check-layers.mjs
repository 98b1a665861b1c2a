#!/usr/bin/env node
// The layer check: every import in src/ points down the stack, and no files
// import each other in a cycle. Run by `npm test`; prints each offending arrow.
//
//   node scripts/check-layers.mjs [srcDir]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** Bottom to top. A file may import its own layer or any layer listed before it. */
export const LAYERS = [
  'util', 'native', 'config',
  'block', 'net', 'nbd', 'storage', 'queue',
  'functions', 'deploy', 'controller', 'api', 'cli.ts',
];

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bnew URL\(\s*)(['"])(\.{1,2}\/[^'"]+)\1/g;

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : /\.(ts|mts|mjs)$/.test(name) ? [p] : [];
  });
}

function layerOf(root, file) {
  const top = path.relative(root, file).split(path.sep)[0];
  const i = LAYERS.indexOf(top);
  if (i < 0) throw new Error(`${path.relative(root, file)}: folder '${top}' is not a layer; add it to LAYERS in scripts/check-layers.mjs`);
  return i;
}

/** Returns the problems found under root, as printable lines. */
export function checkLayers(root) {
  const files = walk(root);
  const edges = new Map(files.map((f) => [f, []]));
  const problems = [];
  for (const file of files) {
    layerOf(root, file); // every file sits in a known layer, even one that imports nothing
    const text = readFileSync(file, 'utf8').replace(/^\s*(\/\/|\*|\/\*).*$/gm, '');
    for (const m of text.matchAll(IMPORT)) {
      const target = path.normalize(path.join(path.dirname(file), m[2]));
      if (!edges.has(target)) continue; // assets, JSON, files outside src/
      edges.get(file).push(target);
      const from = layerOf(root, file), to = layerOf(root, target);
      if (to > from) {
        problems.push(`upward import: ${path.relative(root, file)} (${LAYERS[from]}) -> ${path.relative(root, target)} (${LAYERS[to]})`);
      }
    }
  }
  // Tarjan's strongly connected components: any component of more than one file is a cycle.
  let index = 0;
  const idx = new Map(), low = new Map(), stack = [], onStack = new Set();
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++;
    stack.push(v); onStack.add(v);
    for (const w of edges.get(v)) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do { w = stack.pop(); onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1) problems.push(`import cycle: ${scc.map((f) => path.relative(root, f)).sort().join(' <-> ')}`);
    }
  };
  for (const f of files) if (!idx.has(f)) visit(f);
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = path.resolve(process.argv[2] ?? 'src');
  const problems = checkLayers(root);
  for (const p of problems) console.error(`storvisor layers: ${p}`);
  if (problems.length > 0) {
    console.error(`storvisor layers: ${problems.length} problem(s); the order is ${LAYERS.join(' < ')} (docs/ARCHITECTURE.md)`);
    process.exit(1);
  }
  console.log(`storvisor layers: ${LAYERS.length} layers, imports point down, no cycles`);
}
