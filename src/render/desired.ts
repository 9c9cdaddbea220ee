import { compareCollectors, renderMerged, type CollectorInput, type RenderedConfig } from './render.js';
import { selectorMatches } from './select.js';

const ownHashes = new Map<string, string>();

/** The hash of one Collector's config rendered alone (shown as its `configHash`), cached by revision. */
export function ownConfigHash(input: CollectorInput): string {
  let h = ownHashes.get(input.revision);
  if (!h) {
    if (ownHashes.size > 10_000) ownHashes.clear();
    ownHashes.set(input.revision, (h = renderMerged([input]).hashHex));
  }
  return h;
}

/**
 * The desired state at one moment: the valid Collectors, grouped by namespace. Answers "what
 * should this agent run" and caches one render per distinct set of matching Collectors, so a
 * fleet of 10,000 agents in a few groups renders a few times. Immutable: a change makes a new one.
 */
export class DesiredState {
  readonly #byNamespace = new Map<string, CollectorInput[]>();
  readonly #cache = new Map<string, RenderedConfig>();

  constructor(collectors: readonly CollectorInput[]) {
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
    if (!r) this.#cache.set(key, (r = renderMerged(matched)));
    return r;
  }

  collectors(): CollectorInput[] {
    return [...this.#byNamespace.values()].flat();
  }
}
