/**
 * Abuse: an agent that reports secret values back in every form a YAML or JSON writer gives them —
 * effective configs (block scalars at other indentations, folded, double- and single-quoted with
 * escapes, JSON, ASCII-only JSON), a FAILED status, health, package statuses, a drifted config —
 * against a real bridge process whose Collector pushes a multi-line PEM key and a value with
 * control characters. Neither value, nor any line of 8+ characters of one (nor its first 16
 * characters), may appear in the API,
 * /metrics or the bridge's logs; a bystander agent keeps being answered within 2 s throughout.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify, type ToStringOptions } from 'yaml';
import { collectorYaml, opampBridgeYaml, secretYaml, startBridgeProcess, waitUntil, type BridgeProcess } from '../harness/bridge-process.js';
import { startBystander, type Bystander } from '../harness/bystander.js';
import { RawWsAgent } from '../harness/raw-agent.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';

const PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const CTL = `ctl-\u0001-"q"-'s'-\\-\t-é-😀-\r\n-${Date.now()}-end`;
const VALUES = [PEM, CTL];
const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsEffectiveConfig | C.ReportsPackageStatuses | C.ReportsHealth | C.ReportsRemoteConfig;

/** What must never be shown: each value, and each of its lines of 8+ characters, raw and as JSON escapes it. */
function forbidden(): string[] {
  const out = new Set<string>();
  for (const v of VALUES) {
    const lines = v.split(/\r\n|\n/).map((l) => l.trim());
    // The value, its lines of 8+ characters, and the first 16 characters of longer ones (what a truncated message quotes).
    for (const s of [v, v.trim(), ...lines.filter((l) => l.length >= 8), ...lines.filter((l) => l.length > 16).map((l) => l.slice(0, 16))]) {
      out.add(s);
      out.add(JSON.stringify(s).slice(1, -1));
    }
  }
  return [...out];
}

/** The config as pushed, re-written the ways agents write it back. */
function effectiveForms(config: unknown): string[] {
  const opts: ToStringOptions[] = [
    { indent: 4 },
    { indent: 8, blockQuote: 'folded' },
    { defaultStringType: 'QUOTE_DOUBLE', lineWidth: 24, minContentWidth: 0 },
    { defaultStringType: 'QUOTE_SINGLE', lineWidth: 30 },
    { defaultStringType: 'BLOCK_LITERAL', indent: 3 },
    { defaultStringType: 'BLOCK_FOLDED', lineWidth: 20 },
  ];
  return [
    ...opts.map((o) => stringify(config, o)),
    JSON.stringify(config),
    JSON.stringify(config, null, 2).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
  ];
}

