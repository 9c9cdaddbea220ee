/**
 * Kubernetes Events on our resources, aggregated: one Event per (object, reason, message) whose
 * count and lastTimestamp are updated at most every `minUpdateMs`, so thousands of agents failing
 * the same way make one Event, not thousands. Recording never throws.
 */
import { randomBytes } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { MERGE_PATCH, errorText } from './client.js';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid: string;
}

interface Seen {
  eventName: string;
  count: number;
  lastWritten: number;
  pending: boolean;
}

export class EventRecorder {
  readonly #seen = new Map<string, Seen>();

  constructor(
    private readonly core: CoreV1Api,
    private readonly logger: Logger,
    private readonly opts: { component?: string; instance?: string; minUpdateMs?: number; forgetAfterMs?: number } = {},
  ) {}

  async record(ref: ObjectRef, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const key = `${ref.uid}\n${reason}\n${message}`;
    const now = Date.now();
    const minUpdate = this.opts.minUpdateMs ?? 30_000;
    const forget = this.opts.forgetAfterMs ?? 60 * 60_000;
    const seen = this.#seen.get(key);
    const ts = new Date(now);
    try {
      if (seen && now - seen.lastWritten < forget) {
        seen.count++;
        if (now - seen.lastWritten < minUpdate || seen.pending) return;
        seen.pending = true;
        await this.core.patchNamespacedEvent(
          { namespace: ref.namespace, name: seen.eventName, body: { count: seen.count, lastTimestamp: ts } },
          MERGE_PATCH,
        );
        seen.lastWritten = now;
        seen.pending = false;
        return;
      }
      const eventName = `${ref.name}.${randomBytes(8).toString('hex')}`;
      this.#seen.set(key, { eventName, count: 1, lastWritten: now, pending: true });
      await this.core.createNamespacedEvent({
        namespace: ref.namespace,
        body: {
          metadata: { name: eventName, namespace: ref.namespace },
          involvedObject: { apiVersion: ref.apiVersion, kind: ref.kind, namespace: ref.namespace, name: ref.name, uid: ref.uid },
          type,
          reason,
          message: message.slice(0, 1024),
          count: 1,
          firstTimestamp: ts,
          lastTimestamp: ts,
          source: { component: this.opts.component ?? 'fleetbridge' },
          reportingComponent: this.opts.component ?? 'fleetbridge',
          reportingInstance: this.opts.instance ?? '',
        },
      });
      this.#seen.get(key)!.pending = false;
    } catch (err) {
      const s = this.#seen.get(key);
      if (s) s.pending = false;
      if (!seen) this.#seen.delete(key);
      this.logger.warn({ object: `${ref.kind} ${ref.namespace}/${ref.name}`, reason, err: errorText(err) }, 'Failed to record Event');
    }
    if (this.#seen.size > 10_000) {
      for (const [k, v] of this.#seen) if (now - v.lastWritten > forget) this.#seen.delete(k);
    }
  }
}
