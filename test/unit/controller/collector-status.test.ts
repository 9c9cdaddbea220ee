import { describe, expect, it } from 'vitest';
import { buildCollectorStatus, emptyStatus } from '../../../src/controller/collector-status.js';

const t0 = new Date('2026-11-25T10:00:00Z');
const t1 = new Date('2026-11-25T10:05:00Z');
const cond = (s: ReturnType<typeof buildCollectorStatus>, type: string) => s.conditions.find((c) => c.type === type)!;

describe('buildCollectorStatus', () => {
  it('is Ready with AllApplied when every matched agent applied', () => {
    const s = buildCollectorStatus({ generation: 3, configHash: 'h', issues: [], lastGoodInEffect: false, counts: { ...emptyStatus(), matched: 2, connected: 2, applied: 2, healthy: 2 }, previous: undefined, now: t0 });
    expect(cond(s, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied', observedGeneration: 3, lastTransitionTime: '2026-11-25T10:00:00Z' });
    expect(cond(s, 'ConfigValid').status).toBe('True');
    expect(cond(s, 'Degraded').status).toBe('False');
    expect(cond(s, 'Progressing').status).toBe('False');
    expect(s).toMatchObject({ observedGeneration: 3, configHash: 'h', matched: 2, applied: 2 });
  });

  it('is Degraded with the first failing agent\'s message', () => {
    const counts = { ...emptyStatus(), matched: 3, applied: 2, failed: 1, failing: [{ instanceUid: 'u', name: 'ns/pod-a', reason: 'ApplyFailed' as const, message: 'unknown exporter "kafka"' }] };
    const s = buildCollectorStatus({ generation: 1, configHash: 'h', issues: [], lastGoodInEffect: false, counts, previous: undefined, now: t0 });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'ApplyFailed', message: '1 of 3 agents failed to apply the config; ns/pod-a: unknown exporter "kafka"' });
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'ApplyFailed' });
    expect(s.failingAgents).toHaveLength(1);
  });

  it('is not ConfigValid when the config is invalid, and says whether the last good config stays', () => {
    const s = buildCollectorStatus({ generation: 4, configHash: null, issues: ['config is not valid YAML: x'], lastGoodInEffect: true, counts: emptyStatus(), previous: undefined, now: t0 });
    expect(cond(s, 'ConfigValid')).toMatchObject({ status: 'False', reason: 'InvalidConfig', message: 'config is not valid YAML: x (the last valid config stays in effect)' });
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidConfig' });
  });

  it('is Degraded with reason Drifted when agents drifted and none failed', () => {
    const counts = { ...emptyStatus(), matched: 2, applied: 2, drifted: 1, failing: [{ instanceUid: 'u', name: 'ns/p', reason: 'Drifted' as const, message: 'drifted from the pushed config: exporters.debug: missing' }] };
    const s = buildCollectorStatus({ generation: 1, configHash: 'h', issues: [], lastGoodInEffect: false, counts, previous: undefined, now: t0 });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'Drifted', message: '1 of 2 agents run a config that differs from the pushed one; ns/p: drifted from the pushed config: exporters.debug: missing' });
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Drifted' });
    expect(s.drifted).toBe(1);
  });

  it('moves lastTransitionTime only when a condition changes status', () => {
    const a = buildCollectorStatus({ generation: 1, configHash: 'h', issues: [], lastGoodInEffect: false, counts: { ...emptyStatus(), matched: 1, applying: 1 }, previous: undefined, now: t0 });
    const b = buildCollectorStatus({ generation: 1, configHash: 'h', issues: [], lastGoodInEffect: false, counts: { ...emptyStatus(), matched: 2, applying: 2 }, previous: a.conditions, now: t1 });
    expect(cond(b, 'Progressing')).toMatchObject({ status: 'True', lastTransitionTime: '2026-11-25T10:00:00Z', message: '2 of 2 agents have not applied the config yet' });
    const c = buildCollectorStatus({ generation: 2, configHash: 'h2', issues: [], lastGoodInEffect: false, counts: { ...emptyStatus(), matched: 2, applied: 2 }, previous: b.conditions, now: t1 });
    expect(cond(c, 'Progressing')).toMatchObject({ status: 'False', lastTransitionTime: '2026-11-25T10:05:00Z', observedGeneration: 2 });
    expect(cond(c, 'ConfigValid').lastTransitionTime).toBe('2026-11-25T10:00:00Z');
  });
});

describe('buildCollectorStatus: agents that lack components', () => {
  it('is Degraded with reason MissingComponents when that is every failure, ApplyFailed when mixed', () => {
    const missing = { instanceUid: 'u1', name: 'ns/pod-a', reason: 'MissingComponents' as const, message: 'the agent lacks exporters/otlphttp' };
    const counts = { ...emptyStatus(), matched: 2, applied: 1, failed: 1, failing: [missing] };
    const s = buildCollectorStatus({ generation: 1, configHash: 'h', issues: [], lastGoodInEffect: false, counts, previous: undefined, now: t0 });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'MissingComponents', message: '1 of 2 agents lack components the config uses; ns/pod-a: the agent lacks exporters/otlphttp' });
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'MissingComponents', message: '1 agents lack components the config uses' });
    expect(s.failingAgents).toEqual([missing]);
    const mixed = { ...counts, failed: 2, matched: 3, failing: [missing, { instanceUid: 'u2', name: 'ns/pod-b', reason: 'ApplyFailed' as const, message: 'boom' }] };
    const m = buildCollectorStatus({ generation: 1, configHash: 'h', issues: [], lastGoodInEffect: false, counts: mixed, previous: undefined, now: t0 });
    expect(cond(m, 'Degraded')).toMatchObject({ reason: 'ApplyFailed' });
    expect(cond(m, 'Ready')).toMatchObject({ reason: 'ApplyFailed' });
  });
});

