/**
 * Package files the bridge serves itself (Collector spec.packages[].serve), on the OpAMP endpoint:
 * `GET /v1/packages/NAMESPACE/SHA256`, authenticated like an OpAMP connection, and only for a file
 * a valid Collector of the caller's namespace offers. A `serve.path` file is read from under the
 * bridge's packages directory (never outside it, symlinks included); a `serve.url` file is fetched
 * once from an allowed source, checked against its SHA-256, and kept in a cache folder.
 * Agents check the hash of what they download themselves (DownloadableFile.content_hash).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, realpath, rename, rm, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { VerifiedIdentity } from '../opamp/connection.js';
import { PACKAGES_PATH, parsePackagePath } from './packages.js';
import { sourceAllowed, type OfferedPackage } from '../render/packages.js';

export interface PackageFilesOptions {
  /** OpAMPBridge spec.packages.directory: serve.path is relative to it. */
  directory?: string;
  /** OpAMPBridge spec.packages.allowedSourcePrefixes: serve.url must start with one. */
  allowedSourcePrefixes?: readonly string[];
  /** Largest file fetched for serve.url. Default 1 GiB. */
  maxFileBytes?: number;
  /** Where fetched files are kept. Default a folder under the OS temp dir. */
  cacheDirectory?: string;
  /** Time allowed for fetching one file. Default 10 minutes. */
  fetchTimeoutMs?: number;
  logger: Logger;
}

export class PackageFileError extends Error {
  constructor(
    readonly status: number,
    readonly outcome: string,
    message: string,
  ) {
    super(message);
  }
}

export class PackageFiles {
  readonly #o: PackageFilesOptions & { maxFileBytes: number; cacheDirectory: string; fetchTimeoutMs: number };
  /** Fetches in progress, by sha256: concurrent downloads of one file fetch it once. */
  readonly #fetching = new Map<string, Promise<string>>();

