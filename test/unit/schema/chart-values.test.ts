import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ChartValues } from '../../../src/schema/chart-values.js';

const defaults = parse(readFileSync('charts/fleetbridge/values.yaml', 'utf8')) as Record<string, unknown>;

describe('chart values', () => {
  it('the chart\'s own values.yaml is valid', () => {
    const r = ChartValues.safeParse(defaults);
    expect(r.success, JSON.stringify(r.error?.issues)).toBe(true);
  });

  it('refuses bad values with the path and the reason', () => {
    const bad = (patch: (v: Record<string, any>) => void) => {
      const v = structuredClone(defaults) as Record<string, any>;
      patch(v);
      const r = ChartValues.safeParse(v);
      return r.success ? 'accepted' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    };
    expect(bad((v) => (v['replicaCount'] = 0))).toMatch(/^replicaCount: /);
    expect(bad((v) => (v['bridge'].spec.auth.mode = 'password'))).toMatch(/^bridge\.spec\.auth\.mode: /);
    expect(bad((v) => (v['bridge'].spec.auth = { mode: 'mtls' }))).toContain('auth.mode mtls needs tls.secretName and tls.clientCASecretName');
    expect(bad((v) => (v['image'].pullPolicy = 'Sometimes'))).toMatch(/^image\.pullPolicy: /);
    expect(bad((v) => (v['typo'] = true))).toMatch(/typo/);
  });
});
