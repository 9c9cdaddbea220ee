/**
 * OpAMP message codec for both transports.
 *
 * OpAMP §WebSocket Transport: each binary WebSocket message is `header ‖ data`, where header is
 * the number 0 as a base-128 varint (today one byte 0x00) and data is the protobuf message.
 * We always send the header. We accept messages without it, as opamp-go does for clients from
 * before Feb 2023: protobuf field number 0 is illegal, so real data never starts with 0x00 and the
 * two forms cannot be confused. Any header value other than 0 is malformed.
 * HTTP bodies carry no header.
 */
import { OpampProtocolError } from './errors.js';
import { pb, type AgentToServer, type ServerToAgentProps } from './messages.js';

const HEADER = Buffer.from([0]);

/** Decodes one WebSocket message from an agent. Throws OpampProtocolError on bad input. */
export function decodeWsMessage(data: Buffer): AgentToServer {
  // Strip the one-byte varint 0 header when present; a non-zero header byte (0x01..0x07 cannot
  // start a protobuf field) is reported as a bad header by decodeAgentToServer.
  return decodeAgentToServer(data.length > 0 && data[0] === 0x00 ? data.subarray(1) : data);
}

/** Decodes an HTTP request body (already decompressed). */
export function decodeAgentToServer(body: Uint8Array): AgentToServer {
  if (body.length > 0 && body[0]! < 0x08) {
    throw new OpampProtocolError(
      'FB_OPAMP_BAD_HEADER',
      `message starts with byte 0x${body[0]!.toString(16).padStart(2, '0')}: not a varint-0 header nor a protobuf field tag`,
    );
  }
  try {
    return pb.AgentToServer.decode(body);
  } catch (err) {
    throw new OpampProtocolError('FB_OPAMP_BAD_PROTOBUF', `invalid AgentToServer protobuf: ${(err as Error).message}`);
  }
}

export function encodeServerToAgent(msg: ServerToAgentProps): Uint8Array {
  return pb.ServerToAgent.encode(msg).finish();
}

/** Header and data as one WebSocket message (never two frames); `tail` is more of the message, already encoded. */
export function encodeWsMessage(msg: ServerToAgentProps, tail?: Uint8Array): Buffer {
  const body = encodeServerToAgent(msg);
  return Buffer.concat(tail ? [HEADER, body, tail] : [HEADER, body]);
}