  constructor(opts: PackageFilesOptions) {
    this.#o = {
      maxFileBytes: 1024 * 1024 * 1024,
      cacheDirectory: join(tmpdir(), `fleetbridge-packages-${process.pid}`),
      fetchTimeoutMs: 10 * 60_000,
      ...opts,
    };
  }

  /** The local file to serve for `pkg`, fetching it first for serve.url. */
  async fileFor(pkg: OfferedPackage): Promise<{ path: string; size: number; mtime: Date }> {
    if (pkg.source.kind !== 'served') throw new PackageFileError(404, 'not_found', 'this package is not served by the bridge');
    let path: string;
    if (pkg.source.path !== undefined) path = await this.#underDirectory(pkg.source.path);
    else if (pkg.source.url !== undefined) path = await this.#cached(pkg.source.url, pkg.sha256);
    else throw new PackageFileError(404, 'not_found', 'no source');
    const st = await stat(path).catch(() => null);
    if (!st?.isFile()) throw new PackageFileError(404, 'not_found', 'the package file does not exist');
    return { path, size: st.size, mtime: st.mtime };
  }

  async #underDirectory(relative: string): Promise<string> {
    const dir = this.#o.directory;
    if (!dir) throw new PackageFileError(404, 'not_found', 'this bridge has no packages directory');
    let root: string;
    let file: string;
    try {
      root = await realpath(dir);
      file = await realpath(resolve(root, relative));
    } catch {
      throw new PackageFileError(404, 'not_found', 'the package file does not exist');
    }
    // After resolving symlinks: a link inside the directory must not lead out of it.
    if (!file.startsWith(root + sep)) throw new PackageFileError(403, 'forbidden', 'the package file is outside the packages directory');
    return file;
  }

  #cached(url: string, sha256: string): Promise<string> {
    if (!sourceAllowed(url, this.#o.allowedSourcePrefixes ?? [])) {
      return Promise.reject(new PackageFileError(403, 'forbidden', 'the source is not among the allowed source prefixes'));
    }
    const target = join(this.#o.cacheDirectory, sha256);
    let p = this.#fetching.get(sha256);
    if (!p) {
      p = stat(target)
        .then((st) => (st.isFile() ? target : this.#fetch(url, sha256, target)))
        .catch((err: unknown) => ((err as NodeJS.ErrnoException).code === 'ENOENT' ? this.#fetch(url, sha256, target) : Promise.reject(err)))
        .finally(() => this.#fetching.delete(sha256));
      this.#fetching.set(sha256, p);
    }
    return p;
  }

  async #fetch(url: string, sha256: string, target: string): Promise<string> {
    const log = this.#o.logger;
    await mkdir(this.#o.cacheDirectory, { recursive: true, mode: 0o700 });
    const partial = `${target}.${process.pid}.${Date.now()}.partial`;
    const started = Date.now();
    try {
      // Redirects are not followed: one could lead outside the allowed prefixes.
      const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(this.#o.fetchTimeoutMs) });
      if (res.status !== 200 || !res.body) {
        await res.body?.cancel();
        throw new PackageFileError(502, 'unavailable', `the source answered HTTP ${res.status}`);
      }
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (declared > this.#o.maxFileBytes) throw new PackageFileError(502, 'unavailable', `the source file exceeds ${this.#o.maxFileBytes} bytes`);
      const hash = createHash('sha256');
      let size = 0;
      const max = this.#o.maxFileBytes;
      const counted = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
      counted.on('data', (chunk: Buffer) => {
        size += chunk.length;
        hash.update(chunk);
        if (size > max) counted.destroy(new PackageFileError(502, 'unavailable', `the source file exceeds ${max} bytes`));
      });
      await pipeline(counted, createWriteStream(partial, { mode: 0o600 }));
      const got = hash.digest('hex');
      if (got !== sha256) throw new PackageFileError(502, 'unavailable', `the source file's SHA-256 is ${got}, not the declared ${sha256}`);
      await rename(partial, target);
      log.info({ url, sha256, bytes: size, ms: Date.now() - started }, 'Fetched a package file to serve');
      return target;
    } catch (err) {
      await rm(partial, { force: true });
      const e = err instanceof PackageFileError ? err : new PackageFileError(502, 'unavailable', `cannot fetch the source: ${(err as Error).message}`);
      log.warn({ url, sha256, error: e.message }, 'Could not fetch a package file to serve');
      throw e;
    }
  }
}

export interface PackageDownloadOptions {
  files: PackageFiles;
  /** The package a valid Collector of `namespace` serves with this file hash (DesiredState.servedPackage). */
  lookup: (namespace: string, sha256: string) => OfferedPackage | undefined;
  /** Counts each request's outcome. */
  count?: (outcome: string) => void;
  logger: Logger;
}

/**
 * Serves GET/HEAD `/v1/packages/NAMESPACE/SHA256` (the caller authenticates first and passes the
 * verified identity): an agent whose credential names a namespace gets only its namespace's files.
 * Supports one byte range (`Range: bytes=a-b`), as OpAMP asks of download servers.
 */
export function packageDownloadHandler(opts: PackageDownloadOptions) {
  return async (req: IncomingMessage, res: ServerResponse, path: string, identity: VerifiedIdentity | undefined): Promise<void> => {
    const fail = (status: number, outcome: string, message: string, headers: Record<string, string> = {}) => {
      opts.count?.(outcome);
      req.resume();
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers }).end(message + '\n');
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'bad_request', 'only GET and HEAD', { Allow: 'GET, HEAD' });
    const ref = parsePackagePath(path);
    if (!ref) return fail(404, 'not_found', 'not a package path: /v1/packages/NAMESPACE/SHA256');
    if (identity?.namespace !== undefined && identity.namespace !== ref.namespace) {
      opts.logger.warn({ namespace: ref.namespace, identityNamespace: identity.namespace, username: identity.username }, 'Refused a package download for another namespace');
      return fail(403, 'forbidden', 'your credential is for another namespace');
    }
    const pkg = opts.lookup(ref.namespace, ref.sha256);
    if (!pkg) return fail(404, 'not_found', 'no Collector of this namespace serves a package with this SHA-256');
    let file: { path: string; size: number; mtime: Date };
    try {
      file = await opts.files.fileFor(pkg);
    } catch (err) {
      if (err instanceof PackageFileError) {
        opts.logger.warn({ namespace: ref.namespace, sha256: ref.sha256, collector: pkg.collector, error: err.message }, 'Cannot serve a package file');
        return fail(err.status, err.outcome, err.message);
      }
      throw err;
    }
    const etag = `"${ref.sha256}"`;
    const base = { 'Content-Type': 'application/octet-stream', ETag: etag, 'Accept-Ranges': 'bytes', 'Last-Modified': file.mtime.toUTCString() };
    if (req.headers['if-none-match'] === etag) {
      opts.count?.('not_modified');
      return void res.writeHead(304, base).end();
    }
    let start = 0;
    let end = file.size - 1;
    let status = 200;
    const range = req.headers.range;
    const ifRange = req.headers['if-range'];
    if (range && (!ifRange || ifRange === etag)) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      const a = m?.[1] ? Number(m[1]) : null;
      const b = m?.[2] ? Number(m[2]) : null;
      if (!m || (a === null && b === null)) return fail(416, 'bad_request', 'only one byte range (bytes=a-b) is supported', { 'Content-Range': `bytes */${file.size}` });
      if (a === null) start = Math.max(0, file.size - b!);
      else {
        start = a;
        if (b !== null) end = Math.min(b, file.size - 1);
      }
      if (start > end || start >= file.size) return fail(416, 'bad_request', 'range not satisfiable', { 'Content-Range': `bytes */${file.size}` });
      status = 206;
    }
    const length = file.size === 0 ? 0 : end - start + 1;
    const headers: Record<string, string | number> = { ...base, 'Content-Length': length };
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${file.size}`;
    opts.count?.(status === 206 ? 'partial' : 'served');
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || length === 0) return void res.end();
    await pipeline(createReadStream(file.path, { start, end }), res).catch((err: unknown) => {
      opts.logger.debug({ err, path: ref }, 'A package download ended early');
    });
  };
}

/**
 * The OpAMP server's `files` route for package downloads: `/v1/packages/...`, served from the
 * OpAMPBridge's `spec.packages` sources for the packages `desired()` declares now.
 */
export function packageFilesRoute(opts: {
  spec: Omit<PackageFilesOptions, 'logger'> | undefined;
  desired: () => { servedPackage(namespace: string, sha256: string): OfferedPackage | undefined };
  downloads: { inc(labels: { outcome: string }): void };
  logger: Logger;
}) {
  const logger = opts.logger.child({ component: 'packages' });
  return {
    prefix: PACKAGES_PATH,
    handle: packageDownloadHandler({
      files: new PackageFiles({ ...opts.spec, logger }),
      lookup: (ns, sha) => opts.desired().servedPackage(ns, sha),
      count: (outcome) => opts.downloads.inc({ outcome }),
      logger,
    }),
  };
}
