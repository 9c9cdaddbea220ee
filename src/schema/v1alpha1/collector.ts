import { z } from 'zod';
import { Condition, GROUP_VERSION, LabelSelector, ObjectMeta } from './common.js';

/**
 * An OpenTelemetry Collector config: YAML text, or the same as an object. Parsed and checked by
 * src/render (a YAML error is a ConfigValid=False status, not a schema error).
 */
export const CollectorConfig = z.union([z.string(), z.record(z.string(), z.unknown())]);

export const CollectorSpec = z
  .object({
    /** Pod (Kubernetes) or agent-attribute (standalone) label selector. */
    selector: LabelSelector,
    config: CollectorConfig,
    /** Several Collectors matching one agent merge in ascending priority, then name: higher priority wins. */
    priority: z.number().int().min(-1000).max(1000).default(0),
  })
  .strict();
export type CollectorSpec = z.infer<typeof CollectorSpec>;

export const FailingAgent = z.object({ instanceUid: z.string(), name: z.string(), message: z.string() });

export const CollectorStatus = z.object({
  observedGeneration: z.number().int().optional(),
  configHash: z.string().optional(),
  conditions: z.array(Condition).optional(),
  matched: z.number().int().optional(),
  connected: z.number().int().optional(),
  applied: z.number().int().optional(),
  applying: z.number().int().optional(),
  failed: z.number().int().optional(),
  healthy: z.number().int().optional(),
  unhealthy: z.number().int().optional(),
  failingAgents: z.array(FailingAgent).max(20).optional(),
});

export const Collector = z
  .object({
    apiVersion: z.literal(GROUP_VERSION),
    kind: z.literal('Collector'),
    metadata: ObjectMeta,
    spec: CollectorSpec,
    status: CollectorStatus.optional(),
  })
  .strict();
export type Collector = z.infer<typeof Collector>;