describe('aggregateCollectorStatus: agent versions', () => {
  it('counts agents per service.name and service.version, most common first, capped with "other"', async () => {
    const { aggregateCollectorStatus, MAX_VERSIONS_LISTED } = await import('../../../src/controller/collector-status.js');
    const rec = (uid: string, id: Record<string, unknown>) =>
      ({ uid, session: { connected: true }, description: { capabilities: 0, health: null, reported: { identifying: id, nonIdentifying: {} }, attributes: {} }, config: { desired: { collectors: ['ns/c'], issues: [], hashHex: 'h' }, reported: { hash: null, status: 'UNSET', errorMessage: '' }, drift: { verdict: null } }, components: { missing: [] }, packages: { desired: null }, resources: null }) as never;
    const agents = [
      rec('1', { 'service.name': 'otelcol-contrib', 'service.version': '0.145.0' }),
      rec('2', { 'service.name': 'otelcol-contrib', 'service.version': '0.145.0' }),
      rec('3', { 'service.name': 'otelcol-contrib', 'service.version': '0.140.0' }),
      rec('4', {}),
    ];
    expect(aggregateCollectorStatus(agents).get('ns/c')!.agentVersions).toEqual([
      { version: 'otelcol-contrib 0.145.0', agents: 2 },
      { version: 'otelcol-contrib 0.140.0', agents: 1 },
      { version: 'unknown', agents: 1 },
    ]);
    const many = Array.from({ length: MAX_VERSIONS_LISTED + 5 }, (_, i) => rec(String(i), { 'service.name': 'c', 'service.version': `1.${i}` }));
    const v = aggregateCollectorStatus(many).get('ns/c')!.agentVersions;
    expect(v).toHaveLength(MAX_VERSIONS_LISTED);
    expect(v.at(-1)).toEqual({ version: 'other', agents: 6 });
    expect(v.reduce((n, e) => n + e.agents, 0)).toBe(MAX_VERSIONS_LISTED + 5);
  });
});

describe('buildCollectorStatus: packages and resources', () => {
  const base = { generation: 1, configHash: 'h', issues: [], lastGoodInEffect: false, previous: undefined, now: t0 };
  it('counts package states, is Degraded on a failed install and on held packages, and omits both when none are declared', () => {
    const ok = buildCollectorStatus({ ...base, counts: { ...emptyStatus(), matched: 2, applied: 2, packages: { offered: 1, installed: 1, installing: 0, failed: 0, unsupported: 1 } }, packages: { hash: 'p', issues: [] } });
    expect(ok.packages).toEqual({ hash: 'p', offered: 1, installed: 1, installing: 0, failed: 0, unsupported: 1 });
    expect(cond(ok, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied' });
    const failing = [{ instanceUid: 'u', name: 'ns/p', reason: 'PackageInstallFailed' as const, message: 'otelcol 1.0: content hash mismatch' }];
    const bad = buildCollectorStatus({ ...base, counts: { ...emptyStatus(), matched: 1, applied: 1, packages: { offered: 1, installed: 0, installing: 0, failed: 1, unsupported: 0 }, failing }, packages: { hash: 'p', issues: [] } });
    expect(cond(bad, 'Degraded')).toMatchObject({ status: 'True', reason: 'PackageInstallFailed', message: '1 of 1 agents failed to install the packages; ns/p: otelcol 1.0: content hash mismatch' });
    expect(cond(bad, 'Ready')).toMatchObject({ status: 'False', reason: 'PackageInstallFailed' });
    // A config failure says more and wins.
    const both = buildCollectorStatus({ ...base, counts: { ...emptyStatus(), matched: 1, failed: 1, packages: { offered: 1, installed: 0, installing: 0, failed: 1, unsupported: 0 }, failing: [{ instanceUid: 'u', name: 'ns/p', reason: 'ApplyFailed' as const, message: 'boom' }, ...failing] } });
    expect(cond(both, 'Degraded')).toMatchObject({ reason: 'ApplyFailed', message: '1 of 1 agents failed to apply the config; ns/p: boom' });
    const held = buildCollectorStatus({ ...base, counts: { ...emptyStatus(), matched: 1, applied: 1 }, packages: { hash: 'p', issues: ['package "x": serve.path needs the OpAMPBridge to set spec.packages.directory'] } });
    expect(held.packages).toMatchObject({ offered: 0, problems: ['package "x": serve.path needs the OpAMPBridge to set spec.packages.directory'] });
    expect(cond(held, 'Degraded')).toMatchObject({ status: 'True', reason: 'PackagesHeld' });
    const none = buildCollectorStatus({ ...base, counts: { ...emptyStatus(), matched: 1, applied: 1 } });
    expect(none.packages).toBeUndefined();
    expect(none.resources).toBeUndefined();
  });

  it('carries the resource summary, never per-agent figures', () => {
    const s = buildCollectorStatus({ ...base, counts: { ...emptyStatus(), matched: 2, applied: 2, resources: { agents: 2, memoryTotalBytes: 300, memoryMaxBytes: 200, cpuSecondsTotal: 1.5 } } });
    expect(s.resources).toEqual({ agents: 2, memoryTotalBytes: 300, memoryMaxBytes: 200, cpuSecondsTotal: 1.5 });
  });
});
