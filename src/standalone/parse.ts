/**
 * One manifest file's text → the resources it declares, or the exact problems. Pure; runs in a
 * worker thread when the bridge runs from its build (src/standalone/parse-worker.ts), so a large or
 * hostile file never stalls the server.
 *
 * Guards against hostile YAML (each one reports the file and skips it; nothing else is affected):
 * - aliases: the document is measured as it would be once every alias is expanded, without expanding
 *   it (a memoized walk), and refused above MAX_EXPANDED_NODES; so a "billion laughs" file is
 *   refused at once while a legitimate file that reuses an anchor often is read;
 * - duplicate keys are found with one set per mapping (the YAML library's own check is quadratic);
 * - the size of the file itself is bounded by the folder scan (manifests.ts) before it is read.
 */
import { isAlias, isCollection, isMap, isPair, isScalar, parseAllDocuments, type Document } from 'yaml';
import { z } from 'zod';
import { API_GROUP, Collector, GROUP_VERSION, NamespaceName, ObjectName, OpAMPBridge } from '../schema/v1alpha1/index.js';
import type { CollectorInput } from '../render/index.js';
import { compileCollectorSpec } from '../controller/collector-compiler.js';

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

export interface ParsedManifest {
  collectors: LoadedCollector[];
  bridges: LoadedBridge[];
  secrets: LoadedSecret[];
  issues: string[];
  skipped: string[];
  /** Issues of documents whose kind is OpAMPBridge: an OpAMPBridge is present but invalid. */
  bridgeIssues: string[];
  /**
   * Some document could not be read far enough to know its kind (a YAML error, a refused alias
   * expansion, a scalar or list instead of a resource): it may be meant as the OpAMPBridge.
   */
  opaque: boolean;
}

/**
 * Largest number of YAML nodes (scalars, mappings, sequences, pairs) a document may have once its
 * aliases are expanded. A file of the largest allowed size without aliases has fewer (a 1.5 MiB
 * flow sequence `[1,1,...]` has about 790,000), so aliases can never make a file more work than the
 * largest plain file.
 */
export const MAX_EXPANDED_NODES = 1_000_000;

/**
 * Nodes `root` would have once aliases are expanded, stopping as soon as the count passes `limit`
 * (then returns a number above it). Each node is measured once (memoized), so the walk is linear in
 * the size of the text whatever the aliases make of it. An alias to a node that contains it is a
 * cycle: Infinity.
 */
export function expandedNodeCount(doc: Document, limit = MAX_EXPANDED_NODES): number {
  const memo = new Map<unknown, number>();
  const active = new Set<unknown>();
  const size = (node: unknown): number => {
    if (node === null || node === undefined) return 1;
    const known = memo.get(node);
    if (known !== undefined) return known;
    if (active.has(node)) return Infinity;
    active.add(node);
    let n = 1;
    if (isAlias(node)) {
      const target = node.resolve(doc);
      n = target === undefined ? 1 : size(target);
    } else if (isPair(node)) {
      n = 1 + size(node.key) + size(node.value);
    } else if (isCollection(node)) {
      for (const item of node.items) {
        n += size(item);
        if (n > limit) break;
      }
    }
    active.delete(node);
    memo.set(node, n);
    return n;
  };
  return size(doc.contents);
}

