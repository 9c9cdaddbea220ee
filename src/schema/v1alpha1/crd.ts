/**
 * CustomResourceDefinitions generated from the zod schemas: the one source. `npm run gen:crds`
 * writes them to crds/; a test regenerates and diffs, another applies them to a real apiserver.
 */
import { z } from 'zod';
import { API_GROUP, API_VERSION } from './common.js';
import { CollectorSpec, CollectorStatus } from './collector.js';
import { OpAMPBridgeSpec, OpAMPBridgeStatus } from './opampbridge.js';

type Json = Record<string, unknown>;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/**
 * Turns zod's OpenAPI 3.0 output into a Kubernetes structural schema: no `additionalProperties`
 * beside `properties` (the apiserver forbids both), no zod safe-integer bounds, untyped
 * preserve-unknown nodes left untyped, conditions as a map list keyed by type.
 */
export function structural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(structural);
  if (!node || typeof node !== 'object') return node;
  const n = { ...(node as Json) };
  if (n['x-kubernetes-preserve-unknown-fields'] === true && n['anyOf']) {
    // string | object: leave it untyped; the apiserver keeps whatever is there.
    delete n['anyOf'];
  }
  if (n['properties'] && 'additionalProperties' in n) delete n['additionalProperties'];
  if (n['additionalProperties'] && typeof n['additionalProperties'] === 'object' && Object.keys(n['additionalProperties'] as object).length === 0) {
    n['additionalProperties'] = undefined;
    delete n['additionalProperties'];
    n['x-kubernetes-preserve-unknown-fields'] = true;
  }
  if (n['maximum'] === MAX_SAFE) delete n['maximum'];
  if (n['minimum'] === -MAX_SAFE) delete n['minimum'];
  for (const [k, v] of Object.entries(n)) {
    if (k === 'x-kubernetes-validations' || k === 'default' || k === 'enum') continue;
    n[k] = structural(v);
  }
  const props = n['properties'] as Json | undefined;
  if (props && props['conditions'] && (props['conditions'] as Json)['type'] === 'array') {
    props['conditions'] = { ...(props['conditions'] as Json), 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] };
  }
  return n;
}

function openApi(schema: z.ZodType): Json {
  return structural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' })) as Json;
}

interface CrdOptions {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  spec: z.ZodType;
  status: z.ZodType;
  columns: { name: string; type: string; jsonPath: string; description?: string; priority?: number }[];
  description: string;
}

function crd(o: CrdOptions): Json {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${o.plural}.${API_GROUP}` },
    spec: {
      group: API_GROUP,
      names: { kind: o.kind, listKind: `${o.kind}List`, plural: o.plural, singular: o.singular, shortNames: o.shortNames, categories: ['fleetbridge'] },
      scope: 'Namespaced',
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [...o.columns, { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: o.description,
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApi(o.spec),
                status: openApi(o.status),
              },
              required: ['spec'],
            },
          },
        },
      ],
    },
  };
}

const ready = (what: string) => ({ name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: `Whether the ${what} is ready` });

export function buildCrds(): { fileName: string; crd: Json }[] {
  return [
    {
      fileName: `${API_GROUP}_collectors.yaml`,
      crd: crd({
        kind: 'Collector',
        plural: 'collectors',
        singular: 'collector',
        shortNames: ['fbcol'],
        spec: CollectorSpec,
        status: CollectorStatus,
        description: 'A collector config for the agents (pods) that match a label selector, pushed over OpAMP by Fleetbridge.',
        columns: [
          ready('Collector'),
          { name: 'Matched', type: 'integer', jsonPath: '.status.matched', description: 'Connected agents the selector matches' },
          { name: 'Applied', type: 'integer', jsonPath: '.status.applied' },
          { name: 'Failed', type: 'integer', jsonPath: '.status.failed' },
          { name: 'Healthy', type: 'integer', jsonPath: '.status.healthy' },
          { name: 'Disconnected', type: 'integer', jsonPath: '.status.disconnected', priority: 1, description: 'Matched agents that disconnected within two heartbeat intervals' },
          { name: 'Hash', type: 'string', jsonPath: '.status.configHash', priority: 1 },
          { name: 'Version', type: 'string', jsonPath: '.status.agentVersions[0].version', priority: 1, description: 'The most common agent version' },
        ],
      }),
    },
    {
      fileName: `${API_GROUP}_opampbridges.yaml`,
      crd: crd({
        kind: 'OpAMPBridge',
        plural: 'opampbridges',
        singular: 'opampbridge',
        shortNames: ['fbbridge'],
        spec: OpAMPBridgeSpec,
        status: OpAMPBridgeStatus,
        description: 'A Fleetbridge OpAMP server: its endpoint and the namespaces whose Collectors and agents it serves.',
        columns: [
          ready('bridge'),
          { name: 'Agents', type: 'integer', jsonPath: '.status.agents.connected' },
          { name: 'Endpoint', type: 'string', jsonPath: '.status.endpoint' },
        ],
      }),
    },
  ];
}
