/**
 * What changed between two OpAMPBridge specs, by what it takes to apply it. Everything applies
 * live except what needs another socket: the OpAMP port, and TLS turned on or off on an endpoint
 * (a plain listener cannot start serving TLS). Those are reported as needing a restart
 * (docs/adr/0010-bridge-core-and-live-settings.md).
 */
import type { OpAMPBridgeSpec } from '../schema/v1alpha1/index.js';

export interface SettingsChanges {
  none: boolean;
  /** Top-level spec fields that differ. */
  changed: string[];
  /** Fields that take effect only after a restart. */
  restartRequired: string[];
  endpoint: boolean;
  limits: boolean;
  heartbeat: boolean;
  /** Fleet settings: heartbeat, agent count and report bounds, new-agent rate. */
  fleet: boolean;
  auth: boolean;
  tlsSecrets: boolean;
  adminTlsSecret: boolean;
  packages: boolean;
  /** Connection-settings offers are made of it (own-telemetry destinations). */
  offers: boolean;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export function settingsChanges(prev: OpAMPBridgeSpec, next: OpAMPBridgeSpec): SettingsChanges {
  const keys = [...new Set([...Object.keys(prev), ...Object.keys(next)])] as (keyof OpAMPBridgeSpec)[];
  const changed = keys.filter((k) => !same(prev[k], next[k])).sort();
  const restartRequired: string[] = [];
  if (prev.endpoint.port !== next.endpoint.port) restartRequired.push('endpoint.port');
  if (!!prev.tls !== !!next.tls) restartRequired.push('tls');
  if (!!prev.adminTLS !== !!next.adminTLS) restartRequired.push('adminTLS');
  const limits = !same(prev.limits, next.limits);
  const heartbeat = prev.heartbeatIntervalSeconds !== next.heartbeatIntervalSeconds;
  return {
    none: changed.length === 0,
    changed,
    restartRequired,
    endpoint: prev.endpoint.path !== next.endpoint.path || !same(prev.transports, next.transports),
    limits,
    heartbeat,
    fleet: heartbeat || limits,
    auth: !same(prev.auth, next.auth) || (next.auth.mode === 'mtls' && !same(prev.tls?.clientCASecretName, next.tls?.clientCASecretName)),
    tlsSecrets: !!prev.tls && !!next.tls && !same(prev.tls, next.tls),
    adminTlsSecret: !!prev.adminTLS && !!next.adminTLS && !same(prev.adminTLS, next.adminTLS),
    packages: !same(prev.packages, next.packages),
    offers: !same(prev.ownTelemetry, next.ownTelemetry),
  };
}
