import { stringify } from 'yaml';
import { buildCrds } from './crd.js';

export const GENERATED_HEADER = '# Generated from src/schema/v1alpha1 by `npm run gen:crds` — do not edit.\n';

/** File name → YAML text of every CRD, exactly as committed. */
export function renderCrdFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const { fileName, crd } of buildCrds()) files.set(fileName, GENERATED_HEADER + stringify(crd, { lineWidth: 0 }));
  return files;
}
