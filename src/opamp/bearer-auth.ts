/**
 * Static bearer tokens (auth.mode bearerToken): every value in a Secret is an accepted token, so an
 * operator rotates by adding the new token, making it current, and removing the old one once the
 * fleet has moved. Agents presenting an accepted but not current token are offered the current one
 * (ConnectionSettingsOffers.opamp headers) and counted until they reconnect with it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AuthResult } from './connection.js';

/** Decides which Authorization an agent should use from now on. */
export interface CredentialPolicy {
  /** The Authorization header value a connection that presented `authorization` should switch to, or undefined when it is current. */
  replacementFor(authorization: string | undefined): string | undefined;
  /** Which accepted credential `authorization` is now (keys move in a rotation), or undefined. */
  credentialOf?(authorization: string | undefined): { key: string; current: boolean } | undefined;
}

interface Entry {
  key: string;
  namespace: string | undefined;
  digest: Buffer;
}

/** One Secret's tokens. */
export interface TokenSource {
  /**
   * The namespace the Secret was declared in: its tokens grant that namespace only (the verified
   * identity carries it). Unset: the tokens name no namespace (Kubernetes mode binds agents to the
   * pods they claim instead).
   */
  namespace?: string | undefined;
  /** Secret key → token; empty values are ignored. */
  tokens: Readonly<Record<string, string>>;
  /** The key whose token is current (offered to agents on another token of this source). */
  currentKey: string;
  /** Why this source is unusable (e.g. the Secret does not exist). */
  problem?: string | undefined;
}