/** The first key that appears twice in one mapping, as "path: key", or null. Linear: one Set per mapping. */
export function duplicateKey(doc: Document): string | null {
  const seen = new Set<unknown>();
  let found: string | null = null;
  const walk = (node: unknown, path: string): void => {
    if (found !== null || node === null || node === undefined || seen.has(node) || isAlias(node)) return;
    seen.add(node);
    if (isMap(node)) {
      const keys = new Set<string>();
      for (const pair of node.items) {
        const k = pair.key;
        const name = isScalar(k) ? String(k.value) : k === null ? 'null' : String(k);
        // Merge keys may repeat (each merges another map).
        if (!(isScalar(k) && (k.value === '<<' || typeof k.value === 'symbol'))) {
          if (keys.has(name)) {
            found = `${path ? path + '.' : ''}${name}`;
            return;
          }
          keys.add(name);
        }
        walk(pair.value, `${path ? path + '.' : ''}${name}`);
      }
    } else if (isCollection(node)) {
      node.items.forEach((item, i) => walk(item, `${path}[${i}]`));
    }
  };
  walk(doc.contents, '');
  return found;
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
export function parseManifestText(text: string, source: string): ParsedManifest {
  const issues: string[] = [];
  const bridgeIssues: string[] = [];
  let opaque = false;
  const skipped: string[] = [];
  const collectors: LoadedCollector[] = [];
  const bridges: LoadedBridge[] = [];
  const secrets: LoadedSecret[] = [];
  // Merge keys ("<<: *anchor") are honoured, as kubectl does when it reads the same manifests; a
  // Collector's spec.configYaml text is read separately, as the collector reads it (render/yaml.ts).
  // Duplicate keys are checked below (linear); the library's own check is quadratic in a mapping's size.
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: false, merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${source} (document ${i + 1})` : source;
    if (doc.errors.length > 0) {
      opaque = true;
      for (const e of doc.errors) issues.push(`${where}: invalid YAML: ${e.message.split('\n')[0]!.replace(/:$/, '')} (FB_MANIFEST_YAML)`);
      return;
    }
    const expanded = expandedNodeCount(doc);
    if (expanded > MAX_EXPANDED_NODES) {
      opaque = true;
      issues.push(
        `${where}: invalid YAML: its aliases expand it to ${Number.isFinite(expanded) ? 'more than ' + MAX_EXPANDED_NODES.toLocaleString('en-US') + ' nodes' : 'itself (a cycle)'}; ` +
          'refused as an alias bomb (FB_MANIFEST_ALIASES)',
      );
      return;
    }
    const dup = duplicateKey(doc);
    if (dup !== null) {
      opaque = true;
      issues.push(`${where}: invalid YAML: map keys must be unique: ${dup} appears twice (FB_MANIFEST_YAML)`);
      return;
    }
    let value: unknown;
    try {
      // Expansion was measured above; the library's own alias count would refuse a legitimate file
      // that uses one anchor more than 100 times.
      value = doc.toJS({ maxAliasCount: -1 });
    } catch (err) {
      opaque = true;
      issues.push(`${where}: invalid YAML: ${(err as Error).message} (FB_MANIFEST_YAML)`);
      return;
    }
    if (value === null || value === undefined) return; // an empty document
    if (typeof value !== 'object' || Array.isArray(value)) {
      opaque = true;
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
      if (obj['kind'] === 'OpAMPBridge') {
        // Meant as the bridge, surely: never read as "no bridge".
        const msg = `${where}: an OpAMPBridge must have apiVersion ${GROUP_VERSION}, got ${JSON.stringify(apiVersion)}`;
        bridgeIssues.push(msg);
        return void issues.push(msg);
      }
      skipped.push(`${where}: ${String(obj['kind'] ?? '?')} (${apiVersion})`);
      return;
    }
    if (apiVersion !== GROUP_VERSION) {
      if (obj['kind'] === 'OpAMPBridge' || obj['kind'] === undefined) bridgeIssues.push(`${where}: apiVersion must be ${GROUP_VERSION}, got ${JSON.stringify(obj['apiVersion'] ?? null)}`);
      issues.push(`${where}: apiVersion must be ${GROUP_VERSION}, got ${JSON.stringify(obj['apiVersion'] ?? null)}`);
      return;
    }
    if (obj['kind'] === 'Collector') {
      const r = Collector.safeParse(obj);
      if (!r.success) return void issues.push(...zodIssues(`${where}: Collector`, r.error));
      const res = r.data;
      const namespace = res.metadata.namespace ?? 'default';
      const c = compileCollectorSpec(namespace, res.metadata.name, res.metadata.generation ?? 1, res.spec);
      if (!c.ok) {
        if (c.configIssues.length > 0) return void issues.push(...c.configIssues.map((m) => `${where}: Collector ${namespace}/${res.metadata.name}: spec.${c.configField}: ${m}`));
        return void issues.push(...c.packageIssues.map((m) => `${where}: Collector ${namespace}/${res.metadata.name}: ${m}`));
      }
      collectors.push({ resource: { ...res, metadata: { ...res.metadata, namespace } }, source, warnings: c.warnings, input: c.input });
    } else if (obj['kind'] === 'OpAMPBridge') {
      const r = OpAMPBridge.safeParse(obj);
      if (!r.success) {
        const found = zodIssues(`${where}: OpAMPBridge`, r.error);
        bridgeIssues.push(...found);
        return void issues.push(...found);
      }
      bridges.push({ resource: r.data, source });
    } else {
      const msg = `${where}: unknown kind ${JSON.stringify(obj['kind'] ?? null)}; expected Collector or OpAMPBridge`;
      if (typeof obj['kind'] !== 'string') bridgeIssues.push(msg); // no kind at all: it may be meant as the bridge
      issues.push(msg);
    }
  });
  return { collectors, bridges, secrets, issues, skipped, bridgeIssues, opaque };
}
