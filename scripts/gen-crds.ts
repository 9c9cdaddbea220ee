/**
 * Writes the CRDs generated from the zod schemas to crds/ (run: npm run gen:crds).
 * test/unit/schema/crds.test.ts regenerates them and fails on any difference.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { renderCrdFiles } from '../src/schema/v1alpha1/crd-files.js';

const out = resolve(process.argv[2] ?? 'crds');
mkdirSync(out, { recursive: true });
for (const [name, text] of renderCrdFiles()) {
  writeFileSync(join(out, name), text);
  console.log(`wrote ${join(out, name)}`);
}
