/**
 * Listing and reading the manifest folder within its bounds: files named *.yaml, *.yml or *.json,
 * symlinks followed only inside the folder, every read bounded in size.
 */
import { constants } from 'node:fs';
import { open, opendir, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';

export const MANIFEST_EXT = /\.(ya?ml|json)$/i;

/** What the folder listing found at one path. */
export interface Entry {
  path: string;
  /** The path to read (the symlink's target inside the folder), unless refused. */
  read?: string;
  /** Why this entry is not read. */
  refused?: string;
}

/** `p` is `root` or inside it (both real paths). */
export function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * Lists manifest files (and the folders to watch), at most `maxEntries` entries of any kind looked
 * at. Names starting with "." are skipped (editors' temporary files; a ConfigMap volume's `..data`
 * and timestamped folders, reached through the symlinks that point into them).
 */
export async function listManifests(dir: string, maxEntries: number): Promise<{ entries: Entry[]; dirs: string[]; truncated: boolean }> {
  const entries: Entry[] = [];
  const dirs: string[] = [];
  let seen = 0;
  let truncated = false;
  const root = await realpath(dir);
  const walk = async (d: string, depth: number): Promise<void> => {
    let handle;
    try {
      handle = await opendir(d);
    } catch {
      return;
    }
    const subdirs: string[] = [];
    try {
      for await (const e of handle) {
        if (++seen > maxEntries) {
          truncated = true;
          break;
        }
        if (e.name.startsWith('.')) continue;
        const p = join(d, e.name);
        if (e.isDirectory()) {
          if (depth < 8) subdirs.push(p);
          continue;
        }
        if (!MANIFEST_EXT.test(e.name)) continue;
        if (e.isFile()) entries.push({ path: p, read: p });
        else if (e.isSymbolicLink()) entries.push(await symlinkEntry(root, p));
        else entries.push({ path: p, refused: 'not a regular file; not read (FB_MANIFEST_UNREADABLE)' });
      }
    } catch {
      // the folder went away while being read: what was listed stands
    }
    for (const s of subdirs.sort()) {
      if (truncated) break;
      dirs.push(s);
      await walk(s, depth + 1);
    }
  };
  await walk(dir, 0);
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { entries, dirs, truncated };
}

export async function symlinkEntry(root: string, p: string): Promise<Entry> {
  let real: string;
  try {
    real = await realpath(p);
  } catch (err) {
    return { path: p, refused: `a symlink whose target cannot be resolved (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); not read (FB_MANIFEST_SYMLINK)` };
  }
  if (!inside(root, real)) return { path: p, refused: `a symlink that leads outside the manifest folder (to ${real}); refused (FB_MANIFEST_SYMLINK)` };
  return { path: p, read: real };
}

/** Reads at most maxBytes of a regular file, without ever blocking on a FIFO or a device. */
export async function readBounded(path: string, maxBytes: number): Promise<{ bytes: Buffer } | { problem: string }> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    return { problem: `cannot be read: ${(err as Error).message} (FB_MANIFEST_UNREADABLE)` };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { problem: 'not a regular file; not read (FB_MANIFEST_UNREADABLE)' };
    const buf = Buffer.allocUnsafe(Math.min(st.size, maxBytes) + 1);
    let len = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, len, buf.length - len, len);
      if (bytesRead === 0) break;
      len += bytesRead;
      if (len === buf.length) break;
    }
    if (len > maxBytes) return { problem: `larger than the largest manifest read, ${maxBytes} bytes (1.5 MiB, as in Kubernetes); not read (FB_MANIFEST_TOO_LARGE)` };
    if (len > st.size) return { problem: 'changed while being read; read again on the next scan (FB_MANIFEST_UNREADABLE)' };
    return { bytes: buf.subarray(0, len) };
  } catch (err) {
    return { problem: `cannot be read: ${(err as Error).message} (FB_MANIFEST_UNREADABLE)` };
  } finally {
    await fh.close();
  }
}
