/**
 * Writes deploy/ from the Helm chart (run: npm run gen:deploy). Builds helm first when it is not
 * cached (from the Go module proxy, as the tests do); test/integration/helm-chart.test.ts
 * regenerates and fails on any difference.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureHelmBinary } from '../tools/build/helm-binary.mjs';
import { renderDeploy } from './render-deploy.mjs';

const { helm } = await ensureHelmBinary({ log: (l) => console.error(l) });
mkdirSync('deploy', { recursive: true });
for (const [name, text] of await renderDeploy(helm)) {
  writeFileSync(join('deploy', name), text);
  console.log(`wrote ${join('deploy', name)}`);
}
