/**
 * What the bridge reads from its own Secrets, in either mode: TLS material for both endpoints and
 * the headers of its own-telemetry destinations.
 */
import type { AgentConnection } from '../fleet/agent.js';
import type { OwnTelemetry } from '../fleet/fleet.js';
import type { TlsMaterial } from '../opamp/tls.js';
import type { OwnMetricsCredentials } from '../otlp/credentials.js';
import type { SecretValue } from '../render/secrets.js';
import type { OpAMPBridgeSpec } from '../schema/v1alpha1/index.js';
import { bridgeMetricsDestination } from './own-metrics.js';

export interface SecretLookup {
  get(namespace: string, name: string): SecretValue | undefined;
}

export class BridgeSecrets {
  constructor(
    private readonly lookup: SecretLookup,
    private readonly namespace: string,
    /** Where Secrets come from, for messages: e.g. " in ./manifests". */
    private readonly where: string,
  ) {}

  /** A Secret in the bridge's namespace. */
  get(name: string | undefined): SecretValue | undefined {
    return name ? this.lookup.get(this.namespace, name) : undefined;
  }

  /** PEMs of kubernetes.io/tls-style Secrets (and the client CA when `withCa`), a reason they are unusable, or undefined without TLS. */
  tlsMaterial(tls: { secretName: string; clientCASecretName?: string | undefined } | undefined, withCa = true): TlsMaterial | string | undefined {
    if (!tls) return undefined;
    const c = this.get(tls.secretName);
    const cert = c?.data['tls.crt'];
    const key = c?.data['tls.key'];
    if (!cert || !key) return `Secret ${this.namespace}/${tls.secretName} with tls.crt and tls.key not found${this.where}`;
    if (!withCa || !tls.clientCASecretName) return { cert, key };
    const ca = this.get(tls.clientCASecretName)?.data['ca.crt'];
    if (!ca) return `Secret ${this.namespace}/${tls.clientCASecretName} with ca.crt not found${this.where}`;
    return { cert, key, clientCa: ca };
  }

  /** Like tlsMaterial; throws when an endpoint asks for TLS and its certificate is not usable (never plain text instead). */
  tlsOrThrow(which: string, tls: Parameters<BridgeSecrets['tlsMaterial']>[0], withCa = true): TlsMaterial | undefined {
    const m = this.tlsMaterial(tls, withCa);
    if (typeof m === 'string') throw new Error(`cannot serve the ${which} endpoint with TLS: ${m}`);
    return m;
  }

  /** spec.ownTelemetry with header values from their Secrets (a destination whose Secret is missing is not offered). */
  ownTelemetry(
    spec: OpAMPBridgeSpec,
    conn: AgentConnection | undefined,
    admin: { port: number; tls: boolean; loopbackOnly: boolean } | null,
    credentials: OwnMetricsCredentials,
  ): OwnTelemetry {
    const out: OwnTelemetry = {};
    for (const sig of ['metrics', 'traces', 'logs'] as const) {
      const d = spec.ownTelemetry?.[sig];
      if (!d) continue;
      const h = this.get(d.headersSecretName);
      if (d.headersSecretName && !h) continue;
      out[sig] = { endpoint: d.endpoint, headers: { ...(h?.data ?? {}) } };
    }
    // By default agents send their own metrics to the bridge (admin endpoint, /v1/metrics).
    const bridgeMetrics = bridgeMetricsDestination(spec.ownTelemetry, conn, admin, credentials);
    if (bridgeMetrics) out.metrics = bridgeMetrics;
    return out;
  }
}
