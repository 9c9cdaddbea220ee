import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { parse } from 'yaml';
import { renderCrdFiles } from '../../../src/schema/v1alpha1/crd-files.js';
import { renderValuesSchema } from '../../../src/schema/chart-values.js';

describe('generated CRDs', () => {
  it('match the committed crds/ and the chart\'s crds/ exactly (run npm run gen:crds after changing a schema)', () => {
    const files = renderCrdFiles();
    for (const dir of ['crds', 'charts/fleetbridge/crds']) {
      expect(readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()).toEqual([...files.keys()].sort());
      for (const [name, text] of files) {
        expect(readFileSync(`${dir}/${name}`, 'utf8') === text, `${dir}/${name} is stale: run npm run gen:crds`).toBe(true);
      }
    }
  });

  it('the chart\'s values.schema.json matches src/schema/chart-values.ts (run npm run gen:crds)', () => {
    expect(readFileSync('charts/fleetbridge/values.schema.json', 'utf8') === renderValuesSchema(), 'charts/fleetbridge/values.schema.json is stale: run npm run gen:crds').toBe(true);
  });

  it('are structural: no node has both properties and additionalProperties, every typed node is typed', () => {
    const walk = (n: unknown, path: string): void => {
      if (!n || typeof n !== 'object' || Array.isArray(n)) return;
      const o = n as Record<string, unknown>;
      expect('properties' in o && 'additionalProperties' in o, `${path} has properties and additionalProperties`).toBe(false);
      expect('anyOf' in o && !('type' in o) && o['x-kubernetes-preserve-unknown-fields'] !== true, `${path} is an untyped anyOf`).toBe(false);
      for (const [k, v] of Object.entries(o)) if (k !== 'default' && k !== 'enum' && k !== 'x-kubernetes-validations') walk(v, `${path}.${k}`);
    };
    for (const text of renderCrdFiles().values()) walk(parse(text), 'crd');
  });
});
