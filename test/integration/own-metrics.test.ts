/**
 * Agents' own metrics received by the bridge: a real OpAMP Supervisor (reports_own_metrics),
 * authenticated with a bearer token, is offered, by default, the bridge's admin endpoint as its
 * own_metrics destination with its own-metrics credential as a header; the collector it runs
 * exports its process metrics there with that header (the Supervisor writes the offered headers
 * into the collector's OTLP exporter: templates/owntelemetry.yaml), every 60 s (the Supervisor's
 * own-telemetry template sets no interval), and the bridge shows RSS and CPU seconds on the agent
 * and as per-Collector gauges. Requests without that credential are refused
 * (test/integration/admin-access.test.ts has the forgeries).
 *
 * Needs Go to build the binaries (tools/otel, cached in .cache/otel); pre-build with tools/otel/build.sh.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { AgentView } from '../../src/fleet/view-types.js';
import { ensureOtelBinaries, otelMissingReason } from '../harness/otel/binaries.js';
import { waitUntil } from '../harness/otel/processes.js';
import { startSupervisedCollector, type SupervisedCollector } from '../harness/otel/supervised-collector.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { bearerAuthManifests } from '../harness/bridge-process.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const FILE = 'test/integration/own-metrics.test.ts';
const skip = skipUnlessOnCi(FILE, otelMissingReason() === null ? null : 'go missing');
const GROUP = 'own-metrics';
const TOKEN = `agent-${randomUUID()}`;

describe.skipIf(skip)('own metrics of supervised collectors, received by the bridge', () => {
  let workDir: string;
  let bridge: TestBridge;
  let agent: SupervisedCollector | undefined;

  const describeState = async () => {
    const a = agent ? await bridge.getAgent(agent.instanceUid) : undefined;
    const received = bridge.logs.filter((l) => l['msg'] === 'Received own metrics');
    return [
      `agent view: ${JSON.stringify(a ? { ...a, effectiveConfig: a.effectiveConfig ? '(present)' : null, availableComponents: null } : a)?.slice(0, 4000)}`,
      `own-metrics requests received: ${JSON.stringify(received).slice(0, 3000)}`,
      `supervisor output tail:\n${agent?.logs().slice(-6000) ?? '(none)'}`,
    ].join('\n');
  };

  beforeAll(async () => {
    await ensureOtelBinaries({ log: (l) => console.log(`[otel-binaries] ${l}`) });
    workDir = await mkdtemp(join(tmpdir(), 'fleetbridge-own-metrics-'));
    bridge = await startTestBridge({
      manifests: { ...bearerAuthManifests(TOKEN), 'c.yaml': collectorYaml('measured', { 'test.group': GROUP }, { receivers: { nop: {} }, exporters: { nop: {} }, service: { pipelines: { metrics: { receivers: ['nop'], exporters: ['nop'] } } } }) },
    });
  }, 30 * 60_000);

  let failed = false;
  afterAll(async () => {
    await agent?.stop();
    await bridge?.stop();
    if (!workDir) return;
    if (failed) {
      // Post-mortem: the Supervisor's log (collector lines included) and its storage stay; the bridge's log beside them.
      await writeFile(join(workDir, 'bridge.log'), (bridge?.logs ?? []).map((l) => JSON.stringify(l)).join('\n') + '\n');
      console.log(`[own-metrics] failed: logs kept in ${workDir} (supervised/supervisor.log, supervised/storage/, bridge.log)`);
    } else await rm(workDir, { recursive: true, force: true });
  }, 60_000);

  it('offers the bridge as own_metrics destination, and keeps RSS and CPU seconds from two reports', async () => {
    onTestFailed(() => {
      failed = true;
    });
    const t0 = Date.now();
    agent = await startSupervisedCollector({
      endpoint: bridge.opampWsUrl,
      instanceUid: randomUUID(),
      attributes: { 'k8s.pod.name': `om-${randomUUID().slice(0, 8)}`, 'test.group': GROUP },
      workDir: join(workDir, 'supervised'),
      // No `--config yaml:service::telemetry::metrics::level: none` (the harness default): that
      // would switch the collector's own metrics off.
      extraConfig: { capabilities: { reports_own_metrics: true }, agent: { args: [] }, server: { endpoint: bridge.opampWsUrl, headers: { Authorization: `Bearer ${TOKEN}` } } },
    });
    const uid = agent.instanceUid;

    const offered = await waitUntil(async () => {
      const a = await bridge.getAgent(uid);
      return a?.connectionSettings?.offeredHash && a.capabilities.names.includes('ReportsOwnMetrics') ? a : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200, what: 'an own_metrics offer to the agent', describe: describeState });
    console.log(`[own-metrics] offered ${Date.now() - t0} ms after start: ${JSON.stringify(offered.connectionSettings)}`);

    // The collector's periodic reader exports every 60 s.
    const first = await waitUntil(async () => {
      const a = await bridge.getAgent(uid);
      return a?.resources?.rssBytes != null && a.resources.cpuSeconds != null ? a : undefined;
    }, { timeoutMs: 100_000, intervalMs: 500, what: 'a first own-metrics report', describe: describeState });
    const firstRes = first.resources!;
    console.log(`[own-metrics] first report ${Date.now() - t0} ms after start: ${JSON.stringify(firstRes)}`);
    const received = bridge.logs.filter((l) => l['msg'] === 'Received own metrics');
    console.log(`[own-metrics] what the collector sent: ${JSON.stringify(received[0])}`);
    const effective = Object.values(first.effectiveConfig ?? {})[0]?.body ?? '';
    console.log(`[own-metrics] effective config telemetry section: ${effective.slice(effective.indexOf('telemetry:'), effective.indexOf('telemetry:') + 800)}`);

    expect(firstRes.rssBytes).toBeGreaterThan(1_000_000);
    expect(firstRes.cpuSeconds).toBeGreaterThan(0);
    expect(Math.abs(Date.parse(firstRes.at) - Date.now())).toBeLessThan(120_000);
    const text = await bridge.metricsText();
    const gauge = (name: string, stat: string) => Number(new RegExp(`^${name}\\{namespace="default",collector="measured",stat="${stat}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(gauge('fleetbridge_collector_agents_rss_bytes', 'max')).toBeGreaterThan(1_000_000);
    expect(gauge('fleetbridge_collector_agents_cpu_seconds', 'sum')).toBeGreaterThan(0);
    expect(text).toMatch(/^fleetbridge_own_metrics_resources_total\{result="matched"\} [1-9]/m);
    // Every request carried the agent's own credential: none was refused.
    expect(text).not.toMatch(/^fleetbridge_own_metrics_requests_total\{outcome="(unauthenticated|forbidden)"\} [1-9]/m);
    // The Collector's status summary: totals and max, never per-agent lists.
    const summary = (await bridge.getCollector('measured'))?.status.resources;
    expect(summary?.agents).toBe(1);
    expect(summary?.memoryTotalBytes).toBeGreaterThan(1_000_000);
    expect(summary?.memoryMaxBytes).toBe(summary?.memoryTotalBytes);
    expect(summary?.cpuSecondsTotal).toBeGreaterThan(0);

    // A second export, 60 s after the first: CPU seconds are cumulative and grow.
    const second: AgentView = await waitUntil(async () => {
      const a = await bridge.getAgent(uid);
      return a?.resources && a.resources.at !== firstRes.at ? a : undefined;
    }, { timeoutMs: 90_000, intervalMs: 500, what: 'a second own-metrics report', describe: describeState });
    console.log(`[own-metrics] second report ${Date.now() - t0} ms after start: ${JSON.stringify(second.resources)}`);
    expect(Date.parse(second.resources!.at)).toBeGreaterThan(Date.parse(firstRes.at));
    // Cumulative: never lower. An idle collector used ~0.02 s of CPU per minute here, and the figure
    // has 10 ms steps, so "strictly more" could flake on a quiet machine.
    expect(second.resources!.cpuSeconds!).toBeGreaterThanOrEqual(firstRes.cpuSeconds!);
    expect(second.resources!.rssBytes!).toBeGreaterThan(1_000_000);
  }, 300_000);
});
