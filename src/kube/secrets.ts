/**
 * The Secrets the bridge needs, and only those: one single-object watch (fieldSelector
 * metadata.name=NAME) per Secret that a Collector lists in spec.secretRefs or the OpAMPBridge
 * names (bearer tokens, TLS). Never a list or watch of all Secrets, so the bridge never holds
 * Secrets it has no business with, and RBAC can be narrowed to resourceNames.
 */
import type { CoreV1Api, KubeConfig, KubernetesListObject, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { SecretSource, SecretValue } from '../render/secrets.js';
import { ResilientInformer } from './informer.js';

export interface SecretCacheOptions {
  kc: KubeConfig;
  core: CoreV1Api;
  logger: Logger;
  /** A wanted Secret was listed for the first time, changed or went away. */
  onChange: (key: string) => void;
  onError?: () => void;
}

export class SecretCache implements SecretSource {
  readonly #watches = new Map<string, ResilientInformer<V1Secret>>();
  readonly #startedAt = new Map<string, number>();
  readonly #o: SecretCacheOptions;
  #stopped = false;

  constructor(opts: SecretCacheOptions) {
    this.#o = opts;
  }

  /** Watches exactly these Secrets ("namespace/name"): starts new watches, stops unneeded ones. */
  want(keys: Iterable<string>): void {
    if (this.#stopped) return;
    const wanted = new Set(keys);
    for (const [key, w] of this.#watches) {
      if (!wanted.has(key)) {
        this.#watches.delete(key);
        this.#startedAt.delete(key);
        void w.stop();
      }
    }
    for (const key of wanted) {
      if (this.#watches.has(key)) continue;
      const [namespace, name] = key.split('/') as [string, string];
      const fieldSelector = `metadata.name=${name}`;
      const w = new ResilientInformer<V1Secret>({
        kc: this.#o.kc,
        path: `/api/v1/namespaces/${namespace}/secrets`,
        fieldSelector,
        list: () => this.#o.core.listNamespacedSecret({ namespace, fieldSelector }) as Promise<KubernetesListObject<V1Secret>>,
        logger: this.#o.logger,
        onChange: () => this.#o.onChange(key),
        ...(this.#o.onError ? { onError: this.#o.onError } : {}),
      });
      this.#watches.set(key, w);
      this.#startedAt.set(key, Date.now());
      w.start();
    }
  }

  /** Whether every wanted Secret has been listed once (so "not found" means it does not exist). */
  get synced(): boolean {
    for (const w of this.#watches.values()) if (!w.synced) return false;
    return true;
  }

  /**
   * Whether rendering may go ahead: every wanted Secret was listed, or has been loading for longer
   * than `patienceMs` (then it is treated as missing — e.g. RBAC forbids reading it — and only the
   * agents whose config needs it are held, not the whole fleet).
   */
  settled(patienceMs = 5000): boolean {
    const now = Date.now();
    for (const [key, w] of this.#watches) if (!w.synced && now - (this.#startedAt.get(key) ?? now) < patienceMs) return false;
    return true;
  }

  get(namespace: string, name: string): SecretValue | undefined {
    const s = this.#watches.get(`${namespace}/${name}`)?.get(name, namespace);
    if (!s) return undefined;
    return { data: decode(s), version: `${s.metadata?.uid ?? ''}:${s.metadata?.resourceVersion ?? ''}` };
  }

  /** A watched Secret's labels, or undefined. */
  labels(namespace: string, name: string): Readonly<Record<string, string>> | undefined {
    const s = this.#watches.get(`${namespace}/${name}`)?.get(name, namespace);
    return s ? (s.metadata?.labels ?? {}) : undefined;
  }

  /** Every value of every watched Secret, for redaction. */
  *values(): Iterable<string> {
    for (const [key, w] of this.#watches) {
      const [namespace, name] = key.split('/') as [string, string];
      const s = w.get(name, namespace);
      if (s) yield* Object.values(decode(s));
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#watches.values()].map((w) => w.stop()));
    this.#watches.clear();
  }
}

/**
 * The label a Secret must carry before Collectors may use it. Whoever may create a Collector could
 * otherwise have the bridge copy any Secret of that namespace (a ServiceAccount token, the bridge's
 * own agent tokens) into a config for an agent they control: the Secret's owner opts in instead.
 */
export const CONFIG_SECRET_LABEL = 'fleetbridge.dev/config-secret';

/** The Secrets Collectors may use: those labelled CONFIG_SECRET_LABEL=true; others are refused, saying why. */
export function configSecrets(cache: SecretCache): SecretSource {
  return {
    get(namespace, name) {
      const v = cache.get(namespace, name);
      if (!v) return undefined;
      if (cache.labels(namespace, name)?.[CONFIG_SECRET_LABEL] === 'true') return v;
      return { data: {}, version: v.version, refused: `is not labelled ${CONFIG_SECRET_LABEL}=true, which a Secret needs before Collectors may use it` };
    },
  };
}

function decode(s: V1Secret): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}
