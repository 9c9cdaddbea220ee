/**
 * The Kubernetes API clients, from a kubeconfig file or the in-cluster service account.
 */
import {
  AuthenticationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';

export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  coordination: CoordinationV1Api;
  events: EventsV1Api;
  authn: AuthenticationV1Api;
}

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

export function makeClients(kc: KubeConfig): KubeClients {
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    coordination: kc.makeApiClient(CoordinationV1Api),
    events: kc.makeApiClient(EventsV1Api),
    authn: kc.makeApiClient(AuthenticationV1Api),
  };
}

/** client-node 1.x sends patches as JSON unless told otherwise: always say merge patch. */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** HTTP status of a client-node ApiException, or undefined for other errors. */
export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: number } };
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return e?.response?.statusCode;
}

export function errorText(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  if (e && typeof e.code === 'number') {
    let msg = '';
    try {
      const b = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      msg = (b as { message?: string })?.message ?? '';
    } catch {
      msg = String(e.body ?? '');
    }
    return `HTTP ${e.code}${msg ? `: ${msg}` : ''}`;
  }
  return (err as Error)?.message ?? String(err);
}
