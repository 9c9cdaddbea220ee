/**
 * Agent packages (OpAMP PackagesAvailable) as Collectors declare them: what one agent is offered
 * (the packages of the Collectors that select it, combined by name, the higher priority winning)
 * and the hashes the agent compares. Pure: no I/O. The bridge computes every hash (OpAMP §Packages);
 * hashes cover what the agent installs (name, type, version, file hash, signature, and a direct
 * download's URL), never header values, which may carry secrets.
 */
import { createHash } from 'node:crypto';
import type { AgentPackage } from '../schema/v1alpha1/index.js';
import { secretReferences, substituteSecrets, type SecretSource } from './secrets.js';

/** Where an offered file comes from. */
export type PackageSource =
  /** The agent downloads it from `url`, sending `headers` (secret references substituted). */
  | { kind: 'url'; url: string; headers: { name: string; value: string }[] }
  /** The bridge serves it: from a file under its packages directory, or fetched once from a URL. */
  | { kind: 'served'; path?: string; url?: string };

export interface OfferedPackage {
  name: string;
  type: 'TopLevel' | 'Addon';
  version: string;
  /** The file's SHA-256, hex (DownloadableFile.content_hash). */
  sha256: string;
  signature: Buffer | null;
  source: PackageSource;
  /** PackageAvailable.hash. */
  hash: Buffer;
  /** "namespace/name" of the Collector that declared it. */
  collector: string;
  /** Why it cannot be offered (also in DesiredPackages.issues), or null. */
  problem: string | null;
}

/** The packages one agent is offered. */
export interface DesiredPackages {
  namespace: string;
  /** Sorted by name. */
  packages: OfferedPackage[];
  /** PackagesAvailable.all_packages_hash. */
  allHash: Buffer;
  allHashHex: string;
  /** Collectors that declared packages for this agent ("namespace/name"). */
  collectors: string[];
  /** Secret values in the offer (header values), for redaction. */
  secretValues: string[];
  /** Problems that hold the offer back (nothing is offered while non-empty). */
  issues: string[];
}

/** Decides whether the bridge may serve a package's file; returns why not, or null. */
export type ServePolicy = (source: { path?: string; url?: string }) => string | null;

export interface PackagesCollector {
  namespace: string;
  name: string;
  packages?: readonly AgentPackage[];
  secretNames?: readonly string[];
}

/** Problems in a Collector's packages that do not depend on the bridge or on Secrets (its own issues). */
export function packageSpecIssues(packages: readonly AgentPackage[] | undefined, secretNames: readonly string[]): string[] {
  const issues: string[] = [];
  for (const [i, p] of (packages ?? []).entries()) {
    const { refs, issues: bad } = secretReferences(p.headers ?? []);
    for (const b of bad) issues.push(`spec.packages[${i}].headers${b.startsWith('[') ? '' : '.'}${b}`);
    for (const r of refs) {
      if (!secretNames.includes(r.name)) issues.push(`spec.packages[${i}].headers: Secret ${r.name} is not listed in spec.secretRefs`);
    }
  }
  return issues;
}

function packageHash(p: Pick<OfferedPackage, 'name' | 'type' | 'version' | 'sha256' | 'signature' | 'source'>): Buffer {
  const where = p.source.kind === 'url' ? ['url', p.source.url] : ['served'];
  return createHash('sha256')
    .update(JSON.stringify([p.name, p.type, p.version, p.sha256, p.signature?.toString('base64') ?? null, where]))
    .digest();
}

/** all_packages_hash: over every package's name and hash, in name order. */
export function allPackagesHash(packages: readonly Pick<OfferedPackage, 'name' | 'hash'>[]): Buffer {
  const h = createHash('sha256');
  for (const p of [...packages].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    h.update(JSON.stringify([p.name, p.hash.toString('hex')]));
    h.update('\n');
  }
  return h.digest();
}

/**
 * The packages for an agent selected by `ordered` (all of one namespace, in merge order: ascending
 * priority, then name): later Collectors replace earlier ones' packages of the same name. Null when
 * none of them declares packages.
 */
