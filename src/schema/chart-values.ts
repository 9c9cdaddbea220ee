/**
 * The Helm chart's values (charts/fleetbridge/values.yaml) as a zod schema: `npm run gen:crds`
 * writes charts/fleetbridge/values.schema.json from it, so `helm install` refuses bad values with
 * a clear message, and bridge.spec is checked by the same schema as the OpAMPBridge CRD.
 */
import { z } from 'zod';
import { ObjectName, OpAMPBridgeSpec } from './v1alpha1/index.js';

const Quantity = z.union([z.string().regex(/^[0-9.]+[a-zA-Z]*$/, { message: 'must be a Kubernetes quantity, e.g. 100m or 128Mi' }), z.number()]);
const Resources = z
  .object({
    requests: z.record(z.string(), Quantity).optional(),
    limits: z.record(z.string(), Quantity).optional(),
  })
  .strict();
const AnyMap = z.record(z.string(), z.unknown());
/** An rbac.authorization.k8s.io/v1 Subject. */
const RbacSubject = z
  .object({
    kind: z.enum(['ServiceAccount', 'User', 'Group']),
    name: z.string().min(1),
    namespace: z.string().min(1).optional(),
    apiGroup: z.string().optional(),
  })
  .strict();

export const ChartValues = z
  .object({
    image: z
      .object({
        repository: z.string().min(1),
        tag: z.string().describe("Default: the chart's appVersion."),
        pullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']),
      })
      .strict(),
    imagePullSecrets: z.array(z.object({ name: z.string().min(1) }).strict()),
    replicaCount: z.number().int().min(1).max(20).describe('Every replica serves OpAMP; a Lease elects the one that writes status.'),
    bridge: z
      .object({
        name: ObjectName.describe('The OpAMPBridge this release serves, and its Service.'),
        create: z.boolean(),
        spec: OpAMPBridgeSpec,
      })
      .strict(),
    service: z
      .object({
        type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer']),
        annotations: z.record(z.string(), z.string()),
        adminPort: z.number().int().min(1).max(65535),
      })
      .strict(),
    admin: z
      .object({
        auth: z.enum(['kubernetes', 'none']).describe('kubernetes: TokenReview and SubjectAccessReview for the API and /metrics; none: open, on loopback only (probes fail).'),
        metricsAuth: z.boolean().describe('false: /metrics needs no token (the API still does).'),
        viewers: z.array(RbacSubject).describe('Subjects bound to the viewer ClusterRole (API, /metrics, read Collectors and OpAMPBridges).'),
        metricsReaders: z.array(RbacSubject).describe('Subjects bound to the metrics-reader ClusterRole (/metrics).'),
      })
      .strict(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']),
    serviceAccount: z.object({ create: z.boolean(), name: z.string(), annotations: z.record(z.string(), z.string()) }).strict(),
    secrets: z.object({ resourceNames: z.array(ObjectName) }).strict(),
    resources: Resources,
    podSecurityContext: AnyMap,
    securityContext: AnyMap,
    podDisruptionBudget: z.object({ enabled: z.boolean(), minAvailable: z.union([z.number().int().min(0), z.string().regex(/^[0-9]+%$/)]) }).strict(),
    serviceMonitor: z.object({ enabled: z.boolean(), interval: z.string().regex(/^[0-9]+(ms|s|m|h)$/), labels: z.record(z.string(), z.string()) }).strict(),
    podAnnotations: z.record(z.string(), z.string()),
    podLabels: z.record(z.string(), z.string()),
    nodeSelector: z.record(z.string(), z.string()),
    tolerations: z.array(AnyMap),
    affinity: AnyMap,
  })
  .strict();

/** values.schema.json, as committed. */
export function renderValuesSchema(): string {
  const schema = z.toJSONSchema(ChartValues, { target: 'draft-7', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return JSON.stringify({ ...schema, title: 'Values of the fleetbridge chart (generated from src/schema/chart-values.ts by npm run gen:crds)' }, null, 2) + '\n';
}
