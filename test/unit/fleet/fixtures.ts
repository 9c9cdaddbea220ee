/** What the fleet unit tests share: agents' messages as the transports decode them, and fake connections. */
import { pino } from 'pino';
import { Fleet, type FleetOptions } from '../../../src/fleet/fleet.js';
import type { AgentConnection } from '../../../src/opamp/connection.js';
import { AgentCapabilities as C, pb, type ServerToAgentProps } from '../../../src/opamp/messages.js';
import { DesiredState, type CollectorInput } from '../../../src/render/index.js';
import { createMetrics } from '../../../src/telemetry/metrics.js';

export const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig | C.ReportsEffectiveConfig | C.ReportsHealth;
export const RCS = { UNSET: 0, APPLIED: 1, APPLYING: 2, FAILED: 3 };

export function collector(name: string, matchLabels: Record<string, string>, config: Record<string, unknown>): CollectorInput {
  return { namespace: 'default', name, generation: 1, revision: JSON.stringify([name, matchLabels, config]), priority: 0, selector: { matchLabels }, config };
}

export function setup(opts: Partial<Omit<FleetOptions, 'logger' | 'metrics'>> = {}) {
  const fleet = new Fleet({ logger: pino({ level: 'silent' }), metrics: createMetrics({ defaultMetrics: false }), heartbeatIntervalSeconds: 7, ...opts });
  fleet.setDesiredState(new DesiredState([collector('edge', { role: 'edge' }, { exporters: { debug: {} } })]));
  return fleet;
}

let nextConn = 1;
export function wsConn(): AgentConnection & { sent: ServerToAgentProps[]; closed: [number, string][] } {
  const c = {
    id: nextConn++,
    transport: 'websocket' as const,
    endpoint: 'ws://127.0.0.1:4320/v1/opamp',
    sent: [] as ServerToAgentProps[],
    closed: [] as [number, string][],
    // A fan-out sends the shared part pre-encoded (`tail`): the test sees the whole message, as an agent would.
    send(m: ServerToAgentProps, tail?: Uint8Array) { c.sent.push(tail ? { ...m, remoteConfig: pb.ServerToAgent.decode(tail).remoteConfig } : m); },
    close(code: number, reason: string) { c.closed.push([code, reason]); },
  };
  return c;
}
export function httpConn(): AgentConnection {
  return { id: nextConn++, transport: 'http', endpoint: 'http://127.0.0.1:4320/v1/opamp' };
}

export function uid(n: number): Uint8Array {
  const b = new Uint8Array(16);
  b[15] = n;
  b[0] = 0x01;
  return b;
}

/** Encodes and decodes like the transports do, so the fleet sees what protobufjs really produces. */
export function msg(p: Record<string, unknown>) {
  return pb.AgentToServer.decode(pb.AgentToServer.encode(p).finish());
}
export const desc = (labels: Record<string, string>) => ({
  identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'otelcol' } }],
  nonIdentifyingAttributes: Object.entries(labels).map(([key, v]) => ({ key, value: { stringValue: v } })),
});
export const hashOf = (r: ServerToAgentProps) => Buffer.from(r.remoteConfig!.configHash!).toString('hex');

