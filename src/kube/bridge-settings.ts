/**
 * The OpAMPBridge this process serves, reconciled live like any resource: it is read at start
 * (with retries), watched, and every valid new generation is applied (bridge/core.ts
 * applySettings). What needs a new listening socket (the port, TLS turned on or off) is reported
 * in status — Ready reason RestartRequired, observedGeneration the one fully in effect — so tools
 * (kubectl wait, Argo CD) do not see the edit as done.
 */
import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ConditionType, Reason, type ConditionInput } from '../controller/conditions.js';
import { API_GROUP, API_VERSION, OpAMPBridgeSpec, type Condition, type OpAMPBridge } from '../schema/v1alpha1/index.js';
import { errorText, statusOf, type makeClients } from './client.js';
import { ResilientInformer } from './informer.js';
import type { BridgeTotals } from '../fleet/totals.js';
import { BRIDGES, type BridgeReport } from './status-writer.js';

export type BridgeResource = KubernetesObject & { spec?: unknown; status?: { conditions?: Condition[] } };

export interface BridgeSettingsOptions {
  kc: KubeConfig;
  clients: ReturnType<typeof makeClients>;
  namespace: string;
  bridgeName: string;
  logger: Logger;
  onApiError: () => void;
}

export class KubeBridgeSettings {
  readonly informer: ResilientInformer<BridgeResource>;
  readonly #o: BridgeSettingsOptions;
  #spec: OpAMPBridgeSpec = OpAMPBridgeSpec.parse({});
  /** The generation whose every field is in effect. */
  #inEffect = 0;
  #restartRequired: { generation: number; fields: string[] } | null = null;
  #applied = '';
  #apply: ((spec: OpAMPBridgeSpec) => Promise<string[]>) | null = null;
  #onChange: () => void = () => {};
  #chain: Promise<void> = Promise.resolve();

  constructor(o: BridgeSettingsOptions) {
    this.#o = o;
    const ns = o.namespace;
    this.informer = new ResilientInformer<BridgeResource>({
      kc: o.kc,
      path: `/apis/${API_GROUP}/${API_VERSION}/namespaces/${ns}/${BRIDGES}`,
      list: () => o.clients.custom.listNamespacedCustomObject({ group: API_GROUP, version: API_VERSION, namespace: ns, plural: BRIDGES }) as Promise<KubernetesListObject<BridgeResource>>,
      logger: o.logger.child({ component: 'informer' }),
      onChange: () => this.#changed(),
      onError: o.onApiError,
    });
  }

  get spec(): OpAMPBridgeSpec {
    return this.#spec;
  }

  get ref(): string {
    return `${this.#o.namespace}/${this.#o.bridgeName}`;
  }

  /** Reads the OpAMPBridge (up to 30 s of retries; absent or unreadable: defaults) and returns the spec to start with. */
  async load(): Promise<OpAMPBridgeSpec> {
    const obj = await this.#read();
    const parsed = OpAMPBridgeSpec.safeParse(obj?.spec ?? {});
    if (!parsed.success) this.#o.logger.error({ issues: parsed.error.issues }, 'OpAMPBridge spec is invalid; serving with defaults');
    this.#spec = parsed.success ? parsed.data : OpAMPBridgeSpec.parse({});
    this.#inEffect = (obj?.metadata?.generation as number | undefined) ?? 0;
    this.#applied = JSON.stringify(this.#spec);
    return this.#spec;
  }

  /** Starts applying new generations with `apply` (it returns the fields that need a restart); `onChange` after each. */
  start(apply: (spec: OpAMPBridgeSpec) => Promise<string[]>, onChange: () => void): void {
    this.#apply = apply;
    this.#onChange = onChange;
    this.informer.start();
  }

  object(): BridgeResource | undefined {
    return this.informer.get(this.#o.bridgeName, this.#o.namespace);
  }

  /** Applies generations in order, one at a time. */
  #changed(): void {
    this.#chain = this.#chain.then(() => this.#reconcile()).catch((err) => this.#o.logger.error({ err: errorText(err) }, 'Cannot apply the OpAMPBridge spec'));
    this.#onChange();
  }

