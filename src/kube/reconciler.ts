/**
 * The desired-state source of Kubernetes mode: informers on Collectors and Pods (and Namespaces
 * when the OpAMPBridge selects namespaces) feed a level-triggered reconcile that compiles the
 * Collectors this bridge serves and hands them on once every Secret they list was read.
 * The namespace selection is live: a new selector re-reconciles; switching between one namespace
 * and a selection starts informers of the other scope.
 */
import type { KubeConfig, KubernetesListObject, KubernetesObject, V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CollectorCompiler, type CompiledCollector, type CollectorObject } from '../controller/collector-compiler.js';
import { WorkQueue } from '../controller/workqueue.js';
import { selectorMatches } from '../render/index.js';
import { API_GROUP, API_VERSION, type Condition, type LabelSelector } from '../schema/v1alpha1/index.js';
import type { makeClients } from './client.js';
import { ResilientInformer } from './informer.js';
import { PodIndex, type PodLookup } from './pod-identity.js';
import type { SecretCache } from './secrets.js';

export type CollectorResource = KubernetesObject & CollectorObject & { status?: { conditions?: Condition[] } };

export const COLLECTORS = 'collectors';

export interface ReconcilerOptions {
  kc: KubeConfig;
  clients: ReturnType<typeof makeClients>;
  /** The bridge's namespace. */
  namespace: string;
  namespaceSelector: LabelSelector | undefined;
  secrets: SecretCache;
  logger: Logger;
  /** The Collectors in effect changed (compiled; every Secret they list was read). */
  onCompiled: (compiled: CompiledCollector[]) => void;
  /** Secret keys ("namespace/name") the Collectors in effect list: the secret cache should watch them. */
  onSecretsWanted: (keys: string[]) => void;
  onApiError: () => void;
  observe: (outcome: string, seconds: number) => void;
}

interface Scope {
  clusterWide: boolean;
  informers: ResilientInformer<KubernetesObject>[];
  namespaces: ResilientInformer<V1Namespace> | null;
  collectors: ResilientInformer<CollectorResource>;
  pods: ResilientInformer<V1Pod>;
  podIndex: PodIndex;
}

export class Reconciler {
  readonly queue: WorkQueue;
  readonly #o: ReconcilerOptions;
  readonly #compiler = new CollectorCompiler();
  #selector: LabelSelector | undefined;
  #scope: Scope;
  #started = false;
  #collectorSecrets: string[] = [];
  /** Our own status writes come back as updates: only a new generation (or an add/delete) is an input change. */
  readonly #seenGeneration = new Map<string, number>();

  /** Pods, by the current scope's informer. */
  readonly pods: PodLookup = {
    byUid: (uid) => this.#scope.podIndex.byUid(uid),
    byName: (ns, name) => this.#scope.podIndex.byName(ns, name),
  };

  constructor(o: ReconcilerOptions) {
    this.#o = o;
    this.#selector = o.namespaceSelector;
    this.queue = new WorkQueue({
      name: 'desired',
      logger: o.logger.child({ component: 'controller' }),
      concurrency: 1,
      process: async () => this.#reconcile(),
      onResult: (_k, outcome, s) => o.observe(outcome, s),
    });
    this.#scope = this.#makeScope(o.namespaceSelector !== undefined);
  }

  get synced(): boolean {
    return this.#scope.informers.every((i) => i.synced);
  }

  get collectorSecrets(): readonly string[] {
    return this.#collectorSecrets;
  }

