/**
 * What the in-process bridge (standalone.ts) and the child-process bridge (bridge-process.ts)
 * share: a temporary manifest folder the test edits, the admin token file, and a typed client of
 * the admin API and /metrics.
 */
import { mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentView, CollectorView } from '../../src/fleet/view-types.js';

export interface ManifestFolder {
  dir: string;
  /** Write then rename, so the watcher never reads a half-written file. */
  writeManifest(name: string, text: string): Promise<void>;
  removeManifest(name: string): Promise<void>;
  /** Removes the folder. */
  remove(): Promise<void>;
}

/** A new temporary folder (`<tmp>/<prefix>XXXXXX`) holding `manifests` (file name → YAML text). */
export async function createManifestFolder(prefix: string, manifests: Record<string, string> = {}): Promise<ManifestFolder> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  for (const [name, text] of Object.entries(manifests)) await writeFile(join(dir, name), text);
  return {
    dir,
    async writeManifest(name, text) {
      const tmp = join(dir, `.${name}.tmp`);
      await writeFile(tmp, text);
      await rename(tmp, join(dir, name));
    },
    async removeManifest(name) {
      await unlink(join(dir, name));
    },
    async remove() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface AdminToken {
  /** The token file (mode 0600), in a folder of its own: the bridge reads every file of the manifest folder as a manifest. */
  file: string;
  /** Headers that admit to the admin API and /metrics. */
  headers: Record<string, string>;
  remove(): Promise<void>;
}

/** Writes `token` to a new temporary file for --admin-token-file / adminTokenFile. */
export async function writeAdminToken(token: string): Promise<AdminToken> {
  const folder = await mkdtemp(join(tmpdir(), 'fleetbridge-admin-'));
  const file = join(folder, 'token');
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  return { file, headers: { Authorization: `Bearer ${token}` }, remove: () => rm(folder, { recursive: true, force: true }) };
}

export interface AdminClient {
  getAgents(): Promise<AgentView[]>;
  getAgent(uid: string): Promise<AgentView | undefined>;
  getCollectors(): Promise<{ collectors: CollectorView[]; invalidFiles: { path: string; issues: string[] }[] }>;
  getCollector(name: string, namespace?: string): Promise<CollectorView | undefined>;
  metricsText(): Promise<string>;
}

/** A client of the admin API at `apiUrl` (http://127.0.0.1:PORT), sending `headers`; `timeoutMs` bounds each request (default: unbounded). */
export function adminClient(apiUrl: string, headers: Record<string, string>, opts: { timeoutMs?: number } = {}): AdminClient {
  const init = (): RequestInit => ({ headers, ...(opts.timeoutMs !== undefined ? { signal: AbortSignal.timeout(opts.timeoutMs) } : {}) });
  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const res = await fetch(apiUrl + path, init());
    return { status: res.status, body: (await res.json()) as T };
  };
  const client: AdminClient = {
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
      const { collectors } = await client.getCollectors();
      return collectors.find((c) => c.name === name && c.namespace === namespace);
    },
    async metricsText() {
      return (await fetch(apiUrl + '/metrics', init())).text();
    },
  };
  return client;
}
