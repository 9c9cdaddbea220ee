/**
 * The bridge as its agents' own-metrics destination: the sink that stores their process figures
 * in the fleet, and the URL of the admin endpoint's `/v1/metrics` an agent can reach.
 */
import type { ProcessFigures, AgentReport } from './metrics.js';
import type { OtlpReceiverCounters, OwnMetricsSink } from './receiver.js';
import { OTLP_METRICS_PATH } from './receiver.js';
import type { Metrics } from '../telemetry/metrics.js';

/** What the sink needs of the fleet (Fleet implements it). */
export interface ResourceStore {
  recordResources(uid: string, figures: ProcessFigures | null): boolean;
}

/** Stores each report on its agent; reports of unknown agents (and without a UUID instance id) are dropped. */
export function fleetSink(store: ResourceStore): OwnMetricsSink {
  return {
    accept(reports: AgentReport[]) {
      let matched = 0;
      let unknown = 0;
      let unidentified = 0;
      for (const r of reports) {
        if (r.instanceUid === null) unidentified++;
        else if (store.recordResources(r.instanceUid, r.figures)) matched++;
        else unknown++;
      }
      return { matched, unknown, unidentified };
    },
  };
}

/** The receiver's counters on the bridge's Prometheus metrics. */
export function receiverCounters(m: Pick<Metrics, 'ownMetricsRequests' | 'ownMetricsResources'>): OtlpReceiverCounters {
  return {
    request: (outcome) => m.ownMetricsRequests.inc({ outcome }),
    resources: (result, n) => {
      if (n > 0) m.ownMetricsResources.inc({ result }, n);
    },
  };
}

/**
 * `http(s)://HOST:ADMINPORT/v1/metrics` for an agent that reached the OpAMP endpoint as `opampEndpoint`
 * (the URL it used: its host is one the agent can reach); null when that URL cannot be parsed.
 */
export function bridgeMetricsUrl(opampEndpoint: string, adminPort: number, adminTls: boolean): string | null {
  let u: URL;
  try {
    u = new URL(opampEndpoint);
  } catch {
    return null;
  }
  if (!u.hostname) return null;
  return `${adminTls ? 'https' : 'http'}://${u.hostname}:${adminPort}${OTLP_METRICS_PATH}`;
}

/**
 * The own_metrics destination offered when `spec.ownTelemetry.metrics` is not set: the bridge
 * itself (unless `spec.ownTelemetry.bridgeReceivesMetrics` is false), at the host the agent used
 * for OpAMP and the admin port. Null when not offered (also before the admin endpoint listens).
 */
export function bridgeMetricsDestination(
  spec: { metrics?: unknown; bridgeReceivesMetrics?: boolean } | undefined,
  conn: { endpoint: string } | undefined,
  admin: { port: number; tls: boolean } | null,
): { endpoint: string; headers: Record<string, string> } | null {
  if (spec?.metrics !== undefined || spec?.bridgeReceivesMetrics === false || !conn || !admin) return null;
  const endpoint = bridgeMetricsUrl(conn.endpoint, admin.port, admin.tls);
  return endpoint ? { endpoint, headers: {} } : null;
}
