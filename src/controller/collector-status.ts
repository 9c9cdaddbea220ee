/**
 * Aggregates the fleet's truth into per-Collector counts: the same numbers feed the Collector's
 * `status` in Kubernetes and the standalone API. Counts, plus a capped list of failing agents:
 * status must stay small at 10,000 agents.
 */
import type { CollectorStatusCounts, FailingAgentView } from '../fleet/view-types.js';
import { configFailure, configState } from '../fleet/fleet.js';
import { packageState } from '../fleet/packages.js';
import type { AgentRecord } from '../fleet/agent.js';
import { heldIssue } from '../render/index.js';
import type { Condition } from '../schema/v1alpha1/index.js';
import { ConditionType, Reason, setCondition, type ConditionInput } from './conditions.js';

export const MAX_FAILING_LISTED = 20;

export const MAX_VERSIONS_LISTED = 10;

export interface CollectorFleetStatus extends CollectorStatusCounts {
  failing: FailingAgentView[];
}

export function emptyStatus(): CollectorFleetStatus {
  return { matched: 0, connected: 0, disconnected: 0, applied: 0, applying: 0, failed: 0, healthy: 0, unhealthy: 0, drifted: 0, agentVersions: [], packages: null, resources: null, failing: [] };
}

/** "name version" of an agent, from its identifying attributes (what `kubectl get -o wide` shows). */
export function agentVersion(rec: AgentRecord): string {
  const id = rec.description.reported?.identifying ?? {};
  const name = typeof id['service.name'] === 'string' ? id['service.name'] : 'unknown';
  const version = typeof id['service.version'] === 'string' ? id['service.version'] : '';
  return version ? `${name} ${version}` : name;
}

/**
 * One pass over the agents; returns counts keyed by "namespace/name". Every count is of connected
 * agents (an HTTP agent is connected while it polls on time); an agent that disconnected is counted
 * only as `disconnected`, and only within the grace the fleet keeps it there (two heartbeat intervals).
 */
export function aggregateCollectorStatus(agents: Iterable<AgentRecord>): Map<string, CollectorFleetStatus> {
  const out = new Map<string, CollectorFleetStatus>();
  const versions = new Map<string, Map<string, number>>();
  for (const rec of agents) {
    const d = rec.config.desired;
    if (!d) continue;
    if (!rec.session.connected) {
      if (rec.session.pastGrace) continue;
      for (const key of d.collectors) {
        let s = out.get(key);
        if (!s) out.set(key, (s = emptyStatus()));
        s.disconnected++;
      }
      continue;
    }
    const state = configState(rec);
    const version = agentVersion(rec);
    for (const key of d.collectors) {
      let s = out.get(key);
      if (!s) out.set(key, (s = emptyStatus()));
      s.matched++;
      let v = versions.get(key);
      if (!v) versions.set(key, (v = new Map()));
      v.set(version, (v.get(version) ?? 0) + 1);
      s.connected++;
      if (state === 'applied') s.applied++;
      else if (state === 'applying') s.applying++;
      else if (state === 'failed') {
        s.failed++;
        const f = configFailure(rec);
        if (f && s.failing.length < MAX_FAILING_LISTED) s.failing.push({ instanceUid: rec.uid, name: agentName(rec), reason: f.reason, message: f.message });
      }
      if (rec.description.health) {
        if (rec.description.health.healthy) s.healthy++;
        else s.unhealthy++;
      }
      if (rec.config.drift.verdict?.drifted) {
        s.drifted++;
        if (s.failing.length < MAX_FAILING_LISTED) {
          s.failing.push({ instanceUid: rec.uid, name: agentName(rec), reason: 'Drifted', message: `drifted from the pushed config: ${rec.config.drift.verdict.differences.join('; ')}` });
        }
      }
      const r = rec.resources;
      if (r && r.rssBytes !== null) {
        const sum = (s.resources ??= { agents: 0, memoryTotalBytes: 0, memoryMaxBytes: 0, cpuSecondsTotal: 0 });
        sum.agents++;
        sum.memoryTotalBytes += Math.round(r.rssBytes);
        sum.memoryMaxBytes = Math.max(sum.memoryMaxBytes, Math.round(r.rssBytes));
        sum.cpuSecondsTotal = Math.round((sum.cpuSecondsTotal + (r.cpuSeconds ?? 0)) * 100) / 100;
      }
    }
    // Packages count for the Collectors that declared them for this agent (a subset of those that match it).
    const ps = packageState(rec);
    if (ps && ps.state !== 'held') {
      for (const key of rec.packages.desired!.collectors) {
        let s = out.get(key);
        if (!s) out.set(key, (s = emptyStatus()));
        const p = (s.packages ??= { offered: 0, installed: 0, installing: 0, failed: 0, unsupported: 0 });
        if (ps.state === 'unsupported') {
          p.unsupported++;
          continue;
        }
        p.offered++;
        p[ps.state]++;
        if (ps.state === 'failed' && s.failing.length < MAX_FAILING_LISTED) s.failing.push({ instanceUid: rec.uid, name: agentName(rec), reason: 'PackageInstallFailed', message: ps.message });
      }
    }
  }
  for (const [key, v] of versions) out.get(key)!.agentVersions = topVersions(v);
  return out;
}

