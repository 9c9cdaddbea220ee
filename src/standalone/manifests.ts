/**
 * Standalone mode's desired-state source: a folder of YAML manifests (the same resources
 * Kubernetes holds), loaded at start and watched. A bad file is reported with its path and the
 * exact problem and changes nothing: the last good version of that file stays in effect.
 *
 * One file's failure of any kind — unreadable, too large, not UTF-8, not YAML, an alias bomb, a
 * symlink leading out of the folder, a directory or FIFO named *.yaml — is reported for that file
 * (invalidFiles) and never stops the others. Parsing runs in a worker thread (when running from the
 * build), bounded in time and memory, so the server keeps answering agents meanwhile.
 *
 * Symlinks named *.yaml / *.yml / *.json are read when they resolve inside the folder: a
 * Kubernetes ConfigMap or Secret volume is made of them (`bridge.yaml -> ..data/bridge.yaml`,
 * `..data -> ..2024_01_01_...`), and its atomic `..data` swap is a change of the folder the watcher
 * sees. A symlink that leads outside the folder is refused with the reason.
 */
import { createHash } from 'node:crypto';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { type LoadedBridge, type LoadedCollector, type LoadedSecret, type ParsedManifest } from './parse.js';
import { listManifests, readBounded, type Entry } from './folder.js';
import { ManifestParser } from './parse-pool.js';

export { parseManifestText, MAX_EXPANDED_NODES } from './parse.js';
export type { LoadedBridge, LoadedCollector, LoadedSecret, ParsedManifest } from './parse.js';

export interface InvalidFile {
  path: string;
  issues: string[];
}

export interface ManifestSnapshot {
  collectors: LoadedCollector[];
  bridge: LoadedBridge | null;
  secrets: LoadedSecret[];
  invalidFiles: InvalidFile[];
  /**
   * Why the bridge's settings cannot be trusted as they stand in the folder now: an OpAMPBridge
   * document that is invalid (file and field), or more than one OpAMPBridge. Empty when fine.
   */
  bridgeProblems: string[];
  /**
   * Files that could not be read far enough to know what they declare (unreadable, too large, not
   * UTF-8, not YAML, refused symlinks, past the folder's bounds): any of them may be meant as the
   * OpAMPBridge.
   */
  opaqueFiles: InvalidFile[];
}

/** Bounds of what the folder scan reads. */
export interface ManifestLimits {
  /** Largest manifest file read, bytes. Kubernetes cannot store a larger object either (etcd's request limit). */
  maxFileBytes: number;
  /** Most manifest files read; the rest (in path order) are reported and not read. */
  maxFiles: number;
  /** Most bytes of manifest files read in all; the rest (in path order) are reported and not read. */
  maxTotalBytes: number;
  /** Most folder entries (of any kind, in every subfolder) looked at. */
  maxEntries: number;
  /** A file whose parsing takes longer is reported (the parser is stopped). */
  parseTimeoutMs: number;
  /** Heap of the parser thread, MB; a file that needs more is reported. */
  parserHeapMb: number;
}

export const DEFAULT_MANIFEST_LIMITS: ManifestLimits = {
  maxFileBytes: 1_572_864, // 1.5 MiB
  maxFiles: 1000,
  maxTotalBytes: 64 * 1024 * 1024,
  maxEntries: 10_000,
  parseTimeoutMs: 30_000,
  parserHeapMb: 512,
};

interface FileState {
  fingerprint: string;
  contentHash: string;
  lastGood: { collectors: LoadedCollector[]; bridges: LoadedBridge[]; secrets: LoadedSecret[] } | null;
  issues: string[];
  /** Issues of OpAMPBridge documents in the file as it is now. */
  bridgeIssues: string[];
  /** The file as it is now could not be read far enough to know what it declares. */
  opaque: boolean;
}


export interface ManifestDirectoryOptions {
  dir: string;
  logger: Logger;
  /** Called with each new snapshot after a change (not for the initial load). */
  onChange?: (snapshot: ManifestSnapshot) => void;
  /** Debounce after a file-system event, ms. Default 100. */
  debounceMs?: number;
  /** Periodic rescan, ms, in case the watcher misses an event (network file systems). Default 2000. */
  rescanMs?: number;
  /** Bounds of the scan; defaults DEFAULT_MANIFEST_LIMITS. */
  limits?: Partial<ManifestLimits>;
  /** Parse in a worker thread (default: when the worker's build exists next to this module). */
  parseInWorker?: boolean;
}

