import { describe, expect, it } from 'vitest';
import type { IncomingMessage } from 'node:http';
import { BearerTokens } from '../../../src/opamp/bearer-auth.js';

const req = (authorization?: string) => ({ headers: authorization === undefined ? {} : { authorization } }) as IncomingMessage;

describe('BearerTokens', () => {
  it('refuses everyone with 503 until tokens are configured', async () => {
    const b = new BearerTokens();
    expect(await b.authenticate(req('Bearer x'))).toMatchObject({ ok: false, status: 503 });
    b.set({}, 'token', 'Secret ns/tokens not found');
    expect(await b.authenticate(req('Bearer x'))).toEqual({ ok: false, status: 503, reason: 'agents cannot be authenticated: Secret ns/tokens not found' });
  });

  it('accepts every token in the Secret, says which, and whether it is the current one', async () => {
    const b = new BearerTokens();
    b.set({ token: 'new-token', previous: ' old-token\n', empty: '' }, 'token');
    expect(await b.authenticate(req())).toMatchObject({ ok: false, status: 401, reason: 'a bearer token is required' });
    expect(await b.authenticate(req('Basic abc'))).toMatchObject({ ok: false, status: 401 });
    expect(await b.authenticate(req('Bearer nope'))).toMatchObject({ ok: false, status: 401, reason: 'the bearer token is not accepted' });
    expect(await b.authenticate(req('Bearer '))).toMatchObject({ ok: false, status: 401 });
    expect(await b.authenticate(req('Bearer new-token'))).toEqual({ ok: true, identity: { method: 'bearerToken', username: 'bearer-token:token', credential: { key: 'token', current: true } } });
    expect(await b.authenticate(req('bearer old-token'))).toEqual({ ok: true, identity: { method: 'bearerToken', username: 'bearer-token:previous', credential: { key: 'previous', current: false } } });
  });

  it('offers the current token to agents on another one, and nothing to those on the current one', () => {
    const b = new BearerTokens();
    b.set({ token: 'new-token', previous: 'old-token' }, 'token');
    expect(b.replacementFor('Bearer old-token')).toBe('Bearer new-token');
    expect(b.replacementFor('Bearer new-token')).toBeUndefined();
    expect(b.replacementFor(undefined)).toBeUndefined();
    expect(b.accepts('Bearer old-token')).toBe(true);
    b.set({ token: 'new-token' }, 'token');
    expect(b.accepts('Bearer old-token')).toBe(false);
    expect(b.accepts('Bearer new-token')).toBe(true);
    // No current token (its key is missing): nothing to offer.
    b.set({ other: 'x' }, 'token');
    expect(b.currentKey).toBeNull();
    expect(b.replacementFor('Bearer x')).toBeUndefined();
  });
});
