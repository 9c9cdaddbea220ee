/**
 * Reading a request body under a size cap, for every HTTP endpoint that accepts one. What a
 * refusal looks like (status, text) is the caller's: it maps the errors these reject with.
 */
import type { IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';

const gunzipAsync = promisify(gunzip);

/** A body (declared, received, or decompressed) larger than the cap. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`body exceeds ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

export interface ReadBodyOptions {
  /** The error to reject with when the body exceeds the cap; default a BodyTooLargeError. */
  tooLarge?: (limit: number) => Error;
}

/**
 * The whole body of `req`. Rejects as soon as it exceeds `limit` bytes — before reading anything
 * when Content-Length says so — with `tooLarge(limit)`; the request is then paused and its
 * listeners removed, and the caller answers and resumes or destroys it. A stream error rejects
 * with that error.
 */
export function readBody(req: IncomingMessage, limit: number, opts: ReadBodyOptions = {}): Promise<Buffer> {
  const tooLarge = opts.tooLarge ?? ((n: number) => new BodyTooLargeError(n));
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | null) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      if (err) {
        req.pause();
        reject(err);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) return finish(tooLarge(limit));
      chunks.push(c);
    };
    const onEnd = () => finish(null);
    const onError = (e: Error) => finish(e);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * `body` gunzipped, at most `limit` bytes of output. Rejects with a BodyTooLargeError past that,
 * and with zlib's error when the body is not valid gzip.
 */
export async function gunzipBody(body: Buffer, limit: number): Promise<Buffer> {
  try {
    return await gunzipAsync(body, { maxOutputLength: limit });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) throw new BodyTooLargeError(limit);
    throw err;
  }
}
