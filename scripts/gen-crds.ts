/**
 * Writes what is generated from the zod schemas (run: npm run gen:crds): the CRDs to crds/ and to
 * the chart's crds/, and the chart's values.schema.json. test/unit/schema/crds.test.ts
 * regenerates them and fails on any difference.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { renderCrdFiles } from '../src/schema/v1alpha1/crd-files.js';
import { renderValuesSchema } from '../src/schema/chart-values.js';

const root = resolve(process.argv[2] ?? '.');
const write = (path: string, text: string) => {
  writeFileSync(path, text);
  console.log(`wrote ${path}`);
};
for (const dir of ['crds', 'charts/fleetbridge/crds']) {
  mkdirSync(join(root, dir), { recursive: true });
  for (const [name, text] of renderCrdFiles()) write(join(root, dir, name), text);
}
write(join(root, 'charts/fleetbridge/values.schema.json'), renderValuesSchema());
