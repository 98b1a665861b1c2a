import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: a plain .mjs script without type declarations
import { checkLayers } from '../../scripts/check-layers.mjs';
import { tempDir } from '../helpers/tmp.ts';

const srcDir = fileURLToPath(new URL('../../src', import.meta.url));

function tree(t: TestContext, files: Record<string, string>): string {
  const root = tempDir(t, 'storvisor-layers-');
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    writeFileSync(path.join(root, name), text);
  }
  return root;
}

test('the source tree has no upward import and no cycle', () => {
  assert.deepEqual(checkLayers(srcDir), []);
});

test('an import from storage up into the controller is reported', (t) => {
  const root = tree(t, {
    'storage/volume.ts': "import { Controller } from '../controller/controller.ts';\n",
    'controller/controller.ts': 'export class Controller {}\n',
  });
  assert.deepEqual(checkLayers(root), ['upward import: storage/volume.ts (storage) -> controller/controller.ts (controller)']);
});

test('two files of one layer importing each other are reported as a cycle', (t) => {
  const root = tree(t, {
    'queue/a.ts': "import type { B } from './b.ts';\nexport type A = B;\n",
    'queue/b.ts': "import type { A } from './a.ts';\nexport type B = A | 1;\n",
  });
  assert.deepEqual(checkLayers(root), ['import cycle: queue/a.ts <-> queue/b.ts']);
});

test('a folder that is not a layer is refused by name', (t) => {
  const root = tree(t, { 'misc/x.ts': 'export {};\n' });
  assert.throws(() => checkLayers(root), /folder 'misc' is not a layer/);
});
