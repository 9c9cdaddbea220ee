/**
 * Binds agents to pods in Kubernetes mode. An agent names its pod through the attributes
 * `k8s.pod.uid`, or `k8s.pod.name` with `k8s.namespace.name`; the pod's labels — from the API,
 * never from the agent — select its Collectors, in the pod's own namespace only.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { AgentIdentity, IdentityResolver } from '../fleet/agent.js';

export interface PodLookup {
  byUid(uid: string): V1Pod | undefined;
  byName(namespace: string, name: string): V1Pod | undefined;
}

export const POD_UID = 'k8s.pod.uid';
export const POD_NAME = 'k8s.pod.name';
export const NAMESPACE = 'k8s.namespace.name';

export function podIdentity(pods: PodLookup, serves: (namespace: string) => boolean): IdentityResolver {
  return (agent): AgentIdentity => {
    const a = agent.description.attributes;
    const uid = a[POD_UID];
    const name = a[POD_NAME];
    const ns = a[NAMESPACE];
    const v = agent.identity.verified;
    if (v?.podUid) {
      // A pod-bound token decides; claims, where made, must agree with it.
      if ((uid && uid !== v.podUid) || (name && name !== v.podName) || (ns && ns !== v.namespace)) {
        return { ok: false, error: `the agent claims pod ${ns ?? '?'}/${name ?? uid} but its token is bound to pod ${v.namespace}/${v.podName}` };
      }
      if (!serves(v.namespace!)) return { ok: false, error: `the agent's token is bound to a pod in namespace ${v.namespace}, which this bridge does not serve` };
      const pod = pods.byUid(v.podUid);
      if (!pod) return { ok: false, error: `the pod the agent's token is bound to (${v.namespace}/${v.podName}) does not exist` };
      return bound(pod);
    }
    if (v?.method === 'mtls') {
      // A certificate names a namespace and ServiceAccount, not a pod: the claimed pod must be
      // one of that namespace's pods running as that ServiceAccount.
      if (!v.namespace) return { ok: false, error: `the agent's certificate (${v.username}) names no namespace and ServiceAccount` };
      const claimed = claimedPod(uid, name, ns);
      if (!claimed.ok) return claimed;
      const pod = claimed.pod;
      const pns = pod.metadata?.namespace ?? '';
      const sa = pod.spec?.serviceAccountName || 'default';
      if (pns !== v.namespace || (v.serviceAccount && sa !== v.serviceAccount)) {
        return { ok: false, error: `the agent claims pod ${pns}/${pod.metadata?.name} (ServiceAccount ${sa}) but its certificate is for ${v.namespace}/${v.serviceAccount ?? '*'}` };
      }
      return bound(pod);
    }
    const claimed = claimedPod(uid, name, ns);
    return claimed.ok ? bound(claimed.pod) : claimed;
  };

  /** The pod an agent claims by its attributes, when it exists in a namespace this bridge serves. */
  function claimedPod(uid: string | undefined, name: string | undefined, ns: string | undefined): { ok: true; pod: V1Pod } | { ok: false; error: string } {
    if (!uid && !(name && ns)) {
      return { ok: false, error: `the agent reports neither ${POD_UID} nor ${POD_NAME} with ${NAMESPACE}, so it cannot be bound to a pod` };
    }
    if (ns && !serves(ns)) return { ok: false, error: `the agent claims a pod in namespace ${ns}, which this bridge does not serve` };
    let pod: V1Pod | undefined;
    if (uid) {
      pod = pods.byUid(uid);
      if (!pod) return { ok: false, error: `the agent claims pod uid ${uid}${name ? ` (${ns ?? '?'}/${name})` : ''}, which does not exist in a namespace this bridge serves` };
      const pns = pod.metadata?.namespace ?? '';
      const pname = pod.metadata?.name ?? '';
      if ((name && name !== pname) || (ns && ns !== pns)) {
        return { ok: false, error: `the agent claims pod ${ns ?? '?'}/${name ?? '?'} but uid ${uid} belongs to pod ${pns}/${pname}` };
      }
    } else {
      pod = pods.byName(ns!, name!);
      if (!pod) return { ok: false, error: `the agent claims pod ${ns}/${name}, which does not exist` };
    }
    return { ok: true, pod };
  }

  function bound(pod: V1Pod): AgentIdentity {
    const podNs = pod.metadata?.namespace ?? '';
    if (!serves(podNs)) return { ok: false, error: `the agent's pod is in namespace ${podNs}, which this bridge does not serve` };
    if (pod.metadata?.deletionTimestamp) return { ok: false, error: `the agent's pod ${podNs}/${pod.metadata?.name} is being deleted` };
    return { ok: true, namespace: podNs, labels: { ...(pod.metadata?.labels ?? {}) }, pod: `${podNs}/${pod.metadata?.name}` };
  }
}

/** A uid index over a pod cache, rebuilt incrementally from informer callbacks. */
export class PodIndex implements PodLookup {
  readonly #byUid = new Map<string, V1Pod>();
  constructor(private readonly cache: { list(): readonly V1Pod[]; get(name: string, namespace?: string): V1Pod | undefined }) {}

  readonly #fingerprint = new Map<string, string>();

  /**
   * Call with the changed pod, or null after a re-list. Returns whether anything that binds agents
   * changed (a pod appeared, went, was relabelled or started terminating), so that status-only
   * updates from the kubelet do not trigger a reconcile.
   */
  update(pod: V1Pod | null): boolean {
    if (pod === null) {
      this.#byUid.clear();
      this.#fingerprint.clear();
      for (const p of this.cache.list()) {
        const uid = p.metadata?.uid;
        if (!uid) continue;
        this.#byUid.set(uid, p);
        this.#fingerprint.set(uid, fingerprint(p));
      }
      return true;
    }
    const uid = pod.metadata?.uid;
    if (!uid) return false;
    const current = this.cache.get(pod.metadata?.name ?? '', pod.metadata?.namespace);
    if (current && current.metadata?.uid === uid) {
      this.#byUid.set(uid, current);
      const fp = fingerprint(current);
      if (this.#fingerprint.get(uid) === fp) return false;
      this.#fingerprint.set(uid, fp);
      return true;
    }
    this.#byUid.delete(uid);
    this.#fingerprint.delete(uid);
    return true;
  }

  byUid(uid: string): V1Pod | undefined {
    return this.#byUid.get(uid);
  }

  byName(namespace: string, name: string): V1Pod | undefined {
    return this.cache.get(name, namespace);
  }
}

function fingerprint(p: V1Pod): string {
  return JSON.stringify([p.metadata?.namespace, p.metadata?.name, p.metadata?.labels ?? {}, !!p.metadata?.deletionTimestamp]);
}
