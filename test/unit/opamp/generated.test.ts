import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TARGETS, generate } from '../../../scripts/gen-proto.mjs';

describe('generated protobuf code', () => {
  it.each(Object.keys(TARGETS))('matches what scripts/gen-proto.mjs produces from the .proto files (%s)', (target) => {
    const t = (TARGETS as Record<string, { outDir: string; name: string }>)[target]!;
    const dir = mkdtempSync(join(tmpdir(), 'fb-proto-'));
    try {
      generate(dir, target);
      for (const f of [`${t.name}.js`, `${t.name}.d.ts`]) {
        const committed = readFileSync(join(t.outDir, f), 'utf8');
        const fresh = readFileSync(join(dir, f), 'utf8');
        expect(fresh === committed, `${t.outDir}/${f} is stale: run npm run gen:proto`).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('keeps the field numbers of the OpAMP specification', async () => {
    const { pb } = await import('../../../src/opamp/messages.js');
    // Hand-encoded bytes: field 1 (instance_uid, bytes, 16 long), 2 (sequence_num, varint 5),
    // 4 (capabilities, varint 3), 10 (flags, varint 1) — tags per the spec.
    const bytes = Buffer.concat([Buffer.from([0x0a, 16]), Buffer.alloc(16, 0xab), Buffer.from([0x10, 5, 0x20, 3, 0x50, 1])]);
    const m = pb.AgentToServer.decode(bytes);
    expect(m.sequenceNum.toString()).toBe('5');
    expect(m.capabilities.toString()).toBe('3');
    expect(m.flags.toString()).toBe('1');
    // ServerToAgent: remote_config is field 3, capabilities 7, flags 6.
    const out = Buffer.from(pb.ServerToAgent.encode({ flags: 1, capabilities: 2, remoteConfig: { configHash: Buffer.from([9]) } }).finish());
    expect([...out]).toEqual([0x1a, 3, 0x12, 1, 9, 0x30, 1, 0x38, 2]);
  });
});
