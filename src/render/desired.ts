import { compareCollectors, renderMerged, type CollectorInput, type RenderedConfig } from './render.js';
import type { SecretSource } from './secrets.js';
import { selectorMatches } from './select.js';
import { combinePackages, type DesiredPackages, type OfferedPackage, type ServePolicy } from './packages.js';

export interface DesiredStateOptions {
  /** Whether the bridge may serve a package file (OpAMPBridge spec.packages); default: never. */
  servePolicy?: ServePolicy;
}

/**
 * The desired state at one moment: the valid Collectors, grouped by namespace. Answers "what
 * should this agent run" and caches one render per distinct set of matching Collectors, so a
 * fleet of 10,000 agents in a few groups renders a few times. Immutable: a change makes a new one.
 */
export class DesiredState {
  readonly #byNamespace = new Map<string, CollectorInput[]>();
  readonly #cache = new Map<string, RenderedConfig>();
  readonly #own = new Map<string, RenderedConfig>();
  readonly #packages = new Map<string, DesiredPackages | null>();
  /** namespace → sha256 → a served package of that namespace with that file. */
  readonly #served = new Map<string, Map<string, OfferedPackage>>();
  readonly #servePolicy: ServePolicy;
  #lastMatch: { namespace: string; labels: Readonly<Record<string, string>>; matched: CollectorInput[] } | null = null;

  /** `secrets` resolves `${secret:...}` references; it must not change while this state is in use. */
  constructor(
    collectors: readonly CollectorInput[],
    private readonly secrets?: SecretSource,
    opts: DesiredStateOptions = {},
  ) {
    this.#servePolicy = opts.servePolicy ?? (() => 'this bridge serves no package files');
    for (const c of [...collectors].sort(compareCollectors)) {
      let list = this.#byNamespace.get(c.namespace);
      if (!list) this.#byNamespace.set(c.namespace, (list = []));
      list.push(c);
    }
  }

  /** Namespaces are a hard boundary: only Collectors of the agent's own namespace are considered. */
  matching(namespace: string, labels: Readonly<Record<string, string>>): CollectorInput[] {
    // An agent's config and its packages are looked up with the same labels object, one after the other.
    const last = this.#lastMatch;
    if (last && last.labels === labels && last.namespace === namespace) return last.matched;
    const matched = (this.#byNamespace.get(namespace) ?? []).filter((c) => selectorMatches(c.selector, labels));
    this.#lastMatch = { namespace, labels, matched };
    return matched;
  }

  /** The merged config for an agent, or null when no Collector matches it (then nothing is sent). */
  forAgent(namespace: string, labels: Readonly<Record<string, string>>): RenderedConfig | null {
    const matched = this.matching(namespace, labels);
    if (matched.length === 0) return null;
    const key = matched.map((c) => `${c.namespace}/${c.name}@${c.revision}`).join('\n');
    let r = this.#cache.get(key);
    if (!r) this.#cache.set(key, (r = renderMerged(matched, this.secrets)));
    return r;
  }

  /** The packages an agent is offered, or null when no Collector that selects it declares any. */
  packagesFor(namespace: string, labels: Readonly<Record<string, string>>): DesiredPackages | null {
    const matched = this.matching(namespace, labels).filter((c) => !c.invalid);
    if (!matched.some((c) => c.packages?.length)) return null;
    const key = matched.map((c) => `${c.namespace}/${c.name}@${c.revision}`).join('\n');
    let r = this.#packages.get(key);
    if (r === undefined) this.#packages.set(key, (r = combinePackages(matched, this.secrets, this.#servePolicy)));
    return r;
  }

  /** One Collector's packages alone (its status hash and its own issues), or null when it declares none. */
  ownPackages(input: CollectorInput): DesiredPackages | null {
    if (!input.packages?.length) return null;
    const key = `own\n${input.namespace}/${input.name}@${input.revision}`;
    let r = this.#packages.get(key);
    if (r === undefined) this.#packages.set(key, (r = combinePackages([input], this.secrets, this.#servePolicy)));
    return r;
  }

  /**
   * A package the bridge serves to agents of `namespace` whose file has this SHA-256 (a valid
   * Collector of that namespace declares it), or undefined: files never cross namespaces.
   */
  servedPackage(namespace: string, sha256: string): OfferedPackage | undefined {
    if (this.#served.size === 0) {
      for (const c of this.collectors()) {
        const own = c.invalid ? null : this.ownPackages(c);
        for (const p of own?.packages ?? []) {
          if (p.source.kind !== 'served' || p.problem) continue;
          let m = this.#served.get(c.namespace);
          if (!m) this.#served.set(c.namespace, (m = new Map()));
          if (!m.has(p.sha256)) m.set(p.sha256, p);
        }
      }
      if (this.#served.size === 0) this.#served.set('', new Map());
    }
    return this.#served.get(namespace)?.get(sha256);
  }

  /** One Collector's config rendered alone: its `configHash`, and whether its Secrets resolve. */
  own(input: CollectorInput): RenderedConfig {
    const key = `${input.namespace}/${input.name}@${input.revision}`;
    let r = this.#own.get(key);
    if (!r) this.#own.set(key, (r = renderMerged([input], this.secrets)));
    return r;
  }

  ownConfigHash(input: CollectorInput): string {
    return this.own(input).hashHex;
  }

  collectors(): CollectorInput[] {
    return [...this.#byNamespace.values()].flat();
  }
}
