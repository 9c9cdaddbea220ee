/**
 * Starts a real standalone bridge in-process on loopback with free ports and a temp manifest
 * folder, and gives tests typed access to its admin API.
 */
import { mkdtemp, rm, writeFile, rename, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startStandalone, type RunningBridge } from '../../src/app.js';
import type { AgentView, CollectorView } from '../../src/api/views.js';
import { createLogger } from '../../src/telemetry/logger.js';

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
  stop(): Promise<void>;
}

export interface TestBridgeOptions {
  manifests?: Record<string, string>;
  maxMessageBytes?: number;
  heartbeatIntervalSeconds?: number;
  pingIntervalMs?: number;
  sweepIntervalMs?: number;
  maxMessagesPerSecond?: number;
  maxConnectionsPerSource?: number;
  /** Manifest folder rescan period, ms (default 2,000): long, to see that the watcher alone notices changes. */
  watchRescanMs?: number;
}

export async function startTestBridge(opts: TestBridgeOptions = {}): Promise<TestBridge> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetbridge-test-'));
  for (const [name, text] of Object.entries(opts.manifests ?? {})) await writeFile(join(dir, name), text);
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
  const running = await startStandalone({
    manifestsDir: dir,
    logger,
    opampPort: 0,
    httpPort: 0,
    host: '127.0.0.1',
    maxMessageBytes: opts.maxMessageBytes,
    heartbeatIntervalSeconds: opts.heartbeatIntervalSeconds ?? 1,
    pingIntervalMs: opts.pingIntervalMs,
    maxMessagesPerSecond: opts.maxMessagesPerSecond,
    maxConnectionsPerSource: opts.maxConnectionsPerSource,
    sweepIntervalMs: opts.sweepIntervalMs ?? 500,
    watchRescanMs: opts.watchRescanMs,
  });
  const api = running.apiUrl;
  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const res = await fetch(api + path);
    return { status: res.status, body: (await res.json()) as T };
  };
  const bridge: TestBridge = {
    opampWsUrl: running.opampUrl.websocket,
    opampHttpUrl: running.opampUrl.http,
    apiUrl: api,
    manifestsDir: dir,
    running,
    logs,
    async writeManifest(name, text) {
      // Write then rename, so the watcher never reads a half-written file.
      const tmp = join(dir, `.${name}.tmp`);
      await writeFile(tmp, text);
      await rename(tmp, join(dir, name));
    },
    async removeManifest(name) {
      await unlink(join(dir, name));
    },
    async getAgents() {
      return (await get<{ agents: AgentView[] }>('/api/v1/agents')).body.agents;
    },
    async getAgent(uid) {
      const r = await get<AgentView>(`/api/v1/agents/${encodeURIComponent(uid)}`);
      return r.status === 200 ? r.body : undefined;
    },
    async getCollectors() {
      return (await get<{ collectors: CollectorView[]; invalidFiles: { path: string; issues: string[] }[] }>('/api/v1/collectors')).body;
    },
    async getCollector(name, namespace = 'default') {
      const { collectors } = await bridge.getCollectors();
      return collectors.find((c) => c.name === name && c.namespace === namespace);
    },
    async metricsText() {
      return (await fetch(api + '/metrics')).text();
    },
    async stop() {
      await running.stop();
      await rm(dir, { recursive: true, force: true });
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