interface Verdict {
  key: string | null;
  namespace: string | undefined;
  current: boolean;
  /** The token is in Secrets of several namespaces: accepted in none. */
  ambiguous?: string[];
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export class BearerTokens implements CredentialPolicy {
  #entries: Entry[] = [];
  /** Current token by namespace ('' for a source without one). */
  #current = new Map<string, { key: string; token: string; digest: Buffer }>();
  /** The only source's namespace key when there is exactly one ('' without namespace); else null. */
  #single: string | null = null;
  #problem: string | null = 'no tokens are configured';
  /** Verdicts by presented token, until the tokens change: status and API ask about every agent. */
  readonly #verdicts = new Map<string, Verdict>();

  /**
   * Installs the accepted tokens (Secret key → token; empty values are ignored) and which key is
   * current. `problem` explains an unusable source (e.g. the Secret does not exist): every agent is
   * refused with 503 until tokens arrive.
   */
  set(tokens: Readonly<Record<string, string>>, currentKey: string, problem?: string, namespace?: string): void {
    this.setSources([{ tokens, currentKey, problem, namespace }]);
  }

  /**
   * Installs the tokens of several Secrets, each granting its own namespace. A source with a
   * problem grants nothing; agents are refused with 503 only when no source holds a token (or the
   * only source has a problem). Returns the problems worth telling (unusable sources; a token found
   * in several namespaces, which is then accepted in none) — without any token value.
   */
  setSources(sources: readonly TokenSource[]): string[] {
    const entries: Entry[] = [];
    const current = new Map<string, { key: string; token: string; digest: Buffer }>();
    const problems: string[] = [];
    for (const src of sources) {
      if (src.problem) {
        problems.push(src.problem);
        continue;
      }
      for (const [key, raw] of Object.entries(src.tokens)) {
        const token = raw.trim();
        if (token !== '') entries.push({ key, namespace: src.namespace, digest: digest(token) });
      }
      const cur = src.tokens[src.currentKey]?.trim();
      if (cur) current.set(src.namespace ?? '', { key: src.currentKey, token: cur, digest: digest(cur) });
    }
    // A token declared in Secrets of two namespaces would let its holder pick either: refused in both.
    const byDigest = new Map<string, Set<string>>();
    for (const e of entries) {
      const k = e.digest.toString('hex');
      const set = byDigest.get(k) ?? new Set<string>();
      set.add(e.namespace ?? '');
      byDigest.set(k, set);
    }
    for (const [, nss] of byDigest) {
      if (nss.size > 1) problems.push(`a token is declared in the Secrets of several namespaces (${[...nss].sort().join(', ')}); it is accepted in none of them`);
    }
    this.#entries = entries;
    this.#current = current;
    this.#single = sources.length === 1 ? (sources[0]!.namespace ?? '') : null;
    this.#problem =
      sources.length === 1 && sources[0]!.problem
        ? sources[0]!.problem
        : entries.length === 0
          ? (problems[0] ?? (sources.length === 0 ? 'no tokens are configured' : 'the token Secret holds no tokens'))
          : null;
    this.#verdicts.clear();
    return problems;
  }

  /** Which key (and namespace) `token` is under, and whether it is its namespace's current token; digests compared in constant time. */
  #verdict(token: string): Verdict {
    let v = this.#verdicts.get(token);
    if (!v) {
      const d = digest(token);
      let found: Entry | null = null;
      const namespaces = new Set<string>();
      for (const e of this.#entries) {
        if (timingSafeEqual(d, e.digest)) {
          namespaces.add(e.namespace ?? '');
          found ??= e;
        }
      }
      if (namespaces.size > 1) {
        v = { key: null, namespace: undefined, current: false, ambiguous: [...namespaces].sort() };
      } else {
        const cur = found ? this.#current.get(found.namespace ?? '') : undefined;
        v = { key: found?.key ?? null, namespace: found?.namespace, current: !!cur && timingSafeEqual(d, cur.digest) };
      }
      // Only accepted tokens are remembered: refused ones are whatever a stranger sends.
      if (v.key !== null) {
        if (this.#verdicts.size >= 1000) this.#verdicts.clear();
        this.#verdicts.set(token, v);
      }
    }
    return v;
  }

  /** Key of the current token (of the only source), or null. */
  get currentKey(): string | null {
    return this.#single !== null ? (this.#current.get(this.#single)?.key ?? null) : null;
  }

  readonly authenticate = async (req: IncomingMessage): Promise<AuthResult> => {
    if (this.#problem) return { ok: false, status: 503, reason: `agents cannot be authenticated: ${this.#problem}` };
    const m = BEARER.exec(req.headers.authorization ?? '');
    if (!m) return { ok: false, status: 401, reason: 'a bearer token is required' };
    const v = this.#verdict(m[1]!);
    if (v.ambiguous) return { ok: false, status: 401, reason: `the bearer token is declared in several namespaces (${v.ambiguous.join(', ')}) and accepted in none` };
    if (v.key === null) return { ok: false, status: 401, reason: 'the bearer token is not accepted' };
    return {
      ok: true,
      identity: {
        method: 'bearerToken',
        username: v.namespace !== undefined ? `bearer-token:${v.namespace}/${v.key}` : `bearer-token:${v.key}`,
        ...(v.namespace !== undefined ? { namespace: v.namespace } : {}),
        credential: { key: v.key, current: v.current },
      },
    };
  };

  /** Whether this Authorization header carries an accepted token. */
  accepts(authorization: string | undefined): boolean {
    const m = BEARER.exec(authorization ?? '');
    return !!m && this.#problem === null && this.#match(m[1]!) !== null;
  }

  /** The namespace the token in this Authorization header grants (undefined: none, or it names none). */
  namespaceOf(authorization: string | undefined): string | undefined {
    const m = BEARER.exec(authorization ?? '');
    if (!m) return undefined;
    const v = this.#verdict(m[1]!);
    return v.key === null ? undefined : v.namespace;
  }

  credentialOf(authorization: string | undefined): { key: string; current: boolean } | undefined {
    const m = BEARER.exec(authorization ?? '');
    if (!m) return undefined;
    const v = this.#verdict(m[1]!);
    return v.key === null ? undefined : { key: v.key, current: v.current };
  }

  replacementFor(authorization: string | undefined): string | undefined {
    if (authorization === undefined) return undefined;
    const m = BEARER.exec(authorization);
    const v = m ? this.#verdict(m[1]!) : null;
    // The current token of the namespace the presented token grants; never another namespace's.
    const ns = v && v.key !== null ? (v.namespace ?? '') : this.#single;
    const cur = ns !== null ? this.#current.get(ns) : undefined;
    if (!cur) return undefined;
    return v && v.key !== null && v.current ? undefined : `Bearer ${cur.token}`;
  }

  #match(token: string): string | null {
    return this.#verdict(token).key;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
