import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every Prometheus metric of the bridge, on one registry (no global state: tests build many). */
export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'fleetbridge_' });
  const counter = <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []) => new Counter<L>({ name, help, labelNames, registers: [registry] });
  const gauge = <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers: [registry] });
  const m = {
    registry,
    agentsConnected: gauge('fleetbridge_agents_connected', 'Agents currently connected, by transport', ['transport'] as const),
    agentsUnbound: gauge('fleetbridge_agents_unbound', 'Connected agents that get no config because their identity is not accepted (e.g. claims that disagree with their credential)'),
    messagesReceived: counter('fleetbridge_opamp_messages_received_total', 'AgentToServer messages received, by transport', ['transport'] as const),
    messagesSent: counter('fleetbridge_opamp_messages_sent_total', 'ServerToAgent messages sent, by transport', ['transport'] as const),
    protocolErrors: counter('fleetbridge_opamp_protocol_errors_total', 'Malformed or refused messages and requests, by transport and error code', ['transport', 'code'] as const),
    unsupportedRequests: counter('fleetbridge_opamp_unsupported_requests_total', 'Agent requests this server does not serve, refused explicitly, by kind: connection_settings_request (a client certificate asked for), custom_message', ['kind'] as const),
    agentsRecentlyDisconnected: gauge('fleetbridge_agents_recently_disconnected', 'Agents that disconnected within the grace (two heartbeat intervals) and are no longer counted as connected, matched or applied'),
    secretReloads: counter('fleetbridge_secret_reloads_total', "Reloads of what the bridge reads from its own Secrets, by use (bearer_tokens, opamp_tls, admin_tls) and outcome (ok; error: the Secret is missing or unusable, and the previous material keeps serving)", ['use', 'outcome'] as const),
    configRepushes: counter('fleetbridge_config_repushes_total', 'Remote configs pushed once more because the agent reported them APPLIED but its effective config lacked them'),
    configPushes: counter('fleetbridge_config_pushes_total', 'Remote configs sent to agents', ['transport'] as const),
    configApplyFailures: counter('fleetbridge_config_apply_failures_total', 'Remote config statuses FAILED reported by agents'),
    packageOffers: counter('fleetbridge_package_offers_total', 'PackagesAvailable messages sent to agents', ['transport'] as const),
    packageDownloads: counter('fleetbridge_package_downloads_total', 'Package file requests to the OpAMP endpoint (GET /v1/packages/...), by outcome: served, partial, not_modified, unauthenticated, forbidden, not_found, unavailable, bad_request', ['outcome'] as const),
    packageStates: gauge('fleetbridge_agents_package_state', 'Agents offered packages, by where they stand: installed, installing, failed, unsupported (does not accept packages), held (nothing offered: a problem in the declaration)', ['state'] as const),
    configStatus: gauge('fleetbridge_agents_config_status', 'Connected agents by remote config state relative to their desired config (applied, applying, failed, readonly, none)', ['state'] as const),
    manifestErrors: gauge('fleetbridge_manifest_invalid_files', 'Manifest files currently invalid (standalone mode)'),
    agentsRssBytes: gauge('fleetbridge_collector_agents_rss_bytes', "Resident memory of a Collector's connected agents, from their own metrics: sum or max over the agents that reported it", ['namespace', 'collector', 'stat'] as const),
    agentsCpuSeconds: gauge('fleetbridge_collector_agents_cpu_seconds', "CPU seconds used by a Collector's connected agents since they started, from their own metrics: sum or max over the agents that reported it", ['namespace', 'collector', 'stat'] as const),
    ownMetricsRequests: counter('fleetbridge_own_metrics_requests_total', 'OTLP metrics requests to the admin endpoint (POST /v1/metrics), by outcome', ['outcome'] as const),
    ownMetricsResources: counter('fleetbridge_own_metrics_resources_total', 'Resources in OTLP metrics requests, by result: matched (an agent the bridge knows), unknown (dropped: service.instance.id of no known agent), unidentified (dropped: no UUID service.instance.id)', ['result'] as const),
    renderDuration: new Histogram({
      name: 'fleetbridge_render_duration_seconds',
      help: 'Time to apply a new desired state to every agent',
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
      registers: [registry],
    }),
  };
  return m;
}
export type Metrics = ReturnType<typeof createMetrics>;
