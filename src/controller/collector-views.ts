/**
 * One Collector in effect, in either mode (compiled from the API, or read from the folder), and
 * what both modes show of it: the admin API's CollectorView and the inputs of its Kubernetes status.
 */
import type { AgentRecord } from '../fleet/agent.js';
import type { CollectorView } from '../fleet/view-types.js';
import { packagesSummary } from '../render/packages.js';
import type { CollectorInput, DesiredState } from '../render/index.js';
import { aggregateCollectorStatus, emptyStatus, mergedConfigIssues, type CollectorFleetStatus } from './collector-status.js';

export interface CollectorEntry {
  /** "namespace/name". */
  key: string;
  namespace: string;
  name: string;
  /** The file it was read from (standalone); null from the API. */
  source: string | null;
  generation: number;
  /** What the renderer uses (null: a generation that was never valid and holds nothing). */
  input: CollectorInput | null;
  /** This generation's own problems; empty when valid. */
  issues: string[];
  /** The input in effect is an earlier, valid generation. */
  lastGoodInEffect: boolean;
}

/** The fleet's per-Collector figures, computed at most once per fleet change. */
export class FleetFigures {
  #counts: Map<string, CollectorFleetStatus> | null = null;
  #issues: Map<string, string[]> | null = null;
  constructor(private readonly records: () => Iterable<AgentRecord>) {}

  /** The fleet changed: the next read computes again. */
  invalidate(): void {
    this.#counts = null;
    this.#issues = null;
  }

  counts(key: string): CollectorFleetStatus {
    return (this.#counts ??= aggregateCollectorStatus(this.records())).get(key) ?? emptyStatus();
  }

  /** Problems found while rendering the merged configs of agents this Collector selects. */
  renderIssues(key: string): string[] {
    return (this.#issues ??= mergedConfigIssues(this.records())).get(key) ?? [];
  }
}

const usable = (e: CollectorEntry): CollectorInput | null => (e.input && !e.input.invalid ? e.input : null);

/** Everything wrong with a Collector: its own spec, the merged configs it is part of, its Secrets. */
export function collectorIssues(e: CollectorEntry, desired: DesiredState, figures: FleetFigures): string[] {
  const input = usable(e);
  return [...new Set([...e.issues, ...figures.renderIssues(e.key), ...(input ? desired.own(input).secretIssues : [])])];
}

export function collectorView(e: CollectorEntry, desired: DesiredState, figures: FleetFigures): CollectorView {
  const issues = collectorIssues(e, desired, figures);
  const input = usable(e);
  return {
    namespace: e.namespace,
    name: e.name,
    source: e.source,
    generation: e.generation,
    priority: e.input?.priority ?? 0,
    valid: issues.length === 0,
    issues,
    configHash: input ? desired.ownConfigHash(input) : null,
    packages: input ? packagesSummary(desired.ownPackages(input)) : null,
    status: figures.counts(e.key),
  };
}
