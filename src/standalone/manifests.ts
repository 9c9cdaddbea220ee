/**
 * Standalone mode's desired-state source: a folder of YAML manifests (the same resources
 * Kubernetes holds), loaded at start and watched. A bad file is reported with its path and the
 * exact problem and changes nothing: the last good version of that file stays in effect.
 */
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { Logger } from 'pino';
import { z } from 'zod';
import { API_GROUP, Collector, GROUP_VERSION, NamespaceName, ObjectName, OpAMPBridge } from '../schema/v1alpha1/index.js';
import { collectorRevision, parseCollectorConfig, type CollectorInput } from '../render/index.js';
import { packageSpecIssues } from '../packages/desired.js';

export interface LoadedCollector {
  resource: Collector;
  input: CollectorInput;
  source: string;
  warnings: string[];
}

/** A core v1 Secret from the folder: values decoded. Never log or show `data`. */
export interface LoadedSecret {
  namespace: string;
  name: string;
  data: Record<string, string>;
  source: string;
}

export interface LoadedBridge {
  resource: OpAMPBridge;
  source: string;
}

export interface InvalidFile {
  path: string;
  issues: string[];
}

export interface ManifestSnapshot {
  collectors: LoadedCollector[];
  bridge: LoadedBridge | null;
  secrets: LoadedSecret[];
  invalidFiles: InvalidFile[];
}

interface FileState {
  fingerprint: string;
  contentHash: string;
  lastGood: { collectors: LoadedCollector[]; bridges: LoadedBridge[]; secrets: LoadedSecret[] } | null;
  issues: string[];
}

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

export interface ManifestDirectoryOptions {
  dir: string;
  logger: Logger;
  /** Called with each new snapshot after a change (not for the initial load). */
  onChange?: (snapshot: ManifestSnapshot) => void;
  /** Debounce after a file-system event, ms. Default 100. */
  debounceMs?: number;
  /** Periodic rescan, ms, in case the watcher misses an event (network file systems). Default 2000. */
  rescanMs?: number;
}

export class ManifestDirectory {
  readonly #opts: Required<Omit<ManifestDirectoryOptions, 'onChange'>> & Pick<ManifestDirectoryOptions, 'onChange'>;
  readonly #files = new Map<string, FileState>();
  /** One non-recursive watcher per folder: Node 20's recursive watch on Linux stops reporting a file once it is replaced by a rename. */
  readonly #watchers = new Map<string, FSWatcher>();
  #watching = false;
  #dirs: string[] = [];
  #timer: NodeJS.Timeout | null = null;
  #rescan: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #snapshot: ManifestSnapshot = { collectors: [], bridge: null, secrets: [], invalidFiles: [] };

  constructor(opts: ManifestDirectoryOptions) {
    this.#opts = { debounceMs: 100, rescanMs: 2000, ...opts };
  }

  get snapshot(): ManifestSnapshot {
    return this.#snapshot;
  }

  /** Reads the folder once. Rejects only when the folder itself cannot be read. */
  async load(): Promise<ManifestSnapshot> {
    let st;
    try {
      st = await stat(this.#opts.dir);
    } catch (err) {
      throw new Error(`cannot read the manifest folder ${this.#opts.dir}: ${(err as Error).message}`, { cause: err });
    }
    if (!st.isDirectory()) throw new Error(`the manifest folder ${this.#opts.dir} is not a directory`);
    await this.#scan();
    return this.#snapshot;
  }

  /** Starts watching; changes are applied within debounceMs (or rescanMs at worst). */
  watch(): void {
    this.#watching = true;
    this.#syncWatchers();
    this.#rescan = setInterval(() => this.#schedule(), this.#opts.rescanMs);
    this.#rescan.unref();
  }

  async close(): Promise<void> {
    this.#watching = false;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#rescan) clearInterval(this.#rescan);
    await this.#running;
  }

  /** Watches every folder the last scan found (and no others); a folder that cannot be watched is left to the periodic rescan. */
  #syncWatchers(): void {
    if (!this.#watching) return;
    const want = new Set([this.#opts.dir, ...this.#dirs]);
    for (const [d, w] of this.#watchers) {
      if (!want.has(d)) {
        w.close();
        this.#watchers.delete(d);
      }
    }
    for (const d of want) {
      if (this.#watchers.has(d)) continue;
      try {
        const w = watch(d, () => this.#schedule());
        w.on('error', (err) => {
          this.#opts.logger.warn({ dir: this.#rel(d) || '.', err: err.message }, 'Manifest watcher failed; relying on periodic rescan');
          w.close();
          this.#watchers.delete(d);
        });
        this.#watchers.set(d, w);
      } catch (err) {
        this.#opts.logger.warn({ dir: this.#rel(d) || '.', err: (err as Error).message }, 'Cannot watch a manifest folder; relying on periodic rescan');
      }
    }
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#runScan();
    }, this.#opts.debounceMs);
  }

  async #runScan(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          if (await this.#scan()) this.#opts.onChange?.(this.#snapshot);
        } catch (err) {
          this.#opts.logger.error({ err }, 'Failed to rescan the manifest folder');
        }
      } while (this.#again);
    })();
    await this.#running;
    this.#running = null;
  }

