import { z } from 'zod';
import { Condition, GROUP_VERSION, LabelSelector, NamespaceName, ObjectMeta, ObjectName } from './common.js';

/** An OTLP/HTTP destination offered to agents for one signal of their own telemetry. */
export const TelemetryDestination = z
  .object({
    endpoint: z.url({ protocol: /^https?$/ }).describe('OTLP/HTTP URL, e.g. https://otlp.example:4318/v1/metrics.'),
    headersSecretName: ObjectName.optional().describe("Secret in the bridge's namespace: each key is a header name, its value the header value (e.g. an API key)."),
  })
  .strict();

export const OpAMPBridgeSpec = z
  .object({
    endpoint: z
      .object({
        port: z.number().int().min(1).max(65535).default(4320),
        path: z.string().regex(/^\//, { message: 'must start with /' }).default('/v1/opamp'),
      })
      .strict()
      .default({ port: 4320, path: '/v1/opamp' }),
    transports: z
      .array(z.enum(['websocket', 'http']))
      .min(1)
      .default(['websocket', 'http']),
    heartbeatIntervalSeconds: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(30)
      .describe('Heartbeat (and HTTP poll) interval offered to agents that accept OpAMP connection settings, in seconds.'),
    tls: z
      .object({
        secretName: ObjectName.describe('Secret (type kubernetes.io/tls) in the bridge\'s namespace with tls.crt and tls.key: the OpAMP endpoint serves TLS (wss://, https://) with it, and reloads it when the Secret changes, keeping connected agents.'),
        clientCASecretName: ObjectName.optional().describe('Secret in the bridge\'s namespace with ca.crt: client certificates are requested and verified against it. Required by auth.mode mtls.'),
      })
      .strict()
      .optional(),
    auth: z
      .object({
        mode: z
          .enum(['serviceAccountToken', 'bearerToken', 'mtls', 'none'])
          .default('serviceAccountToken')
          .describe(
            "serviceAccountToken: agents send a pod-bound ServiceAccount token (Authorization: Bearer), verified with a TokenReview; the pod it is bound to is the agent's identity. " +
              'bearerToken: agents send one of the tokens in auth.bearerToken.secretName; they are bound to the pods they claim. ' +
              "mtls: agents present a client certificate signed by tls.clientCASecretName's CA; its SPIFFE ID (spiffe://DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT) or subject CN (system:serviceaccount:NAMESPACE:SERVICEACCOUNT) limits the agent to pods of that namespace and ServiceAccount. " +
              'none: no authentication (must be set explicitly; reported in status).',
          ),
        audiences: z.array(z.string().min(1)).min(1).default(['fleetbridge']).describe('Audiences a ServiceAccount token must carry (the TokenRequest audience of the projected token).'),
        bearerToken: z
          .object({
            secretName: ObjectName.describe("Secret in the bridge's namespace: the value of every key is an accepted token (several allow rotation)."),
            currentKey: z
              .string()
              .min(1)
              .default('token')
              .describe('The key whose token is current: agents that connect with another accepted token are offered it (ConnectionSettingsOffers.opamp headers) and are counted as rotated once they reconnect with it.'),
            namespaces: z
              .array(NamespaceName)
              .max(256)
              .optional()
              .describe(
                "Standalone mode: more namespaces whose Secret named secretName holds tokens. A token grants only the namespace of the Secret it is declared in (the bridge's own, or one of these): an agent that claims another namespace (k8s.namespace.name) is refused. A token found in two namespaces is accepted in neither.",
              ),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({ mode: 'serviceAccountToken', audiences: ['fleetbridge'] })
      .meta({
        'x-kubernetes-validations': [{ rule: "self.mode != 'bearerToken' || has(self.bearerToken)", message: 'auth.mode bearerToken needs auth.bearerToken.secretName' }],
      })
      .superRefine((a, ctx) => {
        if (a.mode === 'bearerToken' && !a.bearerToken) ctx.addIssue({ code: 'custom', message: 'auth.mode bearerToken needs auth.bearerToken.secretName', path: ['bearerToken'] });
      }),
    ownTelemetry: z
      .object({
        metrics: TelemetryDestination.optional(),
        traces: TelemetryDestination.optional(),
        logs: TelemetryDestination.optional(),
        bridgeReceivesMetrics: z
          .boolean()
          .default(true)
          .describe(
            "When metrics is not set, agents that report their own metrics are offered the bridge's admin endpoint (POST /v1/metrics, at the host the agent reached the OpAMP endpoint by and the admin port): the bridge keeps each agent's memory and CPU figures (API, Prometheus). false offers nothing.",
          ),
      })
      .strict()
      .optional()
      .describe(
        'Where agents send their own telemetry: offered through ConnectionSettingsOffers (own_metrics, own_traces, own_logs) to agents that report that signal. Changing it, or rotating its headers Secret, offers the new settings to connected agents.',
      ),
    adminTLS: z
      .object({
        secretName: ObjectName.describe("Secret (type kubernetes.io/tls) in the bridge's namespace: the admin endpoint (probes, metrics, API) serves HTTPS with it, reloaded when it changes."),
        clientCASecretName: ObjectName.optional().describe(
          "Standalone mode: Secret in the bridge's namespace with ca.crt: the admin endpoint asks for client certificates, and one issued by this CA admits to the API and /metrics (with or besides admin.tokenSecretName). Kubernetes mode authorizes with TokenReview and SubjectAccessReview instead.",
        ),
      })
      .strict()
      .optional(),
    admin: z
      .object({
        tokenSecretName: ObjectName.optional().describe(
          "Standalone mode: Secret in the bridge's namespace whose every value is an accepted admin token (Authorization: Bearer) for the API and /metrics; reloaded when it changes. Without it, adminTLS.clientCASecretName or --admin-token-file, the admin endpoint listens on loopback only. Kubernetes mode authorizes with TokenReview and SubjectAccessReview instead.",
        ),
      })
      .strict()
      .optional()
      .describe('Who may use the admin endpoint (docs/adr/0008-admin-access.md). /healthz and /readyz are always open.'),
    packages: z
      .object({
        directory: z
          .string()
          .regex(/^\//, { message: 'must be an absolute path' })
          .optional()
          .describe("A folder in the bridge's filesystem (e.g. a mounted volume) whose files Collectors may offer with spec.packages[].serve.path. Unset: serve.path is refused."),
        allowedSourcePrefixes: z
          .array(z.string().regex(/^https?:\/\/[^\s]+\/$/, { message: 'must be an http(s) URL ending in /' }))
          .max(32)
          .optional()
          .describe('URL prefixes the bridge may fetch package files from for spec.packages[].serve.url (each ends in /). Unset: serve.url is refused (a Collector writer could otherwise make the bridge fetch any URL it can reach).'),
        maxFileBytes: z.number().int().min(1).default(1024 * 1024 * 1024).describe('Largest package file the bridge fetches for serve.url, in bytes. Default 1 GiB.'),
      })
      .strict()
      .optional()
      .describe('Where package files the bridge serves itself may come from (Collector spec.packages[].serve).'),
    namespaceSelector: LabelSelector.optional().describe(
      "Namespaces whose Collectors and pods this bridge serves, by namespace label. Default: the bridge's own namespace only.",
    ),
    limits: z
      .object({
        maxAgents: z.number().int().min(1).default(20000),
        /** Largest AgentToServer accepted, in bytes (after decompression). */
        maxMessageBytes: z.number().int().min(1024).default(4 * 1024 * 1024),
        newAgentsPerSource: z
          .object({
            burst: z.number().int().min(1).default(5000).describe('New instance uids one source address may introduce at once.'),
            perSecond: z.number().min(0.1).default(500).describe('Then this many a second; more are refused with UNAVAILABLE and a retry delay.'),
          })
          .strict()
          .optional()
          .describe('A flood of fresh instance uids from one address (a proxy or NAT may put a fleet behind one address: size the burst for its reconnect storm).'),
        agentReports: z
          .object({
            maxAttributes: z.number().int().min(1).optional().describe('Attributes per description list (nested entries included). Default 256.'),
            maxValueBytes: z.number().int().min(64).optional().describe('Bytes of one attribute value. Default 4096.'),
            maxHealthNodes: z.number().int().min(1).optional().describe('Components in a health report. Default 2000.'),
            maxEffectiveConfigBytes: z.number().int().min(1024).optional().describe('Bytes of an effective config, all files. Default 256 KiB.'),
            maxComponents: z.number().int().min(1).optional().describe('Entries of an available-components report. Default 5000.'),
          })
          .strict()
          .optional()
          .describe('What one agent may report; a message over a bound is refused with BAD_REQUEST and the reason (defaults: a real collector\'s largest reports with a wide margin).'),
        /** Messages per second one connection may send (burst: twice that); more get UNAVAILABLE. 0 = no limit. */
        maxMessagesPerSecond: z.number().min(0).default(50),
        /** Bytes per second one connection may send (burst: one largest message); more get UNAVAILABLE (HTTP 429). 0 = no limit. */
        maxBytesPerSecond: z.number().int().min(0).default(262144),
        /** Agents (WebSocket connections that sent a first message) from one source address; more get 429. 0 = no limit (a proxy or NAT may put a fleet behind one address). */
        maxConnectionsPerSource: z.number().int().min(0).default(0),
        /** Every open WebSocket connection, identified or not (file descriptors, memory). */
        maxConnections: z.number().int().min(1).default(19000).describe('Open WebSocket connections in all; more get 503 on upgrade.'),
        firstMessageTimeoutSeconds: z.number().int().min(1).default(10).describe('A WebSocket connection that sends no valid first message within this is closed (1008).'),
        maxPendingConnectionsPerSource: z
          .number()
          .int()
          .min(0)
          .optional()
          .describe("WebSocket connections from one address that have not sent a first message yet; past it the address's oldest such connection is closed. Default: maxConnectionsPerSource."),
      })
      .strict()
      .default({ maxAgents: 20000, maxMessageBytes: 4 * 1024 * 1024, maxMessagesPerSecond: 50, maxConnectionsPerSource: 0, maxConnections: 19000, firstMessageTimeoutSeconds: 10, maxBytesPerSecond: 262144 }),
  })
  .strict()
  .meta({
    'x-kubernetes-validations': [
      { rule: "!has(self.auth) || self.auth.mode != 'mtls' || (has(self.tls) && has(self.tls.clientCASecretName))", message: 'auth.mode mtls needs tls.secretName and tls.clientCASecretName' },
    ],
  })
  .superRefine((s, ctx) => {
    if (s.auth.mode === 'mtls' && !s.tls?.clientCASecretName) ctx.addIssue({ code: 'custom', message: 'auth.mode mtls needs tls.secretName and tls.clientCASecretName', path: ['tls'] });
  });
export type OpAMPBridgeSpec = z.infer<typeof OpAMPBridgeSpec>;

export const OpAMPBridgeStatus = z.object({
  observedGeneration: z.number().int().optional(),
  endpoint: z.string().optional(),
  conditions: z.array(Condition).optional(),
  agents: z
    .object({
      connected: z.number().int(),
      healthy: z.number().int(),
      unhealthy: z.number().int(),
      applied: z.number().int(),
      failed: z.number().int(),
      /** Connected agents that could not be bound to a pod this bridge serves (they get no config). */
      unbound: z.number().int(),
      /** Connected agents that authenticated with a bearer token other than the current one (rotation pending). */
      staleCredentials: z.number().int(),
    })
    .partial()
    .optional(),
});

export const OpAMPBridge = z
  .object({
    apiVersion: z.literal(GROUP_VERSION),
    kind: z.literal('OpAMPBridge'),
    metadata: ObjectMeta,
    spec: OpAMPBridgeSpec.default(OpAMPBridgeSpec.parse({})),
    status: OpAMPBridgeStatus.optional(),
  })
  .strict();
export type OpAMPBridge = z.infer<typeof OpAMPBridge>;
