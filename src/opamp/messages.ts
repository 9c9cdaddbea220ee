/**
 * The OpAMP message types (generated static protobuf.js code) and the constants of the
 * protocol. Everything protocol-level imports its types from here, never from generated/.
 */
import { opamp } from './generated/opamp.js';

export const pb = opamp.proto.v1;
export type AgentToServer = opamp.proto.v1.AgentToServer;
export type ServerToAgent = opamp.proto.v1.ServerToAgent;
export type ServerToAgentProps = opamp.proto.v1.ServerToAgent.$Properties;
export type AgentDescription = opamp.proto.v1.AgentDescription.$Properties;
export type ComponentHealth = opamp.proto.v1.ComponentHealth.$Properties;
export type KeyValue = opamp.proto.v1.KeyValue.$Properties;
export type AnyValue = opamp.proto.v1.AnyValue.$Properties;
export type AgentConfigMap = opamp.proto.v1.AgentConfigMap.$Properties;
export type RemoteConfigStatus = opamp.proto.v1.RemoteConfigStatus.$Properties;
export type AgentRemoteConfig = opamp.proto.v1.AgentRemoteConfig.$Properties;
export type ConnectionSettingsOffers = opamp.proto.v1.ConnectionSettingsOffers.$Properties;

/** AgentCapabilities bits (OpAMP §AgentToServer.capabilities). */
export const AgentCapabilities = {
  ReportsStatus: 0x1,
  AcceptsRemoteConfig: 0x2,
  ReportsEffectiveConfig: 0x4,
  AcceptsPackages: 0x8,
  ReportsPackageStatuses: 0x10,
  ReportsOwnTraces: 0x20,
  ReportsOwnMetrics: 0x40,
  ReportsOwnLogs: 0x80,
  AcceptsOpAMPConnectionSettings: 0x100,
  AcceptsOtherConnectionSettings: 0x200,
  AcceptsRestartCommand: 0x400,
  ReportsHealth: 0x800,
  ReportsRemoteConfig: 0x1000,
  ReportsHeartbeat: 0x2000,
  ReportsAvailableComponents: 0x4000,
  ReportsConnectionSettingsStatus: 0x8000,
} as const;

/** ServerCapabilities bits. */
export const ServerCapabilities = {
  AcceptsStatus: 0x1,
  OffersRemoteConfig: 0x2,
  AcceptsEffectiveConfig: 0x4,
  OffersPackages: 0x8,
  AcceptsPackagesStatus: 0x10,
  OffersConnectionSettings: 0x20,
  AcceptsConnectionSettingsRequest: 0x40,
} as const;

export const AgentToServerFlags = { RequestInstanceUid: 0x1 } as const;
export const ServerToAgentFlags = { ReportFullState: 0x1, ReportAvailableComponents: 0x2 } as const;

/** Note the order: APPLIED is 1 and APPLYING is 2. */
export const RemoteConfigStatuses = { UNSET: 0, APPLIED: 1, APPLYING: 2, FAILED: 3 } as const;
export const RemoteConfigStatusNames = ['UNSET', 'APPLIED', 'APPLYING', 'FAILED'] as const;

export const ServerErrorResponseType = { Unknown: 0, BadRequest: 1, Unavailable: 2 } as const;

/**
 * What this server implements, and so advertises (OpAMP: "All bits that are not defined ... MUST
 * be set to 0"; advertise only what is implemented). OffersConnectionSettings: only the `opamp`
 * heartbeat offer is sent, and only to agents that accept it.
 */
export const SERVER_CAPABILITIES =
  ServerCapabilities.AcceptsStatus |
  ServerCapabilities.OffersRemoteConfig |
  ServerCapabilities.AcceptsEffectiveConfig |
  ServerCapabilities.OffersPackages |
  ServerCapabilities.AcceptsPackagesStatus |
  ServerCapabilities.OffersConnectionSettings;

/** uint64 fields decode to number or Long; every bit field we read is below 2^53. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v == null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

/** A uint64 as protobufjs decodes it (a number, or a Long when it does not fit) as a bigint, without a detour through text. */
export function toBigInt(v: number | { low: number; high: number } | null | undefined): bigint {
  if (v == null) return 0n;
  if (typeof v === 'number') return BigInt(v);
  return (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
}

/** fixed64 nanosecond times exceed 2^53: keep them exact as a decimal string. */
export function toDecimalString(v: number | { toString(): string } | null | undefined): string {
  if (v == null) return '0';
  return typeof v === 'number' ? String(v) : v.toString();
}

export function hasBit(bits: number, bit: number): boolean {
  // JS bitwise ops are 32-bit; capability bits fit, but use arithmetic to stay correct above 2^31.
  return Math.floor(bits / bit) % 2 === 1;
}

export function capabilityNames(bits: number): string[] {
  return Object.entries(AgentCapabilities)
    .filter(([, bit]) => hasBit(bits, bit))
    .map(([name]) => name);
}
