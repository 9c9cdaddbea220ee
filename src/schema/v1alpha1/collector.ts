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

const HEX_SHA256 = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** One package (OpAMP PackageAvailable) offered to the agents a Collector selects. */
export const AgentPackage = z
  .object({
    name: z
      .string()
      .max(128)
      .regex(/^[A-Za-z0-9._-]*$/, { message: 'letters, digits, ".", "_" and "-" only' })
      .default('')
      .describe('The package name agents know it by. "" (the default) is the top-level package: the agent itself.'),
    type: z.enum(['TopLevel', 'Addon']).default('TopLevel').describe('OpAMP PackageType: TopLevel (the agent) or Addon.'),
    version: z.string().min(1).max(128).describe('The version offered (shown to agents and in status; agents compare hashes, not versions).'),
    sha256: z
      .string()
      .regex(HEX_SHA256, { message: 'must be 64 lowercase hex digits' })
      .describe("SHA-256 of the file (hex), sent as DownloadableFile.content_hash: the agent checks its download against it and reports a mismatch as a failed install."),
    signature: z.string().max(65536).regex(BASE64, { message: 'must be base64' }).optional().describe('A detached signature of the file (base64), passed to agents as is; checking it is up to the agent.'),
    url: z
      .string()
      .max(2048)
      .regex(/^https?:\/\/[^\s]+$/, { message: 'must be an http:// or https:// URL' })
      .optional()
      .describe('Agents download the file from this URL themselves. Set this or serve.'),
    headers: z
      .array(z.object({ name: z.string().min(1).max(256).regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, { message: 'must be an HTTP header name' }), value: z.string().max(8192) }).strict())
      .max(16)
      .optional()
      .describe('HTTP headers agents send with the download of url (e.g. Authorization). A value may use ${secret:NAME/KEY} from secretRefs; it is substituted only in what is sent to agents.'),
    serve: z
      .object({
        path: z.string().min(1).max(1024).optional().describe("A file under the bridge's packages.directory (OpAMPBridge spec), relative to it."),
        url: z
          .string()
          .max(2048)
          .regex(/^https?:\/\/[^\s]+$/, { message: 'must be an http:// or https:// URL' })
          .optional()
          .describe("The bridge fetches the file from this URL (which must start with one of the OpAMPBridge's packages.allowedSourcePrefixes), checks its SHA-256, keeps it, and serves it."),
      })
      .strict()
      .optional()
      .describe('The bridge serves the file itself, on its OpAMP endpoint (GET /v1/packages/...), to agents of this namespace only: for fleets that cannot reach the internet. Set this or url.'),
  })
  .strict()
  .meta({
    'x-kubernetes-validations': [
      { rule: 'has(self.url) != has(self.serve)', message: 'set exactly one of url (agents download it) and serve (the bridge serves it)' },
      { rule: '!has(self.serve) || has(self.serve.path) != has(self.serve.url)', message: 'serve needs exactly one of path and url' },
      { rule: '!has(self.headers) || has(self.url)', message: 'headers are for url downloads (the bridge authenticates served downloads itself)' },
    ],
  })
  .superRefine((p, ctx) => {
    if ((p.url === undefined) === (p.serve === undefined)) ctx.addIssue({ code: 'custom', message: 'set exactly one of url (agents download it) and serve (the bridge serves it)', path: ['url'] });
    if (p.serve && (p.serve.path === undefined) === (p.serve.url === undefined)) ctx.addIssue({ code: 'custom', message: 'serve needs exactly one of path and url', path: ['serve'] });
    if (p.headers && p.url === undefined) ctx.addIssue({ code: 'custom', message: 'headers are for url downloads (the bridge authenticates served downloads itself)', path: ['headers'] });
    if (p.serve?.path !== undefined && (p.serve.path.startsWith('/') || p.serve.path.split(/[\\/]/).includes('..'))) {
      ctx.addIssue({ code: 'custom', message: 'must be a relative path inside packages.directory (no leading / and no ..)', path: ['serve', 'path'] });
    }
  });
export type AgentPackage = z.infer<typeof AgentPackage>;

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
    packages: z
      .array(AgentPackage)
      .max(8)
      .meta({ 'x-kubernetes-validations': [{ rule: 'self.all(p, self.exists_one(q, q.name == p.name))', message: 'package names must be unique' }] })
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        for (const [i, p] of list.entries()) {
          if (seen.has(p.name)) ctx.addIssue({ code: 'custom', message: `package name ${JSON.stringify(p.name)} appears twice`, path: [i, 'name'] });
          seen.add(p.name);
        }
      })
      .optional()
      .describe(
        'Packages offered (OpAMP PackagesAvailable) to the selected agents that accept packages: the agent downloads each file, checks its SHA-256 and installs it, and reports its progress (status.packages). When several Collectors match one agent, their packages are combined by name, the higher priority winning.',
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
  reason: z.enum(['ApplyFailed', 'InvalidConfig', 'MissingComponents', 'Drifted', 'PackageInstallFailed']).optional(),
  message: z.string(),
});

export const CollectorStatus = z.object({
  observedGeneration: z.number().int().optional(),
  configHash: z.string().optional(),
  conditions: z.array(Condition).optional(),
  matched: z.number().int().optional().describe('Connected agents this Collector selects (every count is of connected agents; HTTP agents count while they poll on time).'),
  connected: z.number().int().optional(),
  disconnected: z.number().int().optional().describe('Selected agents that disconnected within the last two heartbeat intervals; counted nowhere else.'),
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
  packages: z
    .object({
      hash: z.string().describe("The all_packages_hash of this Collector's packages (hex)."),
      offered: z.number().int().describe('Matched agents that accept packages (the rest cannot be offered them).'),
      installed: z.number().int().describe('Agents that report every offered package installed.'),
      installing: z.number().int().describe('Agents that were offered the packages and have not finished (pending, downloading, installing).'),
      failed: z.number().int().describe('Agents that report a failed install.'),
      unsupported: z.number().int().describe('Matched agents that do not accept packages (no AcceptsPackages capability).'),
      problems: z.array(z.string()).max(5).optional().describe('Why the packages are not offered at all (e.g. serve.path without the bridge\'s packages.directory).'),
    })
    .optional()
    .describe('Where the agents stand with spec.packages (absent when there are none).'),
  resources: z
    .object({
      agents: z.number().int().describe('Connected matched agents that reported their own process figures.'),
      memoryTotalBytes: z.number().int().describe('Resident memory of those agents, summed.'),
      memoryMaxBytes: z.number().int().describe('The largest resident memory of one of them.'),
      cpuSecondsTotal: z.number().describe('CPU seconds those agents have used since they started, summed.'),
    })
    .optional()
    .describe('What the agents report about themselves in their own metrics (OpAMP own_metrics offered by the bridge); absent when none report.'),
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
