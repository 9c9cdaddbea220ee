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
  digest: Buffer;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export class BearerTokens implements CredentialPolicy {
  #entries: Entry[] = [];
  #current: { key: string; token: string; digest: Buffer } | null = null;
  #problem: string | null = 'no tokens are configured';
  /** Verdicts by presented token, until the tokens change: status and API ask about every agent. */
  readonly #verdicts = new Map<string, { key: string | null; current: boolean }>();

  /**
   * Installs the accepted tokens (Secret key → token; empty values are ignored) and which key is
   * current. `problem` explains an unusable source (e.g. the Secret does not exist): every agent is
   * refused with 503 until tokens arrive.
   */
  set(tokens: Readonly<Record<string, string>>, currentKey: string, problem?: string): void {
    const entries: Entry[] = [];
    for (const [key, raw] of Object.entries(tokens)) {
      const token = raw.trim();
      if (token !== '') entries.push({ key, digest: digest(token) });
    }
    this.#entries = entries;
    const cur = tokens[currentKey]?.trim();
    this.#current = cur ? { key: currentKey, token: cur, digest: digest(cur) } : null;
    this.#problem = problem ?? (entries.length === 0 ? 'the token Secret holds no tokens' : null);
    this.#verdicts.clear();
  }

  /** Which key `token` is under, and whether it is the current token; digests compared in constant time. */
  #verdict(token: string): { key: string | null; current: boolean } {
    let v = this.#verdicts.get(token);
    if (!v) {
      const d = digest(token);
      let key: string | null = null;
      for (const e of this.#entries) if (timingSafeEqual(d, e.digest) && key === null) key = e.key;
      v = { key, current: !!this.#current && timingSafeEqual(d, this.#current.digest) };
      // Only accepted tokens are remembered: refused ones are whatever a stranger sends.
      if (key !== null) {
        if (this.#verdicts.size >= 1000) this.#verdicts.clear();
        this.#verdicts.set(token, v);
      }
    }
    return v;
  }

  /** Key of the current token, or null. */
  get currentKey(): string | null {
    return this.#current?.key ?? null;
  }

  readonly authenticate = async (req: IncomingMessage): Promise<AuthResult> => {
    if (this.#problem) return { ok: false, status: 503, reason: `agents cannot be authenticated: ${this.#problem}` };
    const m = BEARER.exec(req.headers.authorization ?? '');
    if (!m) return { ok: false, status: 401, reason: 'a bearer token is required' };
    const key = this.#match(m[1]!);
    if (key === null) return { ok: false, status: 401, reason: 'the bearer token is not accepted' };
    return { ok: true, identity: { method: 'bearerToken', username: `bearer-token:${key}`, credential: { key, current: this.#isCurrent(m[1]!) } } };
  };

  /** Whether this Authorization header carries an accepted token. */
  accepts(authorization: string | undefined): boolean {
    const m = BEARER.exec(authorization ?? '');
    return !!m && this.#problem === null && this.#match(m[1]!) !== null;
  }

  credentialOf(authorization: string | undefined): { key: string; current: boolean } | undefined {
    const m = BEARER.exec(authorization ?? '');
    const key = m ? this.#match(m[1]!) : null;
    return key === null ? undefined : { key, current: this.#isCurrent(m![1]!) };
  }

  replacementFor(authorization: string | undefined): string | undefined {
    const cur = this.#current;
    if (!cur || authorization === undefined) return undefined;
    const m = BEARER.exec(authorization);
    return m && this.#isCurrent(m[1]!) ? undefined : `Bearer ${cur.token}`;
  }

  #isCurrent(token: string): boolean {
    return this.#verdict(token).current;
  }

  #match(token: string): string | null {
    return this.#verdict(token).key;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
