import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeAgentToServer, decodeWsMessage, encodeWsMessage } from '../../../src/opamp/codec.js';
import { OpampProtocolError } from '../../../src/opamp/errors.js';
import { pb } from '../../../src/opamp/messages.js';

const UID = Buffer.from('0192f1a2b3c47d8e9fa0b1c2d3e4f5a6', 'hex');
const body = Buffer.from(pb.AgentToServer.encode({ instanceUid: UID, sequenceNum: 3, capabilities: 1 }).finish());

describe('decodeWsMessage', () => {
  it('strips the varint-0 header', () => {
    const m = decodeWsMessage(Buffer.concat([Buffer.from([0]), body]));
    expect(Buffer.from(m.instanceUid)).toEqual(UID);
    expect(m.sequenceNum.toString()).toBe('3');
  });

  it('accepts a message without the header, as opamp-go does for old clients', () => {
    expect(Buffer.from(decodeWsMessage(body).instanceUid)).toEqual(UID);
  });

  it('accepts an empty message body (an all-default AgentToServer)', () => {
    expect(decodeWsMessage(Buffer.from([0])).instanceUid).toHaveLength(0);
  });

  it('rejects a header whose value is not zero', () => {
    for (const h of [1, 2, 7]) {
      const err = catchErr(() => decodeWsMessage(Buffer.concat([Buffer.from([h]), body])));
      expect(err.code).toBe('FB_OPAMP_BAD_HEADER');
      expect(err.wsCloseCode).toBe(1002);
    }
  });

  it('rejects truncated and corrupted protobuf with a protocol error', () => {
    expect(catchErr(() => decodeWsMessage(Buffer.concat([Buffer.from([0]), body.subarray(0, body.length - 3)]))).code).toBe('FB_OPAMP_BAD_PROTOBUF');
    expect(catchErr(() => decodeWsMessage(Buffer.from([0, 0x0a, 0x7f, 0x01]))).code).toBe('FB_OPAMP_BAD_PROTOBUF');
  });

  it('throws nothing but OpampProtocolError for any input (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          decodeWsMessage(Buffer.from(bytes));
        } catch (err) {
          if (!(err instanceof OpampProtocolError)) throw err;
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('throws nothing but OpampProtocolError for mutated valid messages (property)', () => {
    const full = Buffer.from(
      pb.AgentToServer.encode({
        instanceUid: UID,
        sequenceNum: 9,
        capabilities: 0x1fff,
        agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'otelcol' } }], nonIdentifyingAttributes: [{ key: 'n', value: { kvlistValue: { values: [{ key: 'a', value: { arrayValue: { values: [{ intValue: 5 }] } } }] } } }] },
        health: { healthy: true, componentHealthMap: { a: { healthy: false, lastError: 'x' } } },
        effectiveConfig: { configMap: { configMap: { '': { body: Buffer.from('a: 1'), contentType: 'text/yaml' } } } },
        remoteConfigStatus: { lastRemoteConfigHash: Buffer.alloc(32, 1), status: 3, errorMessage: 'bad' },
      }).finish(),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(full.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(full.length), (edits, cut) => {
        const b = Buffer.from(full);
        for (const [i, v] of edits) b[i] = v;
        try {
          decodeWsMessage(Buffer.concat([Buffer.from([0]), b.subarray(0, cut)]));
        } catch (err) {
          if (!(err instanceof OpampProtocolError)) throw err;
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe('decodeAgentToServer', () => {
  it('does not accept a WebSocket header on HTTP bodies', () => {
    expect(catchErr(() => decodeAgentToServer(Buffer.concat([Buffer.from([0]), body]))).code).toBe('FB_OPAMP_BAD_HEADER');
  });
});

describe('encodeWsMessage', () => {
  it('always sends the header and the data in one buffer', () => {
    const out = encodeWsMessage({ instanceUid: UID, capabilities: 7 });
    expect(out[0]).toBe(0);
    const m = pb.ServerToAgent.decode(out.subarray(1));
    expect(Buffer.from(m.instanceUid)).toEqual(UID);
    expect(m.capabilities.toString()).toBe('7');
  });
});

function catchErr(fn: () => unknown): OpampProtocolError {
  try {
    fn();
  } catch (err) {
    if (err instanceof OpampProtocolError) return err;
    throw err;
  }
  throw new Error('expected an OpampProtocolError');
}
