/**
 * A Collector written with YAML anchors and merge keys, against the real OpenTelemetry Collector
 * behind the OpAMP Supervisor (docs/adr/0009-yaml-as-the-collector-reads-it.md): the bridge pushes
 * the expanded config, the collector applies it, the agent shows no drift, and the effective config
 * the collector reports holds what the author meant (merged maps, 0777 as the octal integer 511,
 * quoted "0777" and "yes" still strings).
 *
 * Needs Go to build the binaries (tools/otel, cached in .cache/otel); pre-build with tools/otel/build.sh.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configDifferences, parseConfigBody } from '../../src/fleet/drift.js';
import { parseConfigYaml } from '../../src/render/yaml.js';
import { ensureOtelBinaries, otelMissingReason } from '../harness/otel/binaries.js';
import { freePort } from '../harness/otel/otlp.js';
import { waitUntil } from '../harness/otel/processes.js';
import { startSupervisedCollector, type SupervisedCollector } from '../harness/otel/supervised-collector.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const FILE = 'test/integration/yaml-readings.test.ts';
const skip = skipUnlessOnCi(FILE, otelMissingReason() === null ? null : 'go missing');
const GROUP = 'yaml-readings';

describe.skipIf(skip)('YAML merge keys and Go scalar readings, end to end', () => {
  let workDir: string;
  let bridge: TestBridge;
  let agent: SupervisedCollector | undefined;
  let otlpPort: number;

  /** As the author wrote it: anchors, merge keys, an octal integer, strings that look like other types. */
  const anchored = () =>
    [
      'receivers:',
      '  otlp:',
      '    protocols:',
      `      http: {endpoint: "127.0.0.1:${otlpPort}"}`,
      'processors:',
      '  batch/a: &batch',
      '    timeout: 200ms',
      '    send_batch_size: 0777',
      '  batch/b:',
      '    <<: *batch',
      '    timeout: 1s',
      '  attributes/marker:',
      '    actions:',
      '      - &marker {action: insert, key: test.octal, value: "0777"}',
      '      - {<<: *marker, key: test.yes, value: "yes"}',
      'exporters:',
      '  nop: {}',
      'service:',
      '  pipelines:',
      '    logs:',
      '      receivers: [otlp]',
      '      processors: [attributes/marker, batch/a, batch/b]',
      '      exporters: [nop]',
      '',
    ].join('\n');

  /** What the author meant, with nothing left to expand. */
  const meant = () => ({
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlpPort}` } } } },
    processors: {
      'batch/a': { timeout: '200ms', send_batch_size: 511 },
      'batch/b': { timeout: '1s', send_batch_size: 511 },
      'attributes/marker': {
        actions: [
          { action: 'insert', key: 'test.octal', value: '0777' },
          { action: 'insert', key: 'test.yes', value: 'yes' },
        ],
      },
    },
    exporters: { nop: {} },
    service: { pipelines: { logs: { receivers: ['otlp'], processors: ['attributes/marker', 'batch/a', 'batch/b'], exporters: ['nop'] } } },
  });

  beforeAll(async () => {
    await ensureOtelBinaries({ log: (l) => console.log(`[otel-binaries] ${l}`) });
    workDir = await mkdtemp(join(tmpdir(), 'fleetbridge-yaml-'));
    otlpPort = await freePort();
    bridge = await startTestBridge({ manifests: { 'c.yaml': collectorYaml('anchored', { 'test.group': GROUP }, anchored()) } });
  }, 30 * 60_000);

  afterAll(async () => {
    await agent?.stop();
    await bridge?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  }, 60_000);

  it('the collector applies a config written with anchors and merge keys, with no drift, as the author meant it', async () => {
    const col = await bridge.getCollector('anchored');
    expect(col, JSON.stringify(await bridge.getCollectors())).toBeDefined();

    agent = await startSupervisedCollector({
      endpoint: bridge.opampWsUrl,
      healthcheckPort: await freePort(),
      attributes: { 'test.group': GROUP, 'k8s.pod.name': `yaml-${randomUUID().slice(0, 8)}` },
      otlpPort,
      workDir: join(workDir, 'supervised'),
    });
    const uid = agent.instanceUid;
    const a = await waitUntil(
      async () => {
        const v = await bridge.getAgent(uid);
        return v && v.remoteConfig.inSync && v.health?.healthy === true && v.drift?.drifted === false ? v : undefined;
      },
      {
        timeoutMs: 90_000,
        intervalMs: 200,
        what: `agent ${uid} APPLIED, healthy and judged not drifted`,
        describe: async () => `${JSON.stringify(await bridge.getAgent(uid), null, 1)?.slice(0, 6000)}\nsupervisor output:\n${agent?.logs().slice(-5000)}`,
      },
    );
    expect(a.remoteConfig.status).toBe('APPLIED');
    expect(a.remoteConfig.collectors).toEqual(['default/anchored']);
    expect(a.drift).toEqual({ drifted: false, differences: [] });

    const body = Object.values(a.effectiveConfig ?? {})[0]?.body;
    expect(body, 'effective config').toBeTypeOf('string');
    console.log(`[yaml-readings] effective config reported by the collector:\n${body}`);
    const effective = parseConfigBody(body!) as Record<string, Record<string, Record<string, unknown>>>;
    // Everything the author meant is in what the collector runs ...
    expect(configDifferences(meant(), effective)).toEqual([]);
    // ... with the collector's own types, read by the collector's own library.
    expect(effective['processors']!['batch/a']!['send_batch_size']).toBe(511);
    expect(effective['processors']!['batch/b']!['timeout']).toBe('1s');
    const actions = effective['processors']!['attributes/marker']!['actions'] as Record<string, unknown>[];
    expect(actions.map((x) => [x['key'], x['value']])).toEqual([
      ['test.octal', '0777'],
      ['test.yes', 'yes'],
    ]);
    // No merge key or anchor reached the agent.
    expect(body).not.toMatch(/<<|&batch|\*batch/);
    expect(parseConfigYaml(anchored())).toMatchObject(meant());
  }, 180_000);
});
