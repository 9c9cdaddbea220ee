/**
 * The bridge as its agents' own-metrics destination: the sink that stores their process figures
 * in the fleet, and the URL of the admin endpoint's `/v1/metrics` an agent can reach.
 */
import { Counter } from 'prom-client';
import type { ProcessFigures, AgentReport } from '../otlp/metrics.js';
import type { OtlpReceiverCounters, OwnMetricsSink, SinkResult } from '../otlp/receiver.js';
import { OTLP_METRICS_PATH } from '../otlp/receiver.js';
import type { OwnMetricsCredentials } from '../otlp/credentials.js';
import { holderOf } from '../fleet/fleet.js';
import { isLoopback } from '../api/access.js';
import type { AgentConnection } from '../opamp/connection.js';
import type { Metrics } from '../telemetry/metrics.js';

/** What the sink needs of the fleet (Fleet implements it). */
export interface ResourceStore {
  recordResources(uid: string, figures: ProcessFigures | null): boolean;
}

/** The agent records the credential check reads (Fleet implements it): who holds a uid, and whether it is (or just was) connected. */
export interface HolderStore<R extends { session: { holder: string | null; connected: boolean } } = { session: { holder: string | null; connected: boolean } }> {
  get(uid: string): R | undefined;
  recentlyDisconnected(rec: R): boolean;
}

/**
 * Stores each report on its agent; reports of unknown agents (and without a UUID instance id) are
 * dropped. With `credentials`, a report of a known agent is kept only when `token` is the
 * credential minted for that uid and the identity holding it, and the agent is connected (or
 * within the grace after a disconnect); one report that fails makes the whole request kept nothing
 * (`forbidden`).
 */
export function fleetSink<R extends { session: { holder: string | null; connected: boolean } }>(store: ResourceStore & Partial<HolderStore<R>>, credentials?: OwnMetricsCredentials): OwnMetricsSink {
  return {
    accept(reports: AgentReport[], token: string | null): SinkResult {
      let matched = 0;
      let unknown = 0;
      let unidentified = 0;
      let forbidden = 0;
      const keep: AgentReport[] = [];
      for (const r of reports) {
        if (r.instanceUid === null) {
          unidentified++;
          continue;
        }
        if (credentials && store.get) {
          const rec = store.get(r.instanceUid);
          if (!rec) {
            unknown++;
            continue;
          }
          const live = rec.session.connected || (store.recentlyDisconnected?.(rec) ?? false);
          if (!live || token === null || !credentials.matches(token, r.instanceUid, rec.session.holder)) {
            forbidden++;
            continue;
          }
        }
        keep.push(r);
      }
      if (forbidden > 0) return { matched: 0, unknown, unidentified, forbidden };
      for (const r of keep) {
        if (store.recordResources(r.instanceUid!, r.figures)) matched++;
        else unknown++;
      }
      return { matched, unknown, unidentified, forbidden: 0 };
    },
  };
}

/** The receiver's counters on the bridge's Prometheus metrics. */
export function receiverCounters(m: Pick<Metrics, 'ownMetricsRequests' | 'ownMetricsResources'> & Partial<Pick<Metrics, 'registry'>>): OtlpReceiverCounters {
  const dropped = m.registry
    ? ((m.registry.getSingleMetric('fleetbridge_own_metrics_points_dropped_total') as Counter<'reason'> | undefined) ??
      new Counter({ name: 'fleetbridge_own_metrics_points_dropped_total', help: 'Data points of process metrics in own metrics that were not used, by reason: negative, not_finite, out_of_time (farther than the allowed skew from now)', labelNames: ['reason'] as const, registers: [m.registry] }))
    : null;
  return {
    request: (outcome) => m.ownMetricsRequests.inc({ outcome }),
    resources: (result, n) => {
      if (n > 0) m.ownMetricsResources.inc({ result }, n);
    },
    points: (reason, n) => {
      if (n > 0) dropped?.inc({ reason }, n);
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
 * for OpAMP and the admin port, with the agent's own-metrics credential (`credentials`) as its
 * Authorization header. Null when not offered (also before the admin endpoint listens, and when
 * it listens on loopback only and the agent came from elsewhere).
 */
export function bridgeMetricsDestination(
  spec: { metrics?: unknown; bridgeReceivesMetrics?: boolean } | undefined,
  conn: Pick<AgentConnection, 'endpoint' | 'uidCache' | 'verified' | 'authorization'> | undefined,
  admin: { port: number; tls: boolean; loopbackOnly?: boolean } | null,
  credentials?: OwnMetricsCredentials,
): { endpoint: string; headers: Record<string, string> } | null {
  if (spec?.metrics !== undefined || spec?.bridgeReceivesMetrics === false || !conn || !admin) return null;
  const endpoint = bridgeMetricsUrl(conn.endpoint, admin.port, admin.tls);
  if (!endpoint) return null;
  // An admin endpoint on loopback only is offered only to agents that reached the bridge there.
  if (admin.loopbackOnly && !isLoopback(new URL(endpoint).hostname.replace(/^\[|\]$/g, ''))) return null;
  if (!credentials) return { endpoint, headers: {} };
  // The credential names the uid this connection carries and the identity holding it.
  const uid = conn.uidCache?.uid;
  if (!uid) return null;
  return { endpoint, headers: { Authorization: credentials.headerFor(uid, holderOf(conn as AgentConnection)) } };
}