export function combinePackages(ordered: readonly PackagesCollector[], secrets: SecretSource | undefined, policy: ServePolicy): DesiredPackages | null {
  const byName = new Map<string, { p: AgentPackage; collector: PackagesCollector }>();
  for (const c of ordered) for (const p of c.packages ?? []) byName.set(p.name, { p, collector: c });
  if (byName.size === 0) return null;
  const namespace = ordered[0]!.namespace;
  const issues: string[] = [];
  const secretValues = new Set<string>();
  const collectors = new Set<string>();
  const packages: OfferedPackage[] = [];
  for (const [name, { p, collector }] of [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const key = `${collector.namespace}/${collector.name}`;
    collectors.add(key);
    const label = `package ${JSON.stringify(name)} of Collector ${key}`;
    let source: PackageSource;
    const problems: string[] = [];
    if (p.url !== undefined) {
      let headers = (p.headers ?? []).map((h) => ({ name: h.name, value: h.value }));
      if (headers.some((h) => h.value.includes('${secret:'))) {
        if (!secrets) {
          problems.push('headers reference Secrets, which this bridge cannot read');
        } else {
          const s = substituteSecrets(headers, namespace, secrets);
          for (const i of s.issues) problems.push(`headers${i.startsWith('[') ? '' : '.'}${i}`);
          for (const v of s.values) secretValues.add(v);
          headers = s.config as typeof headers;
        }
      }
      source = { kind: 'url', url: p.url, headers };
    } else {
      const served = { ...(p.serve?.path !== undefined ? { path: p.serve.path } : {}), ...(p.serve?.url !== undefined ? { url: p.serve.url } : {}) };
      const refused = policy(served);
      if (refused) problems.push(refused);
      source = { kind: 'served', ...served };
    }
    const signature = p.signature !== undefined ? Buffer.from(p.signature, 'base64') : null;
    const base = { name, type: p.type, version: p.version, sha256: p.sha256, signature, source };
    const problem = problems.length > 0 ? `${label}: ${problems.join('; ')}` : null;
    if (problem) issues.push(problem);
    packages.push({ ...base, hash: packageHash(base), collector: key, problem });
  }
  const allHash = allPackagesHash(packages);
  return { namespace, packages, allHash, allHashHex: allHash.toString('hex'), collectors: [...collectors], secretValues: [...secretValues], issues };
}

/** The bridge's rules for serve.path and serve.url (OpAMPBridge spec.packages). */
export function servePolicy(spec: { directory?: string; allowedSourcePrefixes?: readonly string[] } | undefined): ServePolicy {
  return (s) => {
    if (s.path !== undefined && !spec?.directory) return 'serve.path needs the OpAMPBridge to set spec.packages.directory';
    if (s.url !== undefined) {
      const prefixes = spec?.allowedSourcePrefixes ?? [];
      if (prefixes.length === 0) return 'serve.url needs the OpAMPBridge to list allowed sources in spec.packages.allowedSourcePrefixes';
      if (!sourceAllowed(s.url, prefixes)) return `serve.url ${s.url} does not start with any of the OpAMPBridge's spec.packages.allowedSourcePrefixes`;
    }
    return null;
  };
}

/** Whether `url`, normalised (so "/a/../b" cannot climb out of a prefix), starts with one of `prefixes`. */
export function sourceAllowed(url: string, prefixes: readonly string[]): boolean {
  let href: string;
  try {
    const u = new URL(url);
    if (u.username || u.password) return false;
    href = u.href;
  } catch {
    return false;
  }
  return prefixes.some((prefix) => {
    try {
      return href.startsWith(new URL(prefix).href);
    } catch {
      return false;
    }
  });
}

/** What the API shows of a Collector's own packages. */
export function packagesSummary(d: DesiredPackages | null): { hash: string; packages: { name: string; version: string; sha256: string }[]; issues: string[] } | null {
  return d && { hash: d.allHashHex, packages: d.packages.map((p) => ({ name: p.name, version: p.version, sha256: p.sha256 })), issues: d.issues };
}