/** Most common first (then by name); past the cap, the rest as one "other" entry. */
function topVersions(counts: Map<string, number>): { version: string; agents: number }[] {
  const sorted = [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0)).map(([version, agents]) => ({ version, agents }));
  if (sorted.length <= MAX_VERSIONS_LISTED) return sorted;
  const shown = sorted.slice(0, MAX_VERSIONS_LISTED - 1);
  return [...shown, { version: 'other', agents: sorted.slice(MAX_VERSIONS_LISTED - 1).reduce((n, e) => n + e.agents, 0) }];
}

/** A name a person recognises: the pod, else the host, else the uid. */
export function agentName(rec: AgentRecord): string {
  if (rec.identity.pod) return rec.identity.pod;
  const a = rec.description.attributes;
  if (a['k8s.pod.name']) return `${a['k8s.namespace.name'] ?? rec.identity.namespace}/${a['k8s.pod.name']}`;
  return a['host.name'] ?? a['service.instance.id'] ?? rec.uid;
}

/** `Collector.status`: the fleet counts plus generation, hash, conditions and the capped failing list. */
export interface CollectorStatusObject extends Omit<CollectorStatusCounts, 'packages' | 'resources'> {
  packages?: NonNullable<CollectorStatusCounts['packages']> & { hash: string; problems?: string[] };
  resources?: NonNullable<CollectorStatusCounts['resources']>;
  observedGeneration: number;
  configHash?: string;
  conditions: Condition[];
  failingAgents: FailingAgentView[];
}

/**
 * The Collector's whole status from its validity and the fleet's counts. Pure: the same inputs
 * give the same object (apart from lastTransitionTime on a transition), so a writer can skip
 * writes that would change nothing.
 */
