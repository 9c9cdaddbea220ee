import type { ServerToAgentProps } from './messages.js';

export type TransportName = 'websocket' | 'http';
/** OpAMP RemoteConfigStatuses by name: what an agent reports of a remote config. */
export type RemoteConfigState = 'UNSET' | 'APPLIED' | 'APPLYING' | 'FAILED';

/**
 * Who the server verified the peer to be, and how. What is known depends on the method:
 * - serviceAccountToken: the pod its token is bound to (namespace, podName, podUid, serviceAccount);
 * - mtls: the namespace and ServiceAccount its certificate names (the agent claims its pod, which must match);
 * - bearerToken: only that it holds an accepted token (`credential` says which).
 */
export interface VerifiedIdentity {
  method: 'serviceAccountToken' | 'bearerToken' | 'mtls';
  /** e.g. system:serviceaccount:ns:name, a certificate's SPIFFE ID or subject, bearer-token:KEY */
  username: string;
  namespace?: string | undefined;
  serviceAccount?: string | undefined;
  podName?: string | undefined;
  podUid?: string | undefined;
  /** bearerToken: the Secret key whose token was presented, and whether it is the current one. */
  credential?: { key: string; current: boolean } | undefined;
}

export type AuthResult = { ok: true; identity?: VerifiedIdentity } | { ok: false; status: 401 | 403 | 503; reason: string };

/**
 * How the server reaches an agent. A WebSocket connection can send at any time; an HTTP agent is
 * reached only through the response to its next poll, so `send` is absent for it.
 */
export interface AgentConnection {
  readonly id: number;
  readonly transport: TransportName;
  /** The URL the agent used to reach us (scheme, Host header, path): offered back in connection settings. */
  readonly endpoint: string;
  /** The peer's IP address (new agents per address are rate-limited). */
  readonly remoteAddress?: string | undefined;
  /** The Authorization header the agent connected with, echoed in connection-settings offers so the agent keeps it. */
  readonly authorization?: string | undefined;
  /** The identity the server verified at connect (e.g. from a ServiceAccount token), if any. */
  readonly verified?: VerifiedIdentity | undefined;
  /**
   * Sends `msg`; `tail`, when given, is more of the same ServerToAgent already encoded (protobuf
   * messages concatenate: the receiver parses them as one), so a part shared by many agents — a
   * remote config — is encoded once per fan-out, not once per agent.
   */
  send?(msg: ServerToAgentProps, tail?: Uint8Array): void;
  close?(code: number, reason: string): void;
  /** The fleet's cache of the last instance_uid seen on this connection and its string form. */
  uidCache?: { bytes: Uint8Array; uid: string };
}
