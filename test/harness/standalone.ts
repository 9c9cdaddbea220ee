/**
 * Starts a real standalone bridge in-process on loopback with free ports and a temp manifest
 * folder, and gives tests typed access to its admin API.
 */
import { Writable } from 'node:stream';
import { startStandalone, type RunningBridge } from '../../src/bridge/standalone.js';
import type { AgentView, CollectorView } from '../../src/fleet/view-types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { adminClient, createManifestFolder, writeAdminToken } from './bridge-client.js';

export interface TestBridge {
  opampWsUrl: string;
  opampHttpUrl: string;
  apiUrl: string;
  manifestsDir: string;
  running: RunningBridge;
  /** Every JSON log line the bridge wrote. */
  logs: Record<string, unknown>[];
  writeManifest(fileName: string, yamlText: string): Promise<void>;
  removeManifest(fileName: string): Promise<void>;
  getAgents(): Promise<AgentView[]>;
  getAgent(uid: string): Promise<AgentView | undefined>;
  getCollectors(): Promise<{ collectors: CollectorView[]; invalidFiles: { path: string; issues: string[] }[] }>;
  getCollector(name: string, namespace?: string): Promise<CollectorView | undefined>;
  metricsText(): Promise<string>;
  /** Headers that admit to the admin API and /metrics (`Authorization` when an admin token is configured, else none). */
  adminHeaders: Record<string, string>;
  stop(): Promise<void>;
}

export interface TestBridgeOptions {
  manifests?: Record<string, string>;
  maxMessageBytes?: number;
  /** Default 1 (overrides the manifest); null: the manifest's (or the default 30). */
  heartbeatIntervalSeconds?: number | null;
  pingIntervalMs?: number;
  sweepIntervalMs?: number;
  maxMessagesPerSecond?: number;
  maxConnectionsPerSource?: number;
  /** Manifest folder rescan period, ms (default 2,000): long, to see that the watcher alone notices changes. */
  watchRescanMs?: number;
  /**
   * An admin token (written to a file passed as adminTokenFile): the admin API and /metrics then
   * need it, and the harness's getters send it. Default: none (the admin endpoint is open, on loopback).
   */
  adminToken?: string;
  /** The token the harness's getters send when the token comes from elsewhere (spec.admin.tokenSecretName). */
  adminHeaders?: Record<string, string>;
  metricsAuth?: boolean;
  ownMetricsMaxSkewMs?: number;
}

export async function startTestBridge(opts: TestBridgeOptions = {}): Promise<TestBridge> {
  const folder = await createManifestFolder('fleetbridge-test-', opts.manifests);
  const dir = folder.dir;
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim()) {
          try {
            logs.push(JSON.parse(line) as Record<string, unknown>);
          } catch {
            logs.push({ raw: line });
          }
        }
      }
      cb();
    },
  });
  const logger = createLogger({ level: process.env['FLEETBRIDGE_TEST_LOG_LEVEL'] ?? 'debug', destination: sink });
  const token = opts.adminToken !== undefined ? await writeAdminToken(opts.adminToken) : undefined;
  const adminHeaders: Record<string, string> = opts.adminHeaders ?? token?.headers ?? {};
  const running = await startStandalone({
    ...(token ? { adminTokenFile: token.file } : {}),
    ...(opts.metricsAuth !== undefined ? { metricsAuth: opts.metricsAuth } : {}),
    ...(opts.ownMetricsMaxSkewMs !== undefined ? { ownMetricsMaxSkewMs: opts.ownMetricsMaxSkewMs } : {}),
    manifestsDir: dir,
    logger,
    opampPort: 0,
    httpPort: 0,
    host: '127.0.0.1',
    maxMessageBytes: opts.maxMessageBytes,
    heartbeatIntervalSeconds: opts.heartbeatIntervalSeconds === null ? undefined : (opts.heartbeatIntervalSeconds ?? 1),
    pingIntervalMs: opts.pingIntervalMs,
    maxMessagesPerSecond: opts.maxMessagesPerSecond,
    maxConnectionsPerSource: opts.maxConnectionsPerSource,
    sweepIntervalMs: opts.sweepIntervalMs ?? 500,
    watchRescanMs: opts.watchRescanMs,
  });
  const bridge: TestBridge = {
    ...adminClient(running.apiUrl, adminHeaders),
    opampWsUrl: running.opampUrl.websocket,
    opampHttpUrl: running.opampUrl.http,
    apiUrl: running.apiUrl,
    manifestsDir: dir,
    running,
    logs,
    adminHeaders,
    writeManifest: folder.writeManifest,
    removeManifest: folder.removeManifest,
    async stop() {
      await running.stop();
      await folder.remove();
      await token?.remove();
    },
  };
  return bridge;
}

/** A Collector manifest for tests. */
export function collectorYaml(name: string, matchLabels: Record<string, string>, config: string | object, extra: { priority?: number; namespace?: string } = {}): string {
  const cfg = typeof config === 'string' ? config : JSON.stringify(config);
  return [
    'apiVersion: fleetbridge.dev/v1alpha1',
    'kind: Collector',
    `metadata: { name: ${name}, namespace: ${extra.namespace ?? 'default'} }`,
    'spec:',
    `  priority: ${extra.priority ?? 0}`,
    `  selector: { matchLabels: ${JSON.stringify(matchLabels)} }`,
    typeof config === 'string' ? `  configYaml: ${JSON.stringify(cfg)}` : `  config: ${cfg}`,
    '',
  ].join('\n');
}