  /** Re-reads changed files; returns true when the effective resources or the reported problems changed. */
  async #scan(): Promise<boolean> {
    const { files: paths, dirs } = await listManifests(this.#opts.dir);
    this.#dirs = dirs;
    this.#syncWatchers();
    let changed = false;
    for (const p of [...this.#files.keys()]) {
      if (!paths.includes(p)) {
        this.#files.delete(p);
        this.#opts.logger.info({ file: this.#rel(p) }, 'Manifest file removed');
        changed = true;
      }
    }
    for (const p of paths) {
      let fp: string;
      try {
        const st = await stat(p);
        fp = `${st.mtimeMs}:${st.size}:${st.ino}`;
      } catch {
        continue; // removed between listing and stat; the next scan sees it gone
      }
      const prev = this.#files.get(p);
      if (prev && prev.fingerprint === fp) continue;
      let text: string;
      try {
        text = await readFile(p, 'utf8');
      } catch {
        continue;
      }
      const contentHash = createHash('sha256').update(text).digest('hex');
      if (prev && prev.contentHash === contentHash) {
        prev.fingerprint = fp;
        continue;
      }
      const parsed = parseManifestText(text, this.#rel(p));
      const state: FileState = { fingerprint: fp, contentHash, lastGood: prev?.lastGood ?? null, issues: parsed.issues };
      if (parsed.issues.length === 0) {
        state.lastGood = { collectors: parsed.collectors, bridges: parsed.bridges, secrets: parsed.secrets };
        this.#opts.logger.info({ file: this.#rel(p), collectors: parsed.collectors.length, secrets: parsed.secrets.length, ...(parsed.skipped.length ? { skipped: parsed.skipped } : {}) }, 'Manifest file loaded');
      } else {
        this.#opts.logger.error(
          { file: this.#rel(p), issues: parsed.issues, keptLastGood: state.lastGood !== null },
          'Manifest file is invalid; it was skipped and nothing else changed',
        );
      }
      this.#files.set(p, state);
      changed = true;
    }
    if (changed) this.#snapshot = this.#assemble();
    return changed;
  }

  #rel(p: string): string {
    return relative(this.#opts.dir, p) || p;
  }

  #assemble(): ManifestSnapshot {
    const collectors = new Map<string, LoadedCollector>();
    const bridges: LoadedBridge[] = [];
    const secrets = new Map<string, LoadedSecret>();
    const invalidFiles: InvalidFile[] = [];
    for (const [p, st] of [...this.#files.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const issues = [...st.issues];
      for (const c of st.lastGood?.collectors ?? []) {
        const key = `${c.input.namespace}/${c.input.name}`;
        const other = collectors.get(key);
        if (other) {
          issues.push(`Collector ${key} is also defined in ${other.source}; this definition is ignored (FB_MANIFEST_DUPLICATE)`);
          continue;
        }
        collectors.set(key, c);
      }
      bridges.push(...(st.lastGood?.bridges ?? []));
      for (const sec of st.lastGood?.secrets ?? []) {
        const key = `${sec.namespace}/${sec.name}`;
        const other = secrets.get(key);
        if (other) {
          issues.push(`Secret ${key} is also defined in ${other.source}; this definition is ignored (FB_MANIFEST_DUPLICATE)`);
          continue;
        }
        secrets.set(key, sec);
      }
      if (issues.length > 0) invalidFiles.push({ path: this.#rel(p), issues });
    }
    if (bridges.length > 1) {
      invalidFiles.push({
        path: bridges[1]!.source,
        issues: [`more than one OpAMPBridge in the folder; using ${bridges[0]!.source} (standalone mode serves one endpoint)`],
      });
    }
    return { collectors: [...collectors.values()], bridge: bridges[0] ?? null, secrets: [...secrets.values()], invalidFiles };
  }
}

async function listManifests(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  const out: string[] = [];
  const dirs: string[] = [];
  const walk = async (d: string, depth: number) => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory() && depth < 8) {
        dirs.push(p);
        await walk(p, depth + 1);
      } else if (e.isFile() && MANIFEST_EXT.test(e.name)) out.push(p);
    }
  };
  await walk(dir, 0);
  return { files: out.sort(), dirs };
}

const SECRET_KEY = z.string().regex(/^[-._a-zA-Z0-9]+$/, { message: 'keys are letters, digits, "-", "_" and "."' });

/** A core v1 Secret, as much of it as standalone mode uses. */
const SecretManifest = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Secret'),
  metadata: z.object({ name: ObjectName, namespace: NamespaceName.optional() }).loose(),
  type: z.string().optional(),
  data: z
    .record(SECRET_KEY, z.string().regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, { message: 'must be base64 (or put the value in stringData)' }))
    .optional(),
  stringData: z.record(SECRET_KEY, z.string({ message: 'must be a string' })).optional(),
}).loose();