export class ManifestDirectory {
  readonly #opts: Required<Omit<ManifestDirectoryOptions, 'onChange' | 'limits' | 'parseInWorker'>> & Pick<ManifestDirectoryOptions, 'onChange'>;
  readonly #limits: ManifestLimits;
  readonly #parser: ManifestParser;
  readonly #files = new Map<string, FileState>();
  /** One non-recursive watcher per folder: Node 20's recursive watch on Linux stops reporting a file once it is replaced by a rename. */
  readonly #watchers = new Map<string, FSWatcher>();
  #watching = false;
  #dirs: string[] = [];
  #timer: NodeJS.Timeout | null = null;
  #rescan: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #snapshot: ManifestSnapshot = { collectors: [], bridge: null, secrets: [], invalidFiles: [], bridgeProblems: [], opaqueFiles: [] };
  /** The folder-level problem last logged (too many entries), to log it once. */
  #folderProblem: string | null = null;

  constructor(opts: ManifestDirectoryOptions) {
    const { limits, parseInWorker, ...rest } = opts;
    this.#opts = { debounceMs: 100, rescanMs: 2000, ...rest };
    this.#limits = { ...DEFAULT_MANIFEST_LIMITS, ...limits };
    const workerUrl = new URL('./parse-worker.js', import.meta.url);
    const useWorker = parseInWorker ?? existsSync(fileURLToPath(workerUrl));
    this.#parser = new ManifestParser(useWorker ? workerUrl : null, this.#limits);
  }

  get snapshot(): ManifestSnapshot {
    return this.#snapshot;
  }

  get limits(): Readonly<ManifestLimits> {
    return this.#limits;
  }

  /** Reads the folder once. Rejects only when the folder itself cannot be read. */
  async load(): Promise<ManifestSnapshot> {
    let st;
    try {
      st = await stat(this.#opts.dir);
    } catch (err) {
      throw new Error(`cannot read the manifest folder ${this.#opts.dir}: ${(err as Error).message}`, { cause: err });
    }
    if (!st.isDirectory()) throw new Error(`the manifest folder ${this.#opts.dir} is not a directory`);
    await this.#scan();
    return this.#snapshot;
  }

  /** Starts watching; changes are applied within debounceMs (or rescanMs at worst). */
  watch(): void {
    this.#watching = true;
    this.#syncWatchers();
    this.#rescan = setInterval(() => this.#schedule(), this.#opts.rescanMs);
    this.#rescan.unref();
  }

  async close(): Promise<void> {
    this.#watching = false;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#rescan) clearInterval(this.#rescan);
    await this.#running;
    await this.#parser.release();
  }

  /** Watches every folder the last scan found (and no others); a folder that cannot be watched is left to the periodic rescan. */
  #syncWatchers(): void {
    if (!this.#watching) return;
    const want = new Set([this.#opts.dir, ...this.#dirs]);
    for (const [d, w] of this.#watchers) {
      if (!want.has(d)) {
        w.close();
        this.#watchers.delete(d);
      }
    }
    for (const d of want) {
      if (this.#watchers.has(d)) continue;
      try {
        const w = watch(d, () => this.#schedule());
        w.on('error', (err) => {
          this.#opts.logger.warn({ dir: this.#rel(d) || '.', err: err.message }, 'Manifest watcher failed; relying on periodic rescan');
          w.close();
          this.#watchers.delete(d);
        });
        this.#watchers.set(d, w);
      } catch (err) {
        this.#opts.logger.warn({ dir: this.#rel(d) || '.', err: (err as Error).message }, 'Cannot watch a manifest folder; relying on periodic rescan');
      }
    }
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#runScan();
    }, this.#opts.debounceMs);
  }

  async #runScan(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          if (await this.#scan()) this.#opts.onChange?.(this.#snapshot);
        } catch (err) {
          this.#opts.logger.error({ err }, 'Failed to rescan the manifest folder');
        }
      } while (this.#again);
    })();
    await this.#running;
    this.#running = null;
  }

