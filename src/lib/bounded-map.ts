/**
 * A Map with a bound on its entries and, optionally, on the total weight of its values (e.g.
 * characters). When a new key would go over a bound, `evict: 'all'` drops every entry (a cache of
 * values that are cheap to compute again) and `evict: 'oldest'` drops the oldest entries until it
 * fits (state that should outlive a flood of new keys). Replacing the value of a key never evicts.
 */
export interface BoundedMapOptions<K, V> {
  maxEntries: number;
  /** Bound on the sum of `weigh` over the entries; no bound when absent. */
  maxWeight?: number;
  weigh?: (key: K, value: V) => number;
  /** Default 'all'. */
  evict?: 'all' | 'oldest';
}

export class BoundedMap<K, V> {
  readonly #map = new Map<K, V>();
  readonly #maxEntries: number;
  readonly #maxWeight: number;
  readonly #weigh: ((key: K, value: V) => number) | null;
  readonly #oldest: boolean;
  #weight = 0;

  constructor(opts: BoundedMapOptions<K, V>) {
    this.#maxEntries = opts.maxEntries;
    this.#maxWeight = opts.maxWeight ?? Infinity;
    this.#weigh = opts.weigh ?? null;
    this.#oldest = opts.evict === 'oldest';
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  set(key: K, value: V): this {
    const w = this.#weigh ? this.#weigh(key, value) : 0;
    if (this.#map.has(key)) {
      if (this.#weigh) this.#weight -= this.#weigh(key, this.#map.get(key)!);
    } else if (this.#map.size >= this.#maxEntries || this.#weight + w > this.#maxWeight) {
      if (!this.#oldest) this.clear();
      else {
        while (this.#map.size > 0 && (this.#map.size >= this.#maxEntries || this.#weight + w > this.#maxWeight)) {
          this.delete(this.#map.keys().next().value as K);
        }
      }
    }
    this.#map.set(key, value);
    this.#weight += w;
    return this;
  }

  delete(key: K): boolean {
    if (!this.#map.has(key)) return false;
    if (this.#weigh) this.#weight -= this.#weigh(key, this.#map.get(key)!);
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
    this.#weight = 0;
  }

  keys(): IterableIterator<K> {
    return this.#map.keys();
  }

  values(): IterableIterator<V> {
    return this.#map.values();
  }
}
