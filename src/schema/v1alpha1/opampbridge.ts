import { z } from 'zod';
import { Condition, GROUP_VERSION, LabelSelector, ObjectMeta } from './common.js';

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
    auth: z
      .object({
        mode: z
          .enum(['serviceAccountToken', 'none'])
          .default('serviceAccountToken')
          .describe('serviceAccountToken: agents send a pod-bound ServiceAccount token (Authorization: Bearer), verified with a TokenReview; the pod it is bound to is the agent\'s identity. none: no authentication (must be set explicitly; reported in status).'),
        audiences: z.array(z.string().min(1)).min(1).default(['fleetbridge']).describe('Audiences a token must carry (the TokenRequest audience of the projected token).'),
      })
      .strict()
      .default({ mode: 'serviceAccountToken', audiences: ['fleetbridge'] }),
    namespaceSelector: LabelSelector.optional().describe(
      "Namespaces whose Collectors and pods this bridge serves, by namespace label. Default: the bridge's own namespace only.",
    ),
    limits: z
      .object({
        maxAgents: z.number().int().min(1).default(20000),
        /** Largest AgentToServer accepted, in bytes (after decompression). */
        maxMessageBytes: z.number().int().min(1024).default(16 * 1024 * 1024),
        /** Messages per second one connection may send (burst: twice that); more get UNAVAILABLE. 0 = no limit. */
        maxMessagesPerSecond: z.number().min(0).default(50),
        /** Open WebSocket connections from one source address; more get 429. 0 = no limit (a proxy or NAT may put a fleet behind one address). */
        maxConnectionsPerSource: z.number().int().min(0).default(0),
      })
      .strict()
      .default({ maxAgents: 20000, maxMessageBytes: 16 * 1024 * 1024, maxMessagesPerSecond: 50, maxConnectionsPerSource: 0 }),
  })
  .strict();
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
