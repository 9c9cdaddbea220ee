import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every Prometheus metric of the bridge, on one registry (no global state: tests build many). */
export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'fleetbridge_' });
  const m = {
    registry,
    agentsConnected: new Gauge({
      name: 'fleetbridge_agents_connected',
      help: 'Agents currently connected, by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    agentsUnbound: new Gauge({
      name: 'fleetbridge_agents_unbound',
      help: 'Connected agents that get no config because their identity is not accepted (e.g. claims that disagree with their credential)',
      registers: [registry],
    }),
    messagesReceived: new Counter({
      name: 'fleetbridge_opamp_messages_received_total',
      help: 'AgentToServer messages received, by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    messagesSent: new Counter({
      name: 'fleetbridge_opamp_messages_sent_total',
      help: 'ServerToAgent messages sent, by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    protocolErrors: new Counter({
      name: 'fleetbridge_opamp_protocol_errors_total',
      help: 'Malformed or refused messages and requests, by transport and error code',
      labelNames: ['transport', 'code'] as const,
      registers: [registry],
    }),
    unsupportedRequests: new Counter({
      name: 'fleetbridge_opamp_unsupported_requests_total',
      help: 'Agent requests this server does not serve, refused explicitly, by kind: connection_settings_request (a client certificate asked for), custom_message',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    agentsRecentlyDisconnected: new Gauge({
      name: 'fleetbridge_agents_recently_disconnected',
      help: 'Agents that disconnected within the grace (two heartbeat intervals) and are no longer counted as connected, matched or applied',
      registers: [registry],
    }),
    configRepushes: new Counter({
      name: 'fleetbridge_config_repushes_total',
      help: 'Remote configs pushed once more because the agent reported them APPLIED but its effective config lacked them',
      registers: [registry],
    }),
    configPushes: new Counter({
      name: 'fleetbridge_config_pushes_total',
      help: 'Remote configs sent to agents',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    configApplyFailures: new Counter({
      name: 'fleetbridge_config_apply_failures_total',
      help: 'Remote config statuses FAILED reported by agents',
      registers: [registry],
    }),
    packageOffers: new Counter({
      name: 'fleetbridge_package_offers_total',
      help: 'PackagesAvailable messages sent to agents',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    packageDownloads: new Counter({
      name: 'fleetbridge_package_downloads_total',
      help: 'Package file requests to the OpAMP endpoint (GET /v1/packages/...), by outcome: served, partial, not_modified, unauthenticated, forbidden, not_found, unavailable, bad_request',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    packageStates: new Gauge({
      name: 'fleetbridge_agents_package_state',
      help: 'Agents offered packages, by where they stand: installed, installing, failed, unsupported (does not accept packages), held (nothing offered: a problem in the declaration)',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    configStatus: new Gauge({
      name: 'fleetbridge_agents_config_status',
      help: 'Connected agents by remote config state relative to their desired config (applied, applying, failed, readonly, none)',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    manifestErrors: new Gauge({
      name: 'fleetbridge_manifest_invalid_files',
      help: 'Manifest files currently invalid (standalone mode)',
      registers: [registry],
    }),
    agentsRssBytes: new Gauge({
      name: 'fleetbridge_collector_agents_rss_bytes',
      help: "Resident memory of a Collector's connected agents, from their own metrics: sum or max over the agents that reported it",
      labelNames: ['namespace', 'collector', 'stat'] as const,
      registers: [registry],
    }),
    agentsCpuSeconds: new Gauge({
      name: 'fleetbridge_collector_agents_cpu_seconds',
      help: "CPU seconds used by a Collector's connected agents since they started, from their own metrics: sum or max over the agents that reported it",
      labelNames: ['namespace', 'collector', 'stat'] as const,
      registers: [registry],
    }),
    ownMetricsRequests: new Counter({
      name: 'fleetbridge_own_metrics_requests_total',
      help: 'OTLP metrics requests to the admin endpoint (POST /v1/metrics), by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    ownMetricsResources: new Counter({
      name: 'fleetbridge_own_metrics_resources_total',
      help: 'Resources in OTLP metrics requests, by result: matched (an agent the bridge knows), unknown (dropped: service.instance.id of no known agent), unidentified (dropped: no UUID service.instance.id)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
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