  /** Whether this bridge serves agents and Collectors of a namespace. */
  readonly serves = (namespace: string): boolean => {
    if (namespace === this.#o.namespace) return true;
    if (!this.#selector) return false;
    const n = this.#scope.namespaces?.get(namespace);
    return !!n && selectorMatches(this.#selector, n.metadata?.labels ?? {});
  };

  collector(namespace: string, name: string): CollectorResource | undefined {
    return this.#scope.collectors.get(name, namespace);
  }

  start(): void {
    this.#started = true;
    for (const i of this.#scope.informers) i.start();
  }

  requeue(): void {
    this.queue.add('desired');
  }

  /** spec.namespaceSelector changed. */
  async setNamespaceSelector(selector: LabelSelector | undefined): Promise<void> {
    this.#selector = selector;
    const clusterWide = selector !== undefined;
    if (clusterWide !== this.#scope.clusterWide) {
      const old = this.#scope;
      this.#scope = this.#makeScope(clusterWide);
      if (this.#started) for (const i of this.#scope.informers) i.start();
      await Promise.all(old.informers.map((i) => i.stop()));
    }
    this.requeue();
  }

  async stop(): Promise<void> {
    this.queue.shutdown();
    await Promise.all(this.#scope.informers.map((i) => i.stop()));
  }

  #makeScope(clusterWide: boolean): Scope {
    const { kc, clients: k, namespace: ns, logger } = this.#o;
    const informers: ResilientInformer<KubernetesObject>[] = [];
    const informer = <T extends KubernetesObject>(path: string, list: () => Promise<KubernetesListObject<T>>, onChange: (o: T | null) => void) => {
      const inf = new ResilientInformer<T>({ kc, path, list, logger: logger.child({ component: 'informer' }), onChange, onError: this.#o.onApiError });
      informers.push(inf as unknown as ResilientInformer<KubernetesObject>);
      return inf;
    };
    const changed = () => this.requeue();
    const namespaces = clusterWide ? informer<V1Namespace>('/api/v1/namespaces', () => k.core.listNamespace(), changed) : null;
    const onCollector = (c: CollectorResource | null) => {
      if (c) {
        const uid = c.metadata?.uid ?? '';
        const live = collectors.get(c.metadata?.name ?? '', c.metadata?.namespace);
        if (!live) this.#seenGeneration.delete(uid);
        else if (this.#seenGeneration.get(uid) === live.metadata?.generation) return;
        else this.#seenGeneration.set(uid, live.metadata?.generation ?? 0);
      }
      changed();
    };
    const group = { group: API_GROUP, version: API_VERSION, plural: COLLECTORS };
    const collectors: ResilientInformer<CollectorResource> = clusterWide
      ? informer<CollectorResource>(`/apis/${API_GROUP}/${API_VERSION}/${COLLECTORS}`, () => k.custom.listClusterCustomObject(group) as Promise<KubernetesListObject<CollectorResource>>, onCollector)
      : informer<CollectorResource>(`/apis/${API_GROUP}/${API_VERSION}/namespaces/${ns}/${COLLECTORS}`, () => k.custom.listNamespacedCustomObject({ ...group, namespace: ns }) as Promise<KubernetesListObject<CollectorResource>>, onCollector);
    // Pods change often (status from the kubelet); only existence and labels matter here.
    let podIndex: PodIndex | null = null;
    const onPod = (p: V1Pod | null) => {
      if (podIndex?.update(p)) changed();
    };
    const pods = clusterWide
      ? informer<V1Pod>('/api/v1/pods', () => k.core.listPodForAllNamespaces(), onPod)
      : informer<V1Pod>(`/api/v1/namespaces/${ns}/pods`, () => k.core.listNamespacedPod({ namespace: ns }), onPod);
    podIndex = new PodIndex(pods);
    return { clusterWide, informers, namespaces, collectors, pods, podIndex };
  }

  async #reconcile(): Promise<void> {
    const scope = this.#scope;
    if (!scope.informers.every((i) => i.synced)) return;
    const objects = scope.collectors.list().filter((c) => this.serves(c.metadata?.namespace ?? ''));
    const next = this.#compiler.compile(objects);
    // Watch what the Collectors in effect list; render once every one of those Secrets was read
    // (a Secret that is still loading is not a missing one). Its watch's first list re-queues us.
    this.#collectorSecrets = [...new Set(next.flatMap((c) => (c.input?.secretNames ?? []).map((n) => `${c.namespace}/${n}`)))].sort();
    this.#o.onSecretsWanted(this.#collectorSecrets);
    if (!this.#o.secrets.settled()) {
      // Not read yet: try again shortly (the watch's first list also re-queues us).
      setTimeout(() => this.requeue(), 1000).unref();
      return;
    }
    this.#o.onCompiled(next);
  }
}
