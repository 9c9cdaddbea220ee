import { randomBytes } from 'node:crypto';

const HEX = /^[0-9a-f]{32}$/;

/** Canonical 8-4-4-4-12 UUID text of 16 bytes. */
export function uidToString(b: Uint8Array): string {
  if (b.length !== 16) {
    const h = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  // Written into one buffer and decoded once: a flat string (a template of slices would keep a
  // tree of nine pieces per agent; uids are kept for every agent).
  const out = Buffer.allocUnsafe(36);
  let o = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) out[o++] = 0x2d;
    out[o++] = HEX_DIGITS[b[i]! >> 4]!;
    out[o++] = HEX_DIGITS[b[i]! & 15]!;
  }
  return out.toString('latin1');
}

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** Whether two uids (or any byte strings) hold the same bytes; cheaper than wrapping them in Buffers for a 16-byte compare. */
export function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Parses a canonical UUID or 32 hex digits; returns null for anything else. */
export function parseUid(s: string): Uint8Array | null {
  const h = s.toLowerCase().replace(/-/g, '');
  if (!HEX.test(h)) return null;
  if (s.includes('-') && !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s)) return null;
  return new Uint8Array(Buffer.from(h, 'hex'));
}

/** A new UUIDv7 (RFC 9562): 48-bit ms timestamp, version 7, variant 10, random rest. */
export function newUuidV7(now = Date.now()): Uint8Array {
  const b = new Uint8Array(16);
  b.set(randomBytes(10), 6);
  let t = now;
  for (let i = 5; i >= 0; i--) {
    b[i] = t % 256;
    t = Math.floor(t / 256);
  }
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  return b;
}
