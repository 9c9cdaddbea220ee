/**
 * Writes the fleet's truth into the Collectors' and the OpAMPBridge's `status` (coalesced, one
 * write per object at most every statusIntervalMs, only what changed, leader only), with one
 * aggregated Event per distinct problem.
 */
import type { Logger } from 'pino';
import { buildCollectorStatus } from '../controller/collector-status.js';
import { collectorIssues, type CollectorEntry, type FleetFigures } from '../controller/collector-views.js';
import { Reason, setCondition, type ConditionInput } from '../controller/conditions.js';
import { WorkQueue } from '../controller/workqueue.js';
import type { BridgeTotals } from '../fleet/totals.js';
import type { DesiredState } from '../render/index.js';
import { API_GROUP, API_VERSION, GROUP_VERSION, type Condition } from '../schema/v1alpha1/index.js';
import { MERGE_PATCH, errorText, statusOf, type makeClients } from './client.js';
import type { EventRecorder } from './events.js';
import { COLLECTORS, type CollectorResource } from './reconciler.js';

export const BRIDGES = 'opampbridges';

/** What the OpAMPBridge's status says besides the agent totals (kube/bridge-settings.ts). */
export interface BridgeReport {
  /** The generation of the spec in effect (observedGeneration). */
  generation: number;
  endpoint: string;
  auth: ConditionInput;
  /** Ready, given the totals. */
  ready: (totals: BridgeTotals) => ConditionInput;
}

export interface StatusWriterOptions {
  clients: ReturnType<typeof makeClients>;
  namespace: string;
  bridgeName: string;
  logger: Logger;
  events: EventRecorder;
  isLeader: () => boolean;
  statusIntervalMs: number;
  entries: () => readonly CollectorEntry[];
  entry: (key: string) => CollectorEntry | undefined;
  collector: (namespace: string, name: string) => CollectorResource | undefined;
  bridgeObject: () => { metadata?: { generation?: number }; status?: { conditions?: Condition[] } } | undefined;
  bridgeReport: () => BridgeReport;
  totals: () => BridgeTotals;
  desired: () => DesiredState;
  figures: FleetFigures;
  metrics: { statusWrites: { inc(l: { kind: string; outcome: string }): void }; apiErrors: { inc(l: { op: string }): void }; observe(queue: string, outcome: string, s: number): void };
}

export class StatusWriter {
  readonly queue: WorkQueue;
  readonly #o: StatusWriterOptions;
  readonly #lastWritten = new Map<string, string>();
  readonly #lastEventState = new Map<string, string>();
  #timer: NodeJS.Timeout | null = null;

  constructor(o: StatusWriterOptions) {
    this.#o = o;
    this.queue = new WorkQueue({
      name: 'status',
      logger: o.logger.child({ component: 'status' }),
      concurrency: 4,
      minIntervalMs: o.statusIntervalMs,
      process: async (key) => this.#write(key),
      onResult: (_k, outcome, s) => o.metrics.observe('status', outcome, s),
    });
  }

