import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { AvailableComponentsView } from '../../../src/fleet/view-types.js';
import { componentType, componentsUsed, missingComponents, missingComponentsMessage } from '../../../src/fleet/components.js';

/** What the collector's opamp extension reports (via the Supervisor), as the fleet stores it. */
function available(kinds: Record<string, string[]>): AvailableComponentsView['components'] {
  const out: AvailableComponentsView['components'] = {};
  for (const [kind, types] of Object.entries(kinds)) {
    out[kind] = {
      metadata: {},
      components: Object.fromEntries(types.map((t) => [t, { metadata: { 'code.namespace': `example.com/${t} v0.145.0` }, components: {} }])),
    };
  }
  return out;
}

const OUR_COLLECTOR = available({
  receivers: ['otlp', 'nop'],
  processors: ['batch', 'attributes', 'resource'],
  exporters: ['debug', 'file', 'nop'],
  extensions: ['opamp', 'health_check'],
  connectors: [],
});

describe('componentType', () => {
  it('is the id up to the first slash', () => {
    expect(componentType('otlp')).toBe('otlp');
    expect(componentType('otlp/2')).toBe('otlp');
    expect(componentType('attributes/marker/x')).toBe('attributes');
  });
});

describe('componentsUsed', () => {
  it('lists every defined component as sorted unique kind/type, names dropped', () => {
    const cfg = parse(`
receivers:
  otlp: {}
  otlp/internal: { protocols: { grpc: {} } }
processors:
  batch:
  attributes/marker: { actions: [] }
exporters:
  otlphttp/backend: { endpoint: https://example }
  debug: {}
connectors:
  forward: {}
extensions:
  health_check: {}
service:
  extensions: [health_check, opamp]
  pipelines:
    traces: { receivers: [otlp], processors: [batch], exporters: [forward] }
    traces/2: { receivers: [forward], exporters: [otlphttp/backend, debug] }
`);
    expect(componentsUsed(cfg)).toEqual([
      'connectors/forward',
      'exporters/debug',
      'exporters/otlphttp',
      'extensions/health_check',
      'processors/attributes',
      'processors/batch',
      'receivers/otlp',
    ]);
  });

  it('counts defined components even when no pipeline uses them (the collector refuses unknown types anyway)', () => {
    expect(componentsUsed({ exporters: { kafka: {} }, service: { pipelines: {} } })).toEqual(['exporters/kafka']);
  });

  it('skips sections that are absent, null or not mappings, and configs that are not mappings', () => {
    expect(componentsUsed({ receivers: null, processors: ['batch'], exporters: 'debug' })).toEqual([]);
    expect(componentsUsed(null)).toEqual([]);
    expect(componentsUsed('receivers: {}')).toEqual([]);
    expect(componentsUsed([])).toEqual([]);
  });
});

describe('missingComponents', () => {
  it('names the kind/type entries the agent lacks, sorted', () => {
    expect(missingComponents(['exporters/debug', 'processors/batch', 'receivers/otlp'], OUR_COLLECTOR)).toEqual([]);
    expect(missingComponents(['processors/memory_limiter', 'exporters/otlphttp', 'receivers/otlp', 'exporters/debug'], OUR_COLLECTOR)).toEqual([
      'exporters/otlphttp',
      'processors/memory_limiter',
    ]);
  });

  it('judges an empty kind as having none of that kind', () => {
    expect(missingComponents(['connectors/forward'], OUR_COLLECTOR)).toEqual(['connectors/forward']);
  });

  it('does not judge kinds the report does not contain', () => {
    const partial = available({ receivers: ['otlp'], exporters: ['debug'] });
    expect(missingComponents(['receivers/otlp', 'processors/batch', 'exporters/otlphttp'], partial)).toEqual(['exporters/otlphttp']);
  });

  it('cannot judge a report with none of the collector kinds (null)', () => {
    expect(missingComponents(['receivers/otlp'], {})).toBeNull();
    expect(missingComponents(['receivers/otlp'], available({ plugins: ['otlp'] }))).toBeNull();
  });

  it('does not match inherited object properties as component types', () => {
    expect(missingComponents(['exporters/constructor', 'exporters/toString'], OUR_COLLECTOR)).toEqual(['exporters/constructor', 'exporters/toString']);
  });

  it('end to end on a YAML config', () => {
    const cfg = parse('receivers: {otlp: {}}\nexporters: {otlphttp: {}}\nprocessors: {batch: {}}\nservice: {pipelines: {logs: {receivers: [otlp], processors: [batch], exporters: [otlphttp]}}}');
    const lacking = available({ receivers: ['otlp'], processors: [], exporters: ['debug'], extensions: [], connectors: [] });
    const missing = missingComponents(componentsUsed(cfg), lacking)!;
    expect(missingComponentsMessage(missing)).toBe('the agent lacks exporters/otlphttp, processors/batch');
  });
});
