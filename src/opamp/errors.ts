/**
 * Typed errors with stable codes (listed in docs/errors.md; a test checks the list).
 * Bad input from a peer becomes one of these and fails only that connection or request.
 */
export class FleetbridgeError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'FleetbridgeError';
    this.code = code;
  }
}

/** A peer broke the OpAMP protocol. `wsCloseCode` is what to close a WebSocket with; `httpStatus` what to answer a POST with. */
export class OpampProtocolError extends FleetbridgeError {
  readonly wsCloseCode: number;
  readonly httpStatus: number;
  constructor(code: OpampErrorCode, message: string, wsCloseCode = 1002, httpStatus = 400) {
    super(code, message);
    this.name = 'OpampProtocolError';
    this.wsCloseCode = wsCloseCode;
    this.httpStatus = httpStatus;
  }
}

export const OPAMP_ERROR_CODES = {
  FB_OPAMP_BAD_HEADER: 'the WebSocket message header is not the varint 0',
  FB_OPAMP_BAD_PROTOBUF: 'the message is not a valid AgentToServer protobuf',
  FB_OPAMP_TEXT_FRAME: 'a text WebSocket frame was received; OpAMP uses binary frames only',
  FB_OPAMP_TOO_LARGE: 'the message exceeds the configured maximum size',
  FB_OPAMP_BAD_INSTANCE_UID: 'instance_uid is not 16 bytes',
  FB_OPAMP_BAD_CONTENT_TYPE: 'an HTTP request without Content-Type application/x-protobuf',
  FB_OPAMP_BAD_METHOD: 'an HTTP method other than POST, or GET with Upgrade: websocket',
  FB_OPAMP_BAD_ENCODING: 'the request body could not be decompressed or has an unsupported Content-Encoding',
  FB_OPAMP_OVERLOADED: 'the server refused the connection or request because a limit was reached',
  FB_OPAMP_UNAUTHENTICATED: 'the connection or request carried no valid credential (401), one not bound to a pod (403), or could not be verified (503)',
  FB_OPAMP_RATE_LIMITED: 'a connection sent messages faster than limits.maxMessagesPerSecond',
  FB_OPAMP_BAD_HOST: 'a WebSocket upgrade or HTTP request whose Host header is missing, repeated or not a valid host[:port]',
  FB_OPAMP_IDLE_CONNECTION: 'a WebSocket connection sent no valid first message in time, or was the oldest of too many such connections from its address',
  FB_OPAMP_REQUEST_TIMEOUT: 'a TCP connection did not complete its request head (or TLS handshake) in time, or its whole request in time',
  FB_OPAMP_AGENT_LIMIT: 'a report over a bound of limits.agentReports (attributes, value size, health, effective config, components, packages)',
  FB_OPAMP_UID_HELD: 'an instance_uid used by another identity than the one holding it',
  FB_OPAMP_UID_CLONED: 'two live connections of one identity keep taking one instance_uid from each other; the newer got a new uid',
  FB_OPAMP_UNSUPPORTED_REQUEST: 'a ConnectionSettingsRequest or a custom message, which this server does not serve',
  FB_INTERNAL_AGENT_ERROR: 'an error while handling one agent in a loop over the fleet; that agent was skipped',
} as const;
export type OpampErrorCode = keyof typeof OPAMP_ERROR_CODES;

export const MANIFEST_ERROR_CODES = {
  FB_MANIFEST_YAML: 'a manifest file is not valid YAML',
  FB_MANIFEST_SCHEMA: 'a resource does not match the fleetbridge.dev/v1alpha1 schema',
  FB_MANIFEST_DUPLICATE: 'two files define the same kind, namespace and name',
  FB_CONFIG_INVALID: 'a collector config cannot be parsed or the merged config references undefined components',
  FB_MANIFEST_TOO_LARGE: 'a manifest file is larger than 1.5 MiB, or parsing it needed too much memory or time',
  FB_MANIFEST_ALIASES: 'a manifest document expands to more than 1,000,000 nodes through YAML aliases',
  FB_MANIFEST_SYMLINK: 'a manifest symlink leads outside the folder or cannot be resolved',
  FB_MANIFEST_UNREADABLE: 'a manifest file cannot be read, is not a regular file, or is not UTF-8',
  FB_MANIFEST_LIMIT: 'the manifest folder exceeds its file, byte or entry bounds',
} as const;