  /** Writes every status again soon (the fleet or the desired state changed). */
  scheduleAll(): void {
    this.#o.figures.invalidate();
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      for (const e of this.#o.entries()) this.queue.add(`collector:${e.key}`);
      this.queue.add('bridge');
    }, 250);
    this.#timer.unref();
  }

  /** A new leader writes everything once, whatever an earlier leader wrote. */
  forget(): void {
    this.#lastWritten.clear();
    this.scheduleAll();
  }

  bridgeChanged(): void {
    this.queue.add('bridge');
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.queue.shutdown();
  }

  async #write(key: string): Promise<void> {
    if (!this.#o.isLeader()) return;
    if (key === 'bridge') return this.#writeBridge();
    const ckey = key.slice('collector:'.length);
    const [cns, cname] = ckey.split('/') as [string, string];
    const obj = this.#o.collector(cns, cname);
    const c = this.#o.entry(ckey);
    if (!obj || !c) return;
    const desired = this.#o.desired();
    const issues = collectorIssues(c, desired, this.#o.figures);
    const input = c.input && !c.input.invalid ? c.input : null;
    const hash = input ? desired.ownConfigHash(input) : null;
    const counts = this.#o.figures.counts(ckey);
    const ownPackages = input ? desired.ownPackages(input) : null;
    const status = buildCollectorStatus({
      generation: c.generation,
      configHash: hash,
      packages: ownPackages && { hash: ownPackages.allHashHex, issues: ownPackages.issues },
      issues,
      lastGoodInEffect: c.lastGoodInEffect,
      counts,
      previous: obj.status?.conditions,
      now: new Date(),
    });
    const written = await this.#patch(key, 'Collector', cns, COLLECTORS, cname, status, { ...status, configHash: status.configHash ?? null, packages: status.packages ?? null, resources: status.resources ?? null });
    if (!written) return;
    // Events: one per distinct problem, aggregated by the recorder.
    const ref = { apiVersion: GROUP_VERSION, kind: 'Collector', namespace: cns, name: cname, uid: obj.metadata?.uid ?? '' };
    const eventState = JSON.stringify([issues, counts.failing.map((f) => f.message)]);
    if (this.#lastEventState.get(key) === eventState) return;
    this.#lastEventState.set(key, eventState);
    const events = this.#o.events;
    if (issues.length > 0) void events.record(ref, 'Warning', Reason.InvalidConfig, issues.join('; '));
    // One Event per distinct problem, with no agent count in its text, so that the same problem
    // on more agents aggregates into that Event (its count) instead of making new ones.
    const problems = new Map(counts.failing.map((f) => [`${f.reason}\n${f.message}`, f] as const));
    for (const f of problems.values()) {
      if (f.reason === 'Drifted') void events.record(ref, 'Warning', Reason.Drifted, `Agent ${f.message}`);
      else if (f.reason === 'MissingComponents') void events.record(ref, 'Warning', Reason.MissingComponents, `Config ${hash?.slice(0, 12) ?? ''} is not pushed to agents that lack components it uses: ${f.message}`);
      else if (f.reason === 'PackageInstallFailed') void events.record(ref, 'Warning', Reason.PackageInstallFailed, `Agents failed to install packages ${ownPackages?.allHashHex.slice(0, 12) ?? ''}: ${f.message}`);
      else void events.record(ref, 'Warning', Reason.ApplyFailed, `Agents failed to apply config ${hash?.slice(0, 12) ?? ''}: ${f.message}`);
    }
  }

  async #writeBridge(): Promise<void> {
    const obj = this.#o.bridgeObject();
    if (!obj) return;
    const t = this.#o.totals();
    const r = this.#o.bridgeReport();
    const now = new Date();
    const conditions = setCondition(setCondition(obj.status?.conditions, r.auth, r.generation, now), r.ready(t), r.generation, now);
    const status = { observedGeneration: r.generation, endpoint: r.endpoint, conditions, agents: t };
    await this.#patch('bridge', 'OpAMPBridge', this.#o.namespace, BRIDGES, this.#o.bridgeName, status, status);
  }

  /** Patches the status subresource unless it is what was last written; false when nothing was written. */
  async #patch(key: string, kind: string, namespace: string, plural: string, name: string, status: object, body: object): Promise<boolean> {
    const text = JSON.stringify(status);
    if (this.#lastWritten.get(key) === text) return false;
    const m = this.#o.metrics;
    try {
      await this.#o.clients.custom.patchNamespacedCustomObjectStatus({ group: API_GROUP, version: API_VERSION, namespace, plural, name, body: { status: body } }, MERGE_PATCH);
      m.statusWrites.inc({ kind, outcome: 'ok' });
      this.#lastWritten.set(key, text);
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false; // deleted meanwhile
      m.statusWrites.inc({ kind, outcome: 'error' });
      m.apiErrors.inc({ op: 'status' });
      throw new Error(`status write for ${kind} ${namespace}/${name} failed: ${errorText(err)}`);
    }
  }
}