export function buildCollectorStatus(input: {
  generation: number;
  configHash: string | null;
  /** Problems that make the config invalid (its own, or of a merged config it takes part in). */
  issues: string[];
  /** True when an earlier valid generation is still what agents get. */
  lastGoodInEffect: boolean;
  counts: CollectorFleetStatus;
  /** The Collector's own packages alone: their all_packages_hash and the problems that hold them back. */
  packages?: { hash: string; issues: string[] } | null;
  previous: readonly Condition[] | undefined;
  now: Date;
}): CollectorStatusObject {
  const { generation: g, counts: c, now } = input;
  let conds = input.previous ? [...input.previous] : [];
  const valid = input.issues.length === 0;
  conds = setCondition(
    conds,
    valid
      ? { type: ConditionType.ConfigValid, status: 'True', reason: Reason.Valid, message: 'The config parses and its pipelines name only defined components' }
      : {
          type: ConditionType.ConfigValid,
          status: 'False',
          reason: Reason.InvalidConfig,
          message: input.issues.join('; ') + (input.lastGoodInEffect ? ' (the last valid config stays in effect)' : ' (nothing is pushed to the agents it selects)'),
        },
    g,
    now,
  );
  conds = setCondition(
    conds,
    c.applying > 0
      ? { type: ConditionType.Progressing, status: 'True', reason: Reason.Applying, message: `${c.applying} of ${c.matched} agents have not applied the config yet` }
      : { type: ConditionType.Progressing, status: 'False', reason: Reason.Complete, message: 'No agent is applying a config' },
    g,
    now,
  );
  const failures = c.failing.filter((f) => f.reason !== 'Drifted' && f.reason !== 'PackageInstallFailed');
  const packageIssues = input.packages?.issues ?? [];
  const packagesFailed = c.packages?.failed ?? 0;
  const firstPackageFailure = c.failing.find((f) => f.reason === 'PackageInstallFailed');
  const firstFailure = failures[0];
  const firstDrift = c.failing.find((f) => f.reason === 'Drifted');
  // Agents that lack components were never sent the config: said as such when that is every listed failure.
  const onlyMissing = failures.length > 0 && failures.every((f) => f.reason === 'MissingComponents');
  conds = setCondition(
    conds,
    c.failed > 0
      ? {
          type: ConditionType.Degraded,
          status: 'True',
          reason: onlyMissing ? Reason.MissingComponents : Reason.ApplyFailed,
          message: `${c.failed} of ${c.matched} agents ${onlyMissing ? 'lack components the config uses' : 'failed to apply the config'}${firstFailure ? `; ${firstFailure.name}: ${firstFailure.message}` : ''}`,
        }
      : c.drifted > 0
        ? {
            type: ConditionType.Degraded,
            status: 'True',
            reason: Reason.Drifted,
            message: `${c.drifted} of ${c.matched} agents run a config that differs from the pushed one${firstDrift ? `; ${firstDrift.name}: ${firstDrift.message}` : ''}`,
          }
        : packageIssues.length > 0
          ? { type: ConditionType.Degraded, status: 'True', reason: Reason.PackagesHeld, message: `Packages are not offered: ${packageIssues.join('; ')}` }
          : packagesFailed > 0
            ? {
                type: ConditionType.Degraded,
                status: 'True',
                reason: Reason.PackageInstallFailed,
                message: `${packagesFailed} of ${c.packages!.offered} agents failed to install the packages${firstPackageFailure ? `; ${firstPackageFailure.name}: ${firstPackageFailure.message}` : ''}`,
              }
            : { type: ConditionType.Degraded, status: 'False', reason: Reason.NoFailures, message: 'No agent reports a failure' },
    g,
    now,
  );
  let ready: ConditionInput;
  if (!valid) ready = { type: ConditionType.Ready, status: 'False', reason: Reason.InvalidConfig, message: 'The config is invalid' };
  else if (c.failed > 0 && onlyMissing) ready = { type: ConditionType.Ready, status: 'False', reason: Reason.MissingComponents, message: `${c.failed} agents lack components the config uses` };
  else if (c.failed > 0) ready = { type: ConditionType.Ready, status: 'False', reason: Reason.ApplyFailed, message: `${c.failed} agents failed to apply the config` };
  else if (c.drifted > 0) ready = { type: ConditionType.Ready, status: 'False', reason: Reason.Drifted, message: `${c.drifted} agents drifted from the pushed config` };
  else if (packageIssues.length > 0) ready = { type: ConditionType.Ready, status: 'False', reason: Reason.PackagesHeld, message: 'Packages are not offered: see the Degraded condition' };
  else if (packagesFailed > 0) ready = { type: ConditionType.Ready, status: 'False', reason: Reason.PackageInstallFailed, message: `${packagesFailed} agents failed to install the packages` };
  else if (c.applying > 0) ready = { type: ConditionType.Ready, status: 'False', reason: Reason.Applying, message: `${c.applied} of ${c.matched} agents applied the config` };
  else if (c.matched === 0) ready = { type: ConditionType.Ready, status: 'True', reason: Reason.NoAgents, message: 'No connected agent matches the selector' };
  else {
    // Agents that do not accept remote config (read-only) match but never apply.
    const readOnly = c.matched - c.applied;
    ready = {
      type: ConditionType.Ready,
      status: 'True',
      reason: Reason.AllApplied,
      message: readOnly > 0 ? `All ${c.applied} agents that accept remote config applied it; ${readOnly} read-only agents match` : `All ${c.matched} agents applied the config`,
    };
  }
  conds = setCondition(conds, ready, g, now);
  const status: CollectorStatusObject = {
    observedGeneration: g,
    conditions: conds,
    matched: c.matched,
    connected: c.connected,
    disconnected: c.disconnected,
    applied: c.applied,
    applying: c.applying,
    failed: c.failed,
    healthy: c.healthy,
    unhealthy: c.unhealthy,
    drifted: c.drifted,
    agentVersions: c.agentVersions,
    failingAgents: c.failing,
  };
  if (input.configHash) status.configHash = input.configHash;
  if (input.packages) {
    status.packages = {
      hash: input.packages.hash,
      ...(c.packages ?? { offered: 0, installed: 0, installing: 0, failed: 0, unsupported: 0 }),
      ...(packageIssues.length > 0 ? { problems: packageIssues.slice(0, 5) } : {}),
    };
  }
  if (c.resources) status.resources = c.resources;
  return status;
}

/**
 * Problems of merged configs, per Collector taking part ("namespace/name" → messages): a Collector
 * can be valid alone and still be part of a merged config that names undefined components. A
 * Collector's own invalidity is reported by its compiler, not repeated here.
 */
export function mergedConfigIssues(agents: Iterable<AgentRecord>): Map<string, string[]> {
  const m = new Map<string, Set<string>>();
  for (const rec of agents) {
    const d = rec.config.desired;
    if (!d || d.issues.length === 0) continue;
    for (const key of d.collectors) {
      let set = m.get(key);
      if (!set) m.set(key, (set = new Set()));
      // A Collector's own invalidity is reported by its compiler; the others it holds back are told here.
      // A lone Collector's missing Secrets are its own issues too (rendered alone): not told twice.
      const messages = d.held.length > 0 ? d.held.filter((h) => h.collector !== key).map((h) => heldIssue(h.collector, h.issue)) : d.collectors.length === 1 ? d.issues.filter((i) => !d.secretIssues.includes(i)) : d.issues;
      for (const i of messages) set.add(`merged config (${d.collectors.join(' + ')}): ${i}`);
    }
  }
  return new Map([...m].map(([key, set]) => [key, [...set]]));
}
