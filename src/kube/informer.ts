/**
 * A list+watch cache that keeps itself alive. client-node's informer re-lists on 410 Gone but stops
 * on any other error (apiserver down, connection reset): restarting it with backoff is our job.
 */
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface InformerOptions<T extends KubernetesObject> {
  kc: KubeConfig;
  /** Watch path, e.g. /api/v1/namespaces/ns/pods or /apis/fleetbridge.dev/v1alpha1/collectors. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  /** Restricts the watch, e.g. metadata.name=x (pass the same to `list`). */
  fieldSelector?: string;
  logger: Logger;
  /** Called after every add, update or delete (and after a re-list). */
  onChange: (obj: T | null) => void;
  onError?: () => void;
  /** First restart delay, ms; doubles up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
}

export class ResilientInformer<T extends KubernetesObject> {
  readonly #o: InformerOptions<T> & { backoffMs: number; maxBackoffMs: number };
  readonly #inf: ListWatch<T>;
  #synced = false;
  #stopped = false;
  #failures = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(opts: InformerOptions<T>) {
    this.#o = { backoffMs: 500, maxBackoffMs: 15_000, ...opts };
    // client-node fires 'connect' before it lists, so a completed list is seen here instead: the
    // cache is updated synchronously right after this promise resolves, hence setImmediate.
    const list = async () => {
      const result = await opts.list();
      setImmediate(() => {
        this.#synced = true;
        this.#failures = 0;
        opts.onChange(null);
      });
      return result;
    };
    // makeInformer() without its fieldSelector gap: a ListWatch that does not start on its own.
    this.#inf = new ListWatch<T>(opts.path, new Watch(opts.kc), list, false, undefined, opts.fieldSelector);
    const changed = (obj: T) => opts.onChange(obj);
    this.#inf.on('add', changed);
    this.#inf.on('update', changed);
    this.#inf.on('delete', changed);
    this.#inf.on('error', (err: unknown) => {
      if (this.#stopped) return;
      this.#failures++;
      const delay = Math.min(this.#o.backoffMs * 2 ** (this.#failures - 1), this.#o.maxBackoffMs);
      opts.logger.warn({ path: opts.path, err: (err as Error)?.message ?? String(err), restartInMs: delay }, 'Watch failed; restarting');
      opts.onError?.();
      this.#timer = setTimeout(() => void this.#start(), delay);
      this.#timer.unref();
    });
  }

  /** True once the first list succeeded (stays true through later restarts: the cache is kept). */
  get synced(): boolean {
    return this.#synced;
  }

  start(): void {
    void this.#start();
  }

  async #start(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#inf.start();
    } catch (err) {
      // start() rejects when the first list fails; the error handler above schedules a retry.
      if (this.#stopped) return;
      this.#o.logger.debug({ path: this.#o.path, err: (err as Error)?.message }, 'Informer start failed');
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#inf.stop();
  }

  list(namespace?: string): readonly T[] {
    return this.#inf.list(namespace);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#inf.get(name, namespace);
  }
}
