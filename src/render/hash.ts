import { createHash } from 'node:crypto';

export interface ConfigFile {
  body: Buffer;
  contentType: string;
}

/**
 * sha256 over a canonical encoding of an AgentConfigMap: keys in code-unit order, each entry as
 * len(key) key len(contentType) contentType len(body) body (lengths as 8-byte big-endian). The
 * length prefixes make the encoding unambiguous; the result depends only on the map's content,
 * so it is the same on every replica and after every restart.
 */
export function configMapHash(files: ReadonlyMap<string, ConfigFile> | Record<string, ConfigFile>): Buffer {
  const entries = files instanceof Map ? [...files.entries()] : Object.entries(files);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const h = createHash('sha256');
  const len = Buffer.alloc(8);
  const put = (b: Buffer) => {
    len.writeBigUInt64BE(BigInt(b.length));
    h.update(len);
    h.update(b);
  };
  for (const [key, f] of entries) {
    put(Buffer.from(key, 'utf8'));
    put(Buffer.from(f.contentType, 'utf8'));
    put(f.body);
  }
  return h.digest();
}