function zodIssues(where: string, err: z.ZodError): string[] {
  // A bad map key says why (zod's own message is only "Invalid key in record").
  const message = (i: z.core.$ZodIssue) => (i.code === 'invalid_key' && i.issues.length > 0 ? i.issues.map((k) => k.message).join('; ') : i.message);
  return err.issues.map((i) => `${where}: ${i.path.length ? i.path.join('.') + ': ' : ''}${message(i)}`);
}

/** Parses one file's text (one or more YAML documents). Pure; exported for tests. */
export function parseManifestText(
  text: string,
  source: string,
): { collectors: LoadedCollector[]; bridges: LoadedBridge[]; secrets: LoadedSecret[]; issues: string[]; skipped: string[] } {
  const issues: string[] = [];
  const skipped: string[] = [];
  const collectors: LoadedCollector[] = [];
  const bridges: LoadedBridge[] = [];
  const secrets: LoadedSecret[] = [];
  // Merge keys ("<<: *anchor") are honoured, as kubectl does when it reads the same manifests; a
  // Collector's spec.configYaml text is read separately, as the collector reads it (render/yaml.ts).
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true, merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${source} (document ${i + 1})` : source;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) issues.push(`${where}: invalid YAML: ${e.message.split('\n')[0]!.replace(/:$/, '')}`);
      return;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return; // an empty document
    if (typeof value !== 'object' || Array.isArray(value)) {
      issues.push(`${where}: expected a resource (a mapping with apiVersion and kind)`);
      return;
    }
    const obj = value as Record<string, unknown>;
    const apiVersion = obj['apiVersion'];
    if (apiVersion === 'v1' && obj['kind'] === 'Secret') {
      // Core Secrets: values for Collectors' secretRefs, bearer tokens and certificates. Problems
      // are told by key, never with the value.
      const r = SecretManifest.safeParse(obj);
      if (!r.success) return void issues.push(...zodIssues(`${where}: Secret`, r.error));
      const data: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.data.data ?? {})) data[k] = Buffer.from(v, 'base64').toString('utf8');
      Object.assign(data, r.data.stringData ?? {});
      secrets.push({ namespace: r.data.metadata.namespace ?? 'default', name: r.data.metadata.name, data, source });
      return;
    }
    // A folder may also hold other manifests (a Pod with the Supervisor sidecar, a ConfigMap):
    // documents of other API groups are not ours and are skipped. A wrong fleetbridge.dev version is an error.
    if (typeof apiVersion === 'string' && apiVersion.includes('/') ? !apiVersion.startsWith(`${API_GROUP}/`) : typeof apiVersion === 'string') {
      skipped.push(`${where}: ${String(obj['kind'] ?? '?')} (${apiVersion})`);
      return;
    }
    if (apiVersion !== GROUP_VERSION) {
      issues.push(`${where}: apiVersion must be ${GROUP_VERSION}, got ${JSON.stringify(obj['apiVersion'] ?? null)}`);
      return;
    }
    if (obj['kind'] === 'Collector') {
      const r = Collector.safeParse(obj);
      if (!r.success) return void issues.push(...zodIssues(`${where}: Collector`, r.error));
      const res = r.data;
      const namespace = res.metadata.namespace ?? 'default';
      const secretNames = (res.spec.secretRefs ?? []).map((x) => x.name);
      const cfg = parseCollectorConfig(res.spec.config ?? res.spec.configYaml ?? {}, secretNames);
      if (!cfg.ok) return void issues.push(...cfg.issues.map((m) => `${where}: Collector ${namespace}/${res.metadata.name}: spec.${res.spec.config ? 'config' : 'configYaml'}: ${m}`));
      const packageIssues = packageSpecIssues(res.spec.packages, secretNames);
      if (packageIssues.length > 0) return void issues.push(...packageIssues.map((m) => `${where}: Collector ${namespace}/${res.metadata.name}: ${m}`));
      const revision = collectorRevision(res.spec, cfg.config, secretNames);
      collectors.push({
        resource: { ...res, metadata: { ...res.metadata, namespace } },
        source,
        warnings: cfg.warnings,
        input: {
          namespace,
          name: res.metadata.name,
          generation: res.metadata.generation ?? 1,
          revision,
          priority: res.spec.priority,
          selector: res.spec.selector,
          config: cfg.config,
          secretNames,
          ...(res.spec.packages?.length ? { packages: res.spec.packages } : {}),
        },
      });
    } else if (obj['kind'] === 'OpAMPBridge') {
      const r = OpAMPBridge.safeParse(obj);
      if (!r.success) return void issues.push(...zodIssues(`${where}: OpAMPBridge`, r.error));
      bridges.push({ resource: r.data, source });
    } else {
      issues.push(`${where}: unknown kind ${JSON.stringify(obj['kind'] ?? null)}; expected Collector or OpAMPBridge`);
    }
  });
  return { collectors, bridges, secrets, issues, skipped };
}
