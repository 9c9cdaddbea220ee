/**
 * Request helpers of the OpAMP endpoint: the path of a request, Host header validation, and the
 * endpoint URL offered back to agents.
 */
import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';

/** Longest Host header value accepted: a 253-character DNS name and a port. */
const MAX_HOST_LENGTH = 260;
/** RFC 3986 unreserved characters: the reg-name (DNS names, IPv4 addresses) accepted in Host. */
const REG_NAME = /^[A-Za-z0-9._~-]{1,253}$/;
const PORT = /^[0-9]{1,5}$/;

/**
 * Parses a Host header value (RFC 9110 §7.2: uri-host [":" port]). Accepted: a reg-name of RFC 3986
 * unreserved characters (letters, digits, "-", ".", "_", "~"; DNS names and IPv4 addresses) of at
 * most 253 characters, or an IPv6 literal in brackets (no zone id, no IPvFuture); then optionally
 * ":" and a port of 1 to 5 digits up to 65535. The result also parses as a WHATWG URL host (which
 * e.g. refuses "1.2.3.4.5"), so URLs built from it never throw. Anything else is null.
 */
export function parseHostHeader(value: string): { hostname: string; port: string | undefined } | null {
  if (value.length === 0 || value.length > MAX_HOST_LENGTH) return null;
  let hostname: string;
  let rest: string;
  if (value.charCodeAt(0) === 0x5b /* [ */) {
    const end = value.indexOf(']');
    if (end < 0) return null;
    const inner = value.slice(1, end);
    if (inner.includes('%') || !isIPv6(inner)) return null;
    hostname = value.slice(0, end + 1);
    rest = value.slice(end + 1);
  } else {
    const colon = value.indexOf(':');
    hostname = colon < 0 ? value : value.slice(0, colon);
    rest = colon < 0 ? '' : value.slice(colon);
    if (!REG_NAME.test(hostname)) return null;
  }
  let port: string | undefined;
  if (rest !== '') {
    if (rest.charCodeAt(0) !== 0x3a /* : */) return null;
    port = rest.slice(1);
    if (!PORT.test(port) || Number(port) > 65535) return null;
  }
  try {
    new URL(`http://${hostname}/`);
  } catch {
    return null;
  }
  return { hostname, port };
}

/** How many Host headers a request carries (Node keeps only the first in `headers`). */
function hostHeaderCount(raw: string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') n++;
  return n;
}

/** The path of the request's URL, without the query. */
export function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** The endpoint URLs built so far, by scheme and Host: every agent that reached us by one name shares one copy. */
export class EndpointUrls {
  readonly #urls = new Map<string, string>();

  /**
   * The URL the peer reached us by — scheme, its Host header, `path` — built only from a Host
   * that parseHostHeader accepts (IPv6 in brackets), or, for an HTTP/1.0 request without Host, our
   * own address and port. Null when the Host is missing (HTTP/1.1 requires it), malformed, or
   * sent twice: the caller answers 400. Agents are offered this URL (connection settings, package
   * downloads), so it must always parse. The caller calls `clear` when `path` changes.
   */
  of(req: IncomingMessage, scheme: 'ws' | 'http', path: string): string | null {
    const tls = (req.socket as { encrypted?: boolean }).encrypted === true;
    let host = req.headers.host;
    if (host === undefined) {
      if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) {
        const local = req.socket.localAddress;
        if (!local) return null;
        const addr = isIPv6(local) ? `[${local.replace(/%.*$/, '')}]` : local;
        host = `${addr}:${req.socket.localPort ?? ''}`;
      } else return null;
    } else if (hostHeaderCount(req.rawHeaders) !== 1) return null;
    const prefix = `${scheme}${tls ? 's' : ''}://`;
    // Only valid hosts are cached, so a stream of bad ones cannot churn the cache.
    const key = prefix + host;
    const known = this.#urls.get(key);
    if (known !== undefined) return known;
    const parsed = parseHostHeader(host);
    if (!parsed) return null;
    const url = `${prefix}${parsed.hostname}${parsed.port !== undefined ? `:${parsed.port}` : ''}${path}`;
    if (this.#urls.size >= 1000) this.#urls.clear();
    this.#urls.set(key, url);
    return url;
  }

  clear(): void {
    this.#urls.clear();
  }
}
