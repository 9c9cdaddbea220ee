import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_NAMESPACE_REASON, identityOf, mtlsAuth, subjectAltNames } from '../../../src/opamp/mtls-auth.js';
import { makeTestPki, opensslMissingReason, type TestPki } from '../../harness/tls.js';
import { skipUnlessOnCi } from '../../harness/tools.js';

const skip = skipUnlessOnCi('mtls-auth.test', opensslMissingReason());

/** A request on a TLS socket that presented `certPem` (or nothing) and got this verdict from OpenSSL. */
function req(certPem: string | null, authorized = certPem !== null, authorizationError?: string): IncomingMessage {
  const socket = {
    encrypted: true,
    authorized,
    authorizationError,
    getPeerCertificate: () => (certPem === null ? {} : { raw: new X509Certificate(certPem).raw }),
  };
  return { headers: {}, socket } as unknown as IncomingMessage;
}

describe('subjectAltNames', () => {
  it('splits Node subjectAltName text, unquoting JSON-quoted values', () => {
    expect(subjectAltNames('URI:spiffe://td/ns/a/sa/b, DNS:localhost, IP Address:127.0.0.1')).toEqual([
      ['URI', 'spiffe://td/ns/a/sa/b'],
      ['DNS', 'localhost'],
      ['IP Address', '127.0.0.1'],
    ]);
    // Node JSON-quotes a value with a comma (as it printed a real certificate's), so it cannot forge a second entry.
    expect(subjectAltNames('URI:"spiffe://a/b\\u002cURI:spiffe://td/ns/kube-system/sa/admin", DNS:ok')).toEqual([
      ['URI', 'spiffe://a/b,URI:spiffe://td/ns/kube-system/sa/admin'],
      ['DNS', 'ok'],
    ]);
    expect(subjectAltNames(undefined)).toEqual([]);
    expect(subjectAltNames('')).toEqual([]);
  });
});

describe.skipIf(skip)('mtlsAuth', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makeTestPki();
  }, 60_000);
  afterAll(async () => {
    await pki?.remove();
  });

  const k8s = mtlsAuth({ requireNamespace: true });
  const standalone = mtlsAuth({ requireNamespace: false });

  it('refuses a request without a client certificate with 401, also on a plain socket', async () => {
    expect(await k8s(req(null))).toEqual({ ok: false, status: 401, reason: 'a client certificate is required' });
    expect(await standalone({ headers: {}, socket: {} } as unknown as IncomingMessage)).toEqual({ ok: false, status: 401, reason: 'a client certificate is required' });
  });

  it('refuses a certificate OpenSSL did not verify with 401, saying why', async () => {
    const r = await standalone(req(pki.clients.otherCa.cert, false, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'));
    expect(r).toEqual({ ok: false, status: 401, reason: 'the client certificate is not accepted: UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });

  it('reads namespace and ServiceAccount from a SPIFFE ID', async () => {
    expect(await k8s(req(pki.clients.spiffe.cert))).toEqual({
      ok: true,
      identity: { method: 'mtls', username: 'spiffe://cluster.local/ns/team-a/sa/collector', namespace: 'team-a', serviceAccount: 'collector' },
    });
  });

  it('reads namespace and ServiceAccount from a CN system:serviceaccount:NS:SA', async () => {
    expect(await k8s(req(pki.clients.serviceAccountCn.cert))).toEqual({
      ok: true,
      identity: { method: 'mtls', username: 'system:serviceaccount:team-b:otel', namespace: 'team-b', serviceAccount: 'otel' },
    });
  });

  it('refuses a certificate naming no namespace with 403 in Kubernetes mode, and accepts it by its CN otherwise', async () => {
    expect(await k8s(req(pki.clients.plain.cert))).toEqual({ ok: false, status: 403, reason: `${NO_NAMESPACE_REASON}; it is plain-name` });
    expect(await standalone(req(pki.clients.plain.cert))).toEqual({ ok: true, identity: { method: 'mtls', username: 'plain-name' } });
  });

  it('prefers the SPIFFE ID over a service-account CN', async () => {
    const c = await pki.issueClient('both', '/CN=system:serviceaccount:team-b:otel', 'URI:spiffe://example.org/ns/team-c/sa/agent');
    expect(identityOf(new X509Certificate(c.cert))).toEqual({
      identity: { method: 'mtls', username: 'spiffe://example.org/ns/team-c/sa/agent', namespace: 'team-c', serviceAccount: 'agent' },
    });
  });

  it('refuses a certificate with two SPIFFE IDs with 403', async () => {
    const c = await pki.issueClient('two-ids', '/CN=x', 'URI:spiffe://td/ns/a/sa/b, URI:spiffe://td/ns/kube-system/sa/c');
    const r = await standalone(req(c.cert));
    expect(r).toMatchObject({ ok: false, status: 403 });
    expect(r.ok === false && r.reason).toMatch(/2 SPIFFE IDs .*exactly one/);
  });

  it('takes a SPIFFE ID of another shape, or a malformed service-account CN, as a name without namespace', async () => {
    const odd = await pki.issueClient('odd-spiffe', '/CN=odd', 'URI:spiffe://example.org/workload/x');
    expect(await standalone(req(odd.cert))).toEqual({ ok: true, identity: { method: 'mtls', username: 'spiffe://example.org/workload/x' } });
    expect(await k8s(req(odd.cert))).toMatchObject({ ok: false, status: 403 });
    const bad = await pki.issueClient('bad-cn', '/O=acme/CN=system:serviceaccount:Team_A:x:y');
    expect(await standalone(req(bad.cert))).toEqual({ ok: true, identity: { method: 'mtls', username: 'system:serviceaccount:Team_A:x:y' } });
    expect(await k8s(req(bad.cert))).toMatchObject({ ok: false, status: 403 });
  });

  it('names a certificate without CN by its whole subject', async () => {
    const c = await pki.issueClient('no-cn', '/O=acme/OU=edge');
    expect(identityOf(new X509Certificate(c.cert))).toEqual({ identity: { method: 'mtls', username: 'O=acme, OU=edge' } });
  });
});
