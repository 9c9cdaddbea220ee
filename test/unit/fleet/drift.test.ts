import { describe, expect, it } from 'vitest';
import { configDifferences } from '../../../src/fleet/drift.js';

const desired = {
  receivers: { otlp: { protocols: { grpc: {}, http: { endpoint: '0.0.0.0:4318' } } } },
  processors: { attributes: { actions: [{ key: 'env', value: 'prod', action: 'insert' }] }, batch: { send_batch_size: 8192 } },
  exporters: { otlphttp: { endpoint: 'https://b.example', headers: { authorization: 'Bearer s3cret' } } },
  service: { extensions: ['health_check'], pipelines: { logs: { receivers: ['otlp'], processors: ['attributes', 'batch'], exporters: ['otlphttp'] } } },
  extensions: { health_check: {} },
};

describe('configDifferences', () => {
  it('accepts an effective config that is the desired one plus defaults, Supervisor sections and redaction', () => {
    const effective = {
      receivers: { otlp: { protocols: { grpc: { endpoint: 'localhost:4317', max_recv_msg_size_mib: 4 }, http: { endpoint: '0.0.0.0:4318', cors: null } } } },
      processors: { attributes: { actions: [{ key: 'env', value: 'prod', action: 'insert', from_attribute: '' }] }, batch: { send_batch_size: '8192', timeout: '200ms' } },
      exporters: { otlphttp: { endpoint: 'https://b.example', headers: { authorization: '[REDACTED]' }, compression: 'gzip' } },
      extensions: { health_check: { endpoint: 'localhost:13133' }, opamp: { server: { ws: { endpoint: 'ws://127.0.0.1:1234' } } } },
      service: { extensions: ['health_check', 'opamp'], telemetry: { metrics: { level: 'None' } }, pipelines: { logs: { receivers: ['otlp'], processors: ['attributes', 'batch'], exporters: ['otlphttp'] } } },
    };
    expect(configDifferences(desired, effective)).toEqual([]);
  });

  it('does not judge values the collector resolves itself (${env:...})', () => {
    expect(configDifferences({ exporters: { file: { path: '${env:OUT}/logs.jsonl' } } }, { exporters: { file: { path: '/tmp/x/logs.jsonl' } } })).toEqual([]);
  });

  it('names a locally overridden value', () => {
    const effective = structuredClone(desired) as any;
    effective.processors.attributes.actions[0].value = 'local';
    expect(configDifferences(desired, effective)).toEqual(['processors.attributes.actions[0].value: expected "prod", found "local"']);
  });

  it('catches a collector that fell back to an empty or nop config while healthy', () => {
    const nop = { receivers: { nop: {} }, exporters: { nop: {} }, service: { pipelines: { logs: { receivers: ['nop'], exporters: ['nop'] } } } };
    const d = configDifferences(desired, nop);
    expect(d).toContain('receivers.otlp: missing');
    expect(d).toContain('service.pipelines.logs.receivers: expected ["otlp"], found ["nop"]');
    expect(configDifferences(desired, {}).length).toBeGreaterThan(0);
  });

  it('names a missing pipeline component and a missing service extension', () => {
    const effective = structuredClone(desired) as any;
    effective.service.pipelines.logs.processors = ['batch'];
    effective.service.extensions = ['opamp'];
    expect(configDifferences(desired, effective)).toEqual([
      'service.extensions: "health_check" missing',
      'service.pipelines.logs.processors: expected ["attributes","batch"], found ["batch"]',
    ]);
  });

  it('does not count a scalar the collector left out as drift (it omits zero values), but does a changed one', () => {
    const want = { exporters: { debug: { verbosity: 'basic' } } };
    expect(configDifferences(want, { exporters: { debug: {} } })).toEqual([]);
    expect(configDifferences(want, { exporters: { debug: { verbosity: 'detailed' } } })).toEqual(['exporters.debug.verbosity: expected "basic", found "detailed"']);
    // A whole component (a map) that is missing still is.
    expect(configDifferences(want, { exporters: {} })).toEqual(['exporters.debug: missing']);
  });
});
