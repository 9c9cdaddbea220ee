import { z } from 'zod';
import { Condition, GROUP_VERSION, LabelSelector, ObjectMeta, ObjectName } from './common.js';

/**
 * An OpenTelemetry Collector config: YAML text, or the same as an object. Parsed and checked by
 * src/render (a YAML error is a ConfigValid=False status, not a schema error).
 */
export const CollectorConfig = z.record(z.string(), z.unknown()).meta({
  description: 'An OpenTelemetry Collector config as an object (receivers, processors, exporters, service, ...). Set this or configYaml.',
  'x-kubernetes-preserve-unknown-fields': true,
});

/** The same config as YAML text. (One field cannot be "string or object": the apiserver requires a type.) */
export const CollectorConfigYaml = z.string().meta({
  description: 'An OpenTelemetry Collector config as YAML text. Set this or config.',
});

export const CollectorSpec = z
  .object({
    selector: LabelSelector.describe(
      'Which agents get this config: a label selector over pod labels (Kubernetes) or agent attributes (standalone). {} selects every agent in the namespace.',
    ),
    config: CollectorConfig.optional(),
    configYaml: CollectorConfigYaml.optional(),
    secretRefs: z
      .array(z.object({ name: ObjectName.describe('A Secret in the Collector\'s namespace.') }).strict())
      .max(32)
      .optional()
      .describe(
        'Secrets the config may reference as ${secret:NAME/KEY}: the value is substituted into each push and never shown (status, events, logs, metrics and the API show the reference, or [REDACTED]). The bridge reads only the Secrets listed here.',
      ),
    priority: z
      .number()
      .int()
      .min(-1000)
      .max(1000)
      .default(0)
      .describe('Collectors that match one agent are merged in ascending priority, then by name; maps merge, lists are replaced, the higher priority wins.'),
  })
  .strict()
  .meta({
    'x-kubernetes-validations': [
      { rule: 'has(self.config) != has(self.configYaml)', message: 'set exactly one of config (an object) and configYaml (YAML text)' },
    ],
  })
  .superRefine((s, ctx) => {
    if ((s.config === undefined) === (s.configYaml === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'set exactly one of config (an object) and configYaml (YAML text)', path: ['config'] });
    }
  });
export type CollectorSpec = z.infer<typeof CollectorSpec>;

export const FailingAgent = z.object({
  instanceUid: z.string(),
  name: z.string(),
  reason: z.enum(['ApplyFailed', 'InvalidConfig', 'MissingComponents', 'Drifted']).optional(),
  message: z.string(),
});

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
  drifted: z.number().int().optional(),
  agentVersions: z
    .array(z.object({ version: z.string(), agents: z.number().int() }))
    .max(10)
    .optional()
    .describe('Agent versions running this config (service.name service.version), most common first; at most 10, the rest as "other".'),
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
