import { compareCollectors, renderMerged, type CollectorInput, type RenderedConfig } from './render.js';
import type { SecretSource } from './secrets.js';
import { selectorMatches } from './select.js';

/**
 * The desired state at one moment: the valid Collectors, grouped by namespace. Answers "what
 * should this agent run" and caches one render per distinct set of matching Collectors, so a
 * fleet of 10,000 agents in a few groups renders a few times. Immutable: a change makes a new one.
 */
export class DesiredState {
  readonly #byNamespace = new Map<string, CollectorInput[]>();
  readonly #cache = new Map<string, RenderedConfig>();
  readonly #own = new Map<string, RenderedConfig>();

  /** `secrets` resolves `${secret:...}` references; it must not change while this state is in use. */
  constructor(collectors: readonly CollectorInput[], private readonly secrets?: SecretSource) {
    for (const c of [...collectors].sort(compareCollectors)) {
      let list = this.#byNamespace.get(c.namespace);
      if (!list) this.#byNamespace.set(c.namespace, (list = []));
      list.push(c);
    }
  }

  /** Namespaces are a hard boundary: only Collectors of the agent's own namespace are considered. */
  matching(namespace: string, labels: Readonly<Record<string, string>>): CollectorInput[] {
    return (this.#byNamespace.get(namespace) ?? []).filter((c) => selectorMatches(c.selector, labels));
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