  /** Re-reads changed files; returns true when the effective resources or the reported problems changed. */
  async #scan(): Promise<boolean> {
    try {
      return await this.#scanFiles();
    } finally {
      // The parser's memory goes back between scans.
      await this.#parser.release();
    }
  }

  async #scanFiles(): Promise<boolean> {
    const listing = await listManifests(this.#opts.dir, this.#limits.maxEntries);
    this.#dirs = listing.dirs;
    this.#syncWatchers();
    let changed = false;
    const folderProblem = listing.truncated
      ? `the manifest folder has more than ${this.#limits.maxEntries} entries (files and folders); the rest were not read (FB_MANIFEST_LIMIT)`
      : null;
    if (folderProblem !== this.#folderProblem) {
      this.#folderProblem = folderProblem;
      if (folderProblem) this.#opts.logger.error({ dir: this.#opts.dir, maxEntries: this.#limits.maxEntries }, 'The manifest folder has too many entries; the rest were not read');
      changed = true;
    }
    const paths = new Set(listing.entries.map((e) => e.path));
    for (const p of [...this.#files.keys()]) {
      if (!paths.has(p)) {
        this.#files.delete(p);
        this.#opts.logger.info({ file: this.#rel(p) }, 'Manifest file removed');
        changed = true;
      }
    }
    let files = 0;
    let bytes = 0;
    for (const entry of listing.entries) {
      try {
        if (await this.#scanEntry(entry, () => ({ files: ++files, bytes }), (n) => (bytes += n))) changed = true;
      } catch (err) {
        // Whatever goes wrong with one file is that file's problem.
        if (this.#record(entry.path, `error:${(err as Error).message}`, '', { issues: [`${this.#rel(entry.path)}: cannot be loaded: ${(err as Error).message}`], opaque: true })) changed = true;
      }
    }
    if (changed) this.#snapshot = this.#assemble();
    return changed;
  }

  /** Reads one entry when it changed; returns true when its state changed. */
  async #scanEntry(entry: Entry, count: () => { files: number; bytes: number }, addBytes: (n: number) => void): Promise<boolean> {
    const rel = this.#rel(entry.path);
    if (entry.refused !== undefined) return this.#record(entry.path, `refused:${entry.refused}`, '', { issues: [`${rel}: ${entry.refused}`], opaque: true });
    const target = entry.read ?? entry.path;
    let st;
    try {
      st = await stat(target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // removed meanwhile: the next scan sees it gone
      return this.#record(entry.path, `stat:${(err as NodeJS.ErrnoException).code}`, '', { issues: [`${rel}: cannot be read: ${(err as Error).message} (FB_MANIFEST_UNREADABLE)`], opaque: true });
    }
    if (!st.isFile()) return this.#record(entry.path, 'not-file', '', { issues: [`${rel}: not a regular file; not read (FB_MANIFEST_UNREADABLE)`], opaque: true });
    const n = count();
    if (n.files > this.#limits.maxFiles) {
      return this.#record(entry.path, 'over-files', '', { issues: [`${rel}: not read: the folder holds more than ${this.#limits.maxFiles} manifest files (FB_MANIFEST_LIMIT)`], opaque: true });
    }
    if (st.size > this.#limits.maxFileBytes) {
      return this.#record(entry.path, `too-large:${st.size}`, '', { issues: [`${rel}: ${st.size} bytes is larger than the largest manifest read, ${this.#limits.maxFileBytes} bytes (1.5 MiB, as in Kubernetes); not read (FB_MANIFEST_TOO_LARGE)`], opaque: true });
    }
    if (n.bytes + st.size > this.#limits.maxTotalBytes) {
      return this.#record(entry.path, 'over-bytes', '', { issues: [`${rel}: not read: the folder's manifests exceed ${this.#limits.maxTotalBytes} bytes in all (FB_MANIFEST_LIMIT)`], opaque: true });
    }
    addBytes(st.size);
    const fp = `${st.mtimeMs}:${st.size}:${st.ino}:${st.dev}`;
    const prev = this.#files.get(entry.path);
    if (prev && prev.fingerprint === fp) return false;
    const read = await readBounded(target, this.#limits.maxFileBytes);
    if ('problem' in read) return this.#record(entry.path, fp, '', { issues: [`${rel}: ${read.problem}`], opaque: true });
    const contentHash = createHash('sha256').update(read.bytes).digest('hex');
    if (prev && prev.contentHash === contentHash) {
      prev.fingerprint = fp;
      return false;
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(read.bytes);
    } catch {
      return this.#record(entry.path, fp, contentHash, { issues: [`${rel}: not valid UTF-8 text; not read (FB_MANIFEST_UNREADABLE)`], opaque: true });
    }
    let parsed: ParsedManifest;
    try {
      parsed = await this.#parser.parse(text, rel);
    } catch (err) {
      return this.#record(entry.path, fp, contentHash, { issues: [`${rel}: cannot be parsed: ${(err as Error).message} (FB_MANIFEST_TOO_LARGE)`], opaque: true });
    }
    return this.#record(entry.path, fp, contentHash, parsed);
  }

  /**
   * Stores a file's new state (keeping its last good resources when it is bad) and logs the change.
   * Returns false when nothing changed (the same problem seen again).
   */
  #record(path: string, fingerprint: string, contentHash: string, parsed: Pick<ParsedManifest, 'issues' | 'opaque'> & Partial<ParsedManifest>): boolean {
    const prev = this.#files.get(path);
    const issues = parsed.issues;
    if (prev && prev.fingerprint === fingerprint && issues.length > 0 && prev.issues.join('\n') === issues.join('\n')) return false;
    const state: FileState = {
      fingerprint,
      contentHash,
      lastGood: prev?.lastGood ?? null,
      issues,
      bridgeIssues: parsed.bridgeIssues ?? [],
      opaque: parsed.opaque,
    };
    const rel = this.#rel(path);
    if (issues.length === 0) {
      state.lastGood = { collectors: parsed.collectors ?? [], bridges: parsed.bridges ?? [], secrets: parsed.secrets ?? [] };
      const skipped = parsed.skipped ?? [];
      this.#opts.logger.info({ file: rel, collectors: state.lastGood.collectors.length, secrets: state.lastGood.secrets.length, ...(skipped.length ? { skipped } : {}) }, 'Manifest file loaded');
    } else {
      this.#opts.logger.error({ file: rel, issues, keptLastGood: state.lastGood !== null }, 'Manifest file is invalid; it was skipped and nothing else changed');
    }
    this.#files.set(path, state);
    return true;
  }

  #rel(p: string): string {
    return relative(this.#opts.dir, p) || p;
  }

  #assemble(): ManifestSnapshot {
    const collectors = new Map<string, LoadedCollector>();
    const bridges: LoadedBridge[] = [];
    const secrets = new Map<string, LoadedSecret>();
    const invalidFiles: InvalidFile[] = [];
    const bridgeProblems: string[] = [];
    const opaqueFiles: InvalidFile[] = [];
    if (this.#folderProblem) {
      invalidFiles.push({ path: '.', issues: [this.#folderProblem] });
      opaqueFiles.push({ path: '.', issues: [this.#folderProblem] });
    }
    for (const [p, st] of [...this.#files.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const issues = [...st.issues];
      bridgeProblems.push(...st.bridgeIssues);
      if (st.opaque) opaqueFiles.push({ path: this.#rel(p), issues: st.issues });
      for (const c of st.lastGood?.collectors ?? []) {
        const key = `${c.input.namespace}/${c.input.name}`;
        const other = collectors.get(key);
        if (other) {
          issues.push(`Collector ${key} is also defined in ${other.source}; this definition is ignored (FB_MANIFEST_DUPLICATE)`);
          continue;
        }
        collectors.set(key, c);
      }
      bridges.push(...(st.lastGood?.bridges ?? []));
      for (const sec of st.lastGood?.secrets ?? []) {
        const key = `${sec.namespace}/${sec.name}`;
        const other = secrets.get(key);
        if (other) {
          issues.push(`Secret ${key} is also defined in ${other.source}; this definition is ignored (FB_MANIFEST_DUPLICATE)`);
          continue;
        }
        secrets.set(key, sec);
      }
      if (issues.length > 0) invalidFiles.push({ path: this.#rel(p), issues });
    }
    if (bridges.length > 1) {
      const msg = `more than one OpAMPBridge in the folder (${bridges.map((b) => b.source).join(', ')}); using ${bridges[0]!.source} (standalone mode serves one endpoint)`;
      invalidFiles.push({ path: bridges[1]!.source, issues: [msg] });
      bridgeProblems.push(msg);
    }
    return { collectors: [...collectors.values()], bridge: bridges[0] ?? null, secrets: [...secrets.values()], invalidFiles, bridgeProblems, opaqueFiles };
  }
}
