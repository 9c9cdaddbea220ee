/**
 * Conditions per Kubernetes API conventions: one helper sets them, `lastTransitionTime` moves only
 * when the status changes, and every condition carries the generation it was computed for.
 */
import type { Condition } from '../schema/v1alpha1/index.js';

export const ConditionType = {
  Ready: 'Ready',
  Progressing: 'Progressing',
  Degraded: 'Degraded',
  ConfigValid: 'ConfigValid',
} as const;

/** Reasons are PascalCase constants (kubebuilder convention). */
export const Reason = {
  Valid: 'Valid',
  InvalidConfig: 'InvalidConfig',
  AllApplied: 'AllApplied',
  NoAgents: 'NoAgents',
  Applying: 'Applying',
  Complete: 'Complete',
  ApplyFailed: 'ApplyFailed',
  /** The config uses component types some agents report they lack: it is not pushed to them. */
  MissingComponents: 'MissingComponents',
  NoFailures: 'NoFailures',
  Drifted: 'Drifted',
  /** Some agents report a failed install of the Collector's packages. */
  PackageInstallFailed: 'PackageInstallFailed',
  /** The Collector's packages cannot be offered (e.g. serve.path without the bridge's packages.directory). */
  PackagesHeld: 'PackagesHeld',
  Serving: 'Serving',
  NotServing: 'NotServing',
} as const;

export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** Returns a new list with `c` set; keeps the old lastTransitionTime unless the status changed. */
export function setCondition(conds: readonly Condition[] | undefined, c: ConditionInput, generation: number, now: Date): Condition[] {
  const list = [...(conds ?? [])];
  const i = list.findIndex((x) => x.type === c.type);
  const prev = i === -1 ? undefined : list[i];
  const next: Condition = {
    type: c.type,
    status: c.status,
    reason: c.reason,
    message: c.message.slice(0, 32768),
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    observedGeneration: generation,
  };
  if (i === -1) list.push(next);
  else list[i] = next;
  return list;
}

export function findCondition(conds: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conds?.find((c) => c.type === type);
}