describe('abuse: secret values reported back in every form', () => {
  let bridge: BridgeProcess;
  let bystander: Bystander;

  beforeAll(async () => {
    const config = {
      receivers: { otlp: { protocols: { grpc: {} } } },
      exporters: { otlphttp: { endpoint: 'https://ingest.example', headers: { 'x-api-key': '${secret:keys/ctl}' }, tls: { key_pem: '${secret:keys/tls.key}' } } },
      service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlphttp'] } } },
    };
    bridge = await startBridgeProcess({
      manifests: {
        'bridge.yaml': opampBridgeYaml({ auth: { mode: 'none' } }),
        'keys.yaml': secretYaml('keys', { 'tls.key': PEM, ctl: CTL }),
        'secure.yaml': collectorYaml('secure', { role: 'secure' }, config).replace('spec:\n', 'spec:\n  secretRefs: [{ name: keys }]\n'),
      },
    });
    bystander = await startBystander(bridge.opampWsUrl);
  }, 120_000);

  afterAll(async () => {
    await bystander?.stop().catch(() => undefined);
    await bridge?.stop();
  });

  it('shows neither value nor a line of one anywhere, and keeps answering a bystander', async () => {
    const agent = await RawWsAgent.connect(bridge.opampWsUrl);
    const attrs = [{ key: 'service.name', value: { stringValue: 'abuser' } }, { key: 'role', value: { stringValue: 'secure' } }];
    agent.send({ agentDescription: { identifyingAttributes: attrs }, capabilities: CAPS, remoteConfigStatus: {} });
    await agent.waitForMessages(1, 10_000);
    const pushed = await waitUntil(() => agent.received.find((m) => m.remoteConfig)?.remoteConfig, { timeoutMs: 15_000, what: 'a remote config', describe: () => bridge.describe() });
    const body = Buffer.from(pushed.config!.configMap!['']!.body!).toString('utf8');
    const hash = pushed.configHash!;
    for (const v of VALUES) expect(body.includes(v) || JSON.stringify(parse(body)).includes(JSON.stringify(v))).toBe(true);
    const config = parse(body) as Record<string, unknown>;

    const shown: [string, string][] = [];
    const snapshot = async (label: string) => {
      shown.push([`${label}: /api/v1/agents`, JSON.stringify(await bridge.getAgents())]);
      shown.push([`${label}: /api/v1/collectors`, JSON.stringify(await bridge.getCollectors())]);
    };
    const report = async (fields: Record<string, unknown>) => {
      const n = agent.received.length;
      agent.send({ capabilities: CAPS, ...fields });
      await agent.waitForMessages(n + 1, 10_000);
    };

    // The effective config in each form, each reported APPLIED.
    const forms = effectiveForms(config);
    let previous: string | undefined;
    for (const [i, text] of forms.entries()) {
      await report({ remoteConfigStatus: { lastRemoteConfigHash: hash, status: 1 }, effectiveConfig: { configMap: { configMap: { '': { body: Buffer.from(text), contentType: 'text/yaml' } } } } });
      const view = await waitUntil(async () => {
        const a = await bridge.getAgent(agent.uidString);
        const b = a?.effectiveConfig?.['']?.body;
        return b !== undefined && b !== previous ? a : undefined;
      }, { timeoutMs: 10_000, what: `effective config form ${i} stored` });
      previous = view.effectiveConfig!['']!.body;
      expect(previous).toContain('[REDACTED]');
      shown.push([`form ${i}: drift`, JSON.stringify(view.drift ?? null)]);
      await snapshot(`form ${i}`);
    }

    // A FAILED status, health and package statuses quoting the values.
    const quoted = VALUES.map((v, i) => (i === 0 ? `bad key:\n${v}` : `bad header ${JSON.stringify(v)}`)).join('; ');
    await report({
      remoteConfigStatus: { lastRemoteConfigHash: hash, status: 3, errorMessage: quoted },
      health: { healthy: false, status: `StatusRecoverableError ${CTL}`, lastError: quoted, componentHealthMap: { 'exporter:otlphttp': { healthy: false, status: PEM, lastError: `tls: ${JSON.stringify(PEM)}` } } },
      packageStatuses: { packages: { p: { name: 'p', status: 3, errorMessage: quoted } }, errorMessage: `'${CTL.replaceAll("'", "''")}'` },
    });
    await waitUntil(async () => (await bridge.getAgent(agent.uidString))?.remoteConfig.status === 'FAILED', { timeoutMs: 10_000, what: 'FAILED stored' });
    await snapshot('failed');

    // Drifted: APPLIED, but running another endpoint, with the key as a literal block at Go's indentation.
    const drifted = structuredClone(config) as { exporters: { otlphttp: { endpoint: string; tls: { key_pem: string } } } };
    drifted.exporters.otlphttp.endpoint = 'https://elsewhere.example';
    drifted.exporters.otlphttp.tls.key_pem = `${PEM}extra-line-of-key-material\n`;
    await report({
      remoteConfigStatus: { lastRemoteConfigHash: hash, status: 1 },
      effectiveConfig: { configMap: { configMap: { '': { body: Buffer.from(stringify(drifted, { indent: 4 })), contentType: 'text/yaml' } } } },
    });
    const view = await waitUntil(async () => {
      const a = await bridge.getAgent(agent.uidString);
      return a?.drift?.drifted ? a : undefined;
    }, { timeoutMs: 20_000, what: 'drift judged', describe: () => bridge.describe() });
    expect(view.drift!.differences.join('\n')).toContain('elsewhere');
    await snapshot('drifted');
    await waitUntil(() => bridge.logs.some((l) => String(l['msg']).includes('differs from the one it applied') || String(l['msg']).includes('once more')), { timeoutMs: 10_000, what: 'drift logged' });

    shown.push(['/metrics', await bridge.metricsText()]);
    shown.push(['logs', JSON.stringify(bridge.logs)]);
    const leaks = shown.flatMap(([where, text]) => forbidden().filter((f) => text.includes(f)).map((f) => `${where} shows ${JSON.stringify(f).slice(0, 60)}`));
    expect([...new Set(leaks)]).toEqual([]);
    expect(shown.find(([w]) => w.startsWith('failed: /api/v1/agents'))![1]).toContain('[REDACTED]');

    expect(bystander.worstMs()).toBeLessThan(2000);
    agent.close();
  }, 120_000);
});
