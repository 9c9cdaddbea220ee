/**
 * Leader election on a coordination.k8s.io/v1 Lease, so two replicas never write status at once;
 * every replica serves OpAMP. Optimistic concurrency (resourceVersion) makes take-over safe. A
 * leader that cannot renew within the lease duration steps down by itself.
 */
import { V1MicroTime, type CoordinationV1Api, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { errorText, statusOf } from './client.js';

export interface LeaderOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  logger: Logger;
  /** Seconds a lease is valid without renewal. Default 15. */
  leaseDurationSeconds?: number;
  /** Renew/retry period, ms. Default 2,000 (well below the lease duration). */
  retryPeriodMs?: number;
  onChange?: (leader: boolean) => void;
}

export class LeaderElector {
  readonly #o: Required<Omit<LeaderOptions, 'onChange'>> & Pick<LeaderOptions, 'onChange'>;
  #leader = false;
  #lastRenew = 0;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(opts: LeaderOptions) {
    this.#o = { leaseDurationSeconds: 15, retryPeriodMs: 2000, ...opts };
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  start(): void {
    void this.#tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#leader) {
      // Release, so a successor need not wait out the lease.
      try {
        const { api, namespace, name } = this.#o;
        const lease = await api.readNamespacedLease({ namespace, name });
        if (lease.spec?.holderIdentity === this.#o.identity) {
          const spec = microTimes(lease.spec);
          spec.holderIdentity = undefined;
          spec.leaseDurationSeconds = 1;
          await api.replaceNamespacedLease({ namespace, name, body: { ...lease, spec } });
        }
      } catch (err) {
        this.#o.logger.debug({ err: errorText(err) }, 'Could not release the lease');
      }
      this.#set(false);
    }
  }

  #set(leader: boolean): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.#o.logger.info({ lease: `${this.#o.namespace}/${this.#o.name}`, identity: this.#o.identity }, leader ? 'Became leader' : 'Lost leadership');
    this.#o.onChange?.(leader);
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#o.logger.warn({ err: errorText(err) }, 'Lease update failed');
    }
    if (this.#leader && Date.now() - this.#lastRenew > this.#o.leaseDurationSeconds * 1000) this.#set(false);
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), this.#o.retryPeriodMs);
    this.#timer.unref();
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const { api, namespace, name, identity, leaseDurationSeconds } = this.#o;
    const now = new V1MicroTime();
    let lease: V1Lease | null = null;
    try {
      lease = await api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (!lease) {
      try {
        await api.createNamespacedLease({
          namespace,
          body: { metadata: { name, namespace }, spec: { holderIdentity: identity, leaseDurationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 } },
        });
        this.#lastRenew = Date.now();
        this.#set(true);
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
      }
      return;
    }
    const spec = microTimes(lease.spec ?? {});
    const holder = spec.holderIdentity;
    const renewed = spec.renewTime ? new Date(spec.renewTime as unknown as string).getTime() : 0;
    const expired = !holder || renewed + (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000 < now.getTime();
    if (holder !== identity && !expired) {
      this.#set(false);
      return;
    }
    const body: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds,
        renewTime: now,
        ...(holder !== identity ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
      },
    };
    try {
      await api.replaceNamespacedLease({ namespace, name, body });
      this.#lastRenew = Date.now();
      this.#set(true);
    } catch (err) {
      if (statusOf(err) === 409) {
        this.#set(false);
        return;
      }
      throw err;
    }
  }
}

/**
 * Lease times are MicroTime (six fractional digits). client-node 1.x serialises a plain Date with
 * three and the apiserver answers 400; times read back arrive as plain Dates, so re-wrap them.
 */
function microTimes(spec: V1LeaseSpec): V1LeaseSpec {
  const wrap = (d: Date | undefined) => (d ? new V1MicroTime(new Date(d as unknown as string).getTime()) : undefined);
  return { ...spec, acquireTime: wrap(spec.acquireTime), renewTime: wrap(spec.renewTime) };
}
