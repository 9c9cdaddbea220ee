/**
 * Sending to many agents at once (a config change, a sweep's repushes): each distinct remote config
 * is encoded once, and the sends go out in batches with the event loop free in between.
 */
import { encodeServerToAgent } from '../opamp/codec.js';
import type { ServerToAgentProps } from '../opamp/messages.js';
import type { AgentConnection, AgentRecord } from './agent.js';
import type { FleetContext } from './context.js';

/** Messages sent per turn of the event loop in a fan-out. */
const SEND_BATCH = 1000;

export type Outbox = { rec: AgentRecord; conn: AgentConnection; msg: ServerToAgentProps }[];

/**
 * Sends a fan-out: agents' messages differ only in their instance_uid and what else they carry, so
 * a push to 19,000 agents never stalls heartbeats. A message whose connection was replaced
 * meanwhile is dropped (the new connection gets what it needs when it reports).
 */
export function sendAll(ctx: FleetContext, outbox: Outbox): void {
  const shared = new Map<string, Uint8Array>();
  const prepared = outbox.map(({ rec, conn, msg }) => {
    let tail: Uint8Array | undefined;
    const rc = msg.remoteConfig;
    const d = rec.config.desired;
    if (rc && d) {
      const key = d.hashHex;
      tail = shared.get(key);
      if (!tail) shared.set(key, (tail = encodeServerToAgent({ remoteConfig: rc })));
      msg = { ...msg };
      delete msg.remoteConfig;
    }
    return { rec, conn, msg, tail };
  });
  const sendBatch = (from: number) => {
    const to = Math.min(prepared.length, from + SEND_BATCH);
    let ws = 0;
    for (let i = from; i < to; i++) {
      const p = prepared[i]!;
      if (p.rec.session.connection !== p.conn || !p.rec.session.connected) continue;
      ctx.isolated('send', p.rec, () => p.conn.send!(p.msg, p.tail), undefined);
      ws++;
    }
    if (ws > 0) ctx.counters.websocket.sent.inc(ws);
    if (to < prepared.length) setImmediate(() => sendBatch(to));
  };
  sendBatch(0);
}