  async #reconcile(): Promise<void> {
    const obj = this.object();
    if (!obj || !this.#apply) return;
    const generation = (obj.metadata?.generation as number | undefined) ?? 0;
    if (generation === this.#inEffect && !this.#restartRequired) return;
    const parsed = OpAMPBridgeSpec.safeParse(obj.spec ?? {});
    if (!parsed.success) {
      this.#o.logger.error({ bridge: this.ref, generation, issues: parsed.error.issues }, 'OpAMPBridge spec is invalid; the bridge keeps serving with its last valid settings');
      return;
    }
    const text = JSON.stringify(parsed.data);
    let restart = this.#restartRequired?.fields ?? [];
    if (text !== this.#applied) {
      restart = await this.#apply(parsed.data);
      this.#spec = parsed.data;
      this.#applied = text;
    }
    if (restart.length === 0) {
      this.#inEffect = generation;
      this.#restartRequired = null;
    } else {
      this.#restartRequired = { generation, fields: restart };
      this.#o.logger.warn({ bridge: this.ref, generation, fields: restart }, 'OpAMPBridge changed; applied except fields that need a restart');
    }
    this.#onChange();
  }

  /** What the OpAMPBridge status reports, given where the bridge serves, whether the caches synced and token problems. */
  report(o: { endpoint: string; synced: boolean; bearerProblem: string | null }): BridgeReport {
    const spec = this.#spec;
    const gen = this.#inEffect;
    const current = (this.object()?.metadata?.generation as number | undefined) ?? gen;
    const restart = this.#restartRequired;
    return {
      generation: gen,
      endpoint: o.endpoint,
      auth: authCondition(spec, this.#o.namespace, o.bearerProblem),
      ready: (t: BridgeTotals): ConditionInput =>
        !o.synced
          ? { type: ConditionType.Ready, status: 'False', reason: Reason.NotServing, message: 'Waiting for the Kubernetes caches to sync' }
          : restart && current !== gen
            ? { type: ConditionType.Ready, status: 'True', reason: 'RestartRequired', message: `Serving OpAMP on ${o.endpoint} with generation ${current} of the spec except ${restart.fields.join(', ')}, which take effect when the bridge restarts (e.g. kubectl rollout restart); generation ${gen} is the last one fully in effect` }
            : { type: ConditionType.Ready, status: 'True', reason: Reason.Serving, message: `Serving OpAMP on ${o.endpoint}; ${t.connected} agents connected${t.unbound ? `, ${t.unbound} not bound to a pod` : ''}` },
    };
  }

  async stop(): Promise<void> {
    await this.informer.stop();
    await this.#chain;
  }

  async #read(): Promise<OpAMPBridge | null> {
    const { clients: k, namespace: ns, bridgeName, logger: log } = this.#o;
    const deadline = Date.now() + 30_000;
    for (let delay = 250; ; delay = Math.min(delay * 2, 4000)) {
      try {
        return (await k.custom.getNamespacedCustomObject({ group: API_GROUP, version: API_VERSION, namespace: ns, plural: BRIDGES, name: bridgeName })) as OpAMPBridge;
      } catch (err) {
        if (statusOf(err) === 404) {
          log.warn({ bridge: `${ns}/${bridgeName}` }, 'OpAMPBridge not found; serving with defaults');
          return null;
        }
        if (Date.now() > deadline) {
          log.error({ err: errorText(err) }, 'Cannot read the OpAMPBridge; serving with defaults');
          return null;
        }
        log.warn({ err: errorText(err), retryInMs: delay }, 'Cannot read the OpAMPBridge yet');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}

/** Secret keys ("namespace/name") the bridge's own settings use: tokens, certificates, telemetry headers. */
export function bridgeSecretKeys(spec: OpAMPBridgeSpec, ns: string): string[] {
  const names = [
    spec.auth.mode === 'bearerToken' ? spec.auth.bearerToken?.secretName : undefined,
    spec.tls?.secretName,
    spec.tls?.clientCASecretName,
    spec.adminTLS?.secretName,
    ...(['metrics', 'traces', 'logs'] as const).map((sig) => spec.ownTelemetry?.[sig]?.headersSecretName),
  ];
  return [...new Set(names.filter((n): n is string => !!n).map((n) => `${ns}/${n}`))];
}

/** What AgentsAuthenticated says: how agents are authenticated, and what a problem blocks. */
function authCondition(spec: OpAMPBridgeSpec, ns: string, bearerProblem: string | null): ConditionInput {
  switch (spec.auth.mode) {
    case 'none':
      return { type: 'AgentsAuthenticated', status: 'False', reason: 'AuthenticationDisabled', message: 'spec.auth.mode is none: agents are not authenticated and are bound to the pods they claim' };
    case 'serviceAccountToken':
      return { type: 'AgentsAuthenticated', status: 'True', reason: 'ServiceAccountTokens', message: `Agents must present a pod-bound ServiceAccount token for audience ${spec.auth.audiences.join(', ')}` };
    case 'mtls':
      return { type: 'AgentsAuthenticated', status: 'True', reason: 'ClientCertificates', message: `Agents must present a client certificate signed by the CA in Secret ${ns}/${spec.tls?.clientCASecretName}; it limits them to pods of the namespace and ServiceAccount it names` };
    case 'bearerToken':
      return bearerProblem
        ? { type: 'AgentsAuthenticated', status: 'False', reason: 'TokensUnavailable', message: `Agents are refused: ${bearerProblem}` }
        : { type: 'AgentsAuthenticated', status: 'True', reason: 'BearerTokens', message: `Agents must present a token from Secret ${ns}/${spec.auth.bearerToken?.secretName} (current key ${spec.auth.bearerToken?.currentKey}); they are bound to the pods they claim` };
  }
}
