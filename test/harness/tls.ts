/**
 * Test certificates, made with the `openssl` CLI (keys from Node, as in kube/control-plane.ts):
 * a CA, two serving certificates for localhost/127.0.0.1 (the second for reload tests), client
 * certificates naming identities the mTLS authenticator reads, and one from another CA.
 *
 * ```ts
 * const pki = await makeTestPki();   // skip first with opensslMissingReason()
 * new OpampServer({ ..., tls: { ...pki.server, clientCa: pki.ca.cert } });
 * await pki.remove();
 * ```
 */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** A certificate and its key, as PEM and as files (for the Go agent's flags). */
export interface CertPair {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

export interface TestPki {
  dir: string;
  /** The CA that signs the servers and the trusted clients. */
  ca: CertPair;
  /** Another CA, which signs `clients.otherCa` only. */
  otherCa: CertPair;
  /** CN localhost, SANs DNS:localhost, IP:127.0.0.1. */
  server: CertPair;
  /** The same names, another key and serial: the certificate a reload switches to. */
  server2: CertPair;
  clients: {
    /** URI SAN spiffe://cluster.local/ns/team-a/sa/collector (CN spiffe-client). */
    spiffe: CertPair;
    /** CN system:serviceaccount:team-b:otel. */
    serviceAccountCn: CertPair;
    /** CN plain-name: no namespace. */
    plain: CertPair;
    /** CN system:serviceaccount:team-a:collector, but signed by `otherCa`. */
    otherCa: CertPair;
  };
  /** Another client certificate from `ca`, e.g. with several or odd SANs (`subjectAltName` is openssl syntax: "URI:spiffe://a/b, DNS:x"). */
  issueClient(name: string, subject: string, subjectAltName?: string): Promise<CertPair>;
  remove(): Promise<void>;
}

/** Why certificates cannot be made here (no `openssl` on PATH), or null. Synchronous, for `describe.skipIf`. */
export function opensslMissingReason(): string | null {
  const found = (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, 'openssl')));
  return found ? null : '`openssl` was not found on PATH; the test certificates cannot be made';
}

const CNF = [
  '[req]',
  'distinguished_name = dn',
  'prompt = no',
  '[dn]',
  'CN = unused',
  '[v3_ca]',
  'basicConstraints = critical,CA:TRUE',
  'keyUsage = critical,keyCertSign,cRLSign,digitalSignature',
  'subjectKeyIdentifier = hash',
  '[v3_srv]',
  'basicConstraints = critical,CA:FALSE',
  'keyUsage = critical,digitalSignature,keyEncipherment',
  'extendedKeyUsage = serverAuth',
  'subjectAltName = DNS:localhost,IP:127.0.0.1',
  'authorityKeyIdentifier = keyid',
  '[v3_client]',
  'basicConstraints = critical,CA:FALSE',
  'keyUsage = critical,digitalSignature',
  'extendedKeyUsage = clientAuth',
  'authorityKeyIdentifier = keyid',
  '[v3_client_spiffe]',
  'basicConstraints = critical,CA:FALSE',
  'keyUsage = critical,digitalSignature',
  'extendedKeyUsage = clientAuth',
  'subjectAltName = URI:spiffe://cluster.local/ns/team-a/sa/collector',
  'authorityKeyIdentifier = keyid',
  '',
].join('\n');

/** Makes every certificate in a new temp dir (the caller removes it with `remove()`). */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetbridge-pki-'));
  try {
    await writeOpensslConfig(dir);
    const ca = await selfSignedCa(dir, 'ca', '/O=fleetbridge/CN=fleetbridge-test-ca');
    const otherCa = await selfSignedCa(dir, 'other-ca', '/O=elsewhere/CN=other-test-ca');
    return {
      dir,
      ca,
      otherCa,
      server: await issue(dir, 'server', '/CN=localhost', 'v3_srv', 'ca'),
      server2: await issue(dir, 'server2', '/CN=localhost', 'v3_srv', 'ca'),
      clients: {
        spiffe: await issue(dir, 'client-spiffe', '/CN=spiffe-client', 'v3_client_spiffe', 'ca'),
        serviceAccountCn: await issue(dir, 'client-sa', '/O=system:serviceaccounts/CN=system:serviceaccount:team-b:otel', 'v3_client', 'ca'),
        plain: await issue(dir, 'client-plain', '/CN=plain-name', 'v3_client', 'ca'),
        otherCa: await issue(dir, 'client-other-ca', '/CN=system:serviceaccount:team-a:collector', 'v3_client', 'other-ca'),
      },
      async issueClient(name, subject, subjectAltName) {
        const section = `client_${name.replace(/[^A-Za-z0-9]/g, '_')}`;
        const ext = ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth', 'authorityKeyIdentifier = keyid'];
        if (subjectAltName) ext.push(`subjectAltName = ${subjectAltName}`);
        await appendFile(join(dir, 'openssl.cnf'), [`[${section}]`, ...ext, ''].join('\n'));
        return issue(dir, name, subject, section, 'ca');
      },
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The openssl.cnf the helpers below use (sections v3_ca, v3_srv, v3_client, v3_client_spiffe). */
export async function writeOpensslConfig(dir: string): Promise<void> {
  await writeFile(join(dir, 'openssl.cnf'), CNF);
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.error?.message ?? ''}${r.stderr}`);
}

/** A P-256 key pair as PEM (PKCS#8, SPKI). */
export function ecKeyPem(): { privateKey: string; publicKey: string } {
  return generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
}

async function writeKey(dir: string, name: string): Promise<string> {
  const { privateKey } = ecKeyPem();
  await writeFile(join(dir, `${name}.key`), privateKey, { mode: 0o600 });
  return privateKey;
}

async function pair(dir: string, name: string, key: string): Promise<CertPair> {
  const certFile = join(dir, `${name}.crt`);
  return { cert: await readFile(certFile, 'utf8'), key, certFile, keyFile: join(dir, `${name}.key`) };
}

/** `<dir>/<name>.crt|.key`: a self-signed CA (needs writeOpensslConfig(dir) first). */
export async function selfSignedCa(dir: string, name: string, subject: string, days = 2): Promise<CertPair> {
  const key = await writeKey(dir, name);
  openssl(['req', '-x509', '-new', '-key', `${name}.key`, '-out', `${name}.crt`, '-days', String(days), '-subj', subject, '-config', 'openssl.cnf', '-extensions', 'v3_ca'], dir);
  return pair(dir, name, key);
}

/** `<dir>/<name>.crt|.key`: a certificate with the openssl.cnf section `extensions`, signed by the CA `<dir>/<ca>.crt`. */
export async function issue(dir: string, name: string, subject: string, extensions: string, ca: string, days = 2): Promise<CertPair> {
  const key = await writeKey(dir, name);
  openssl(['req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', subject, '-config', 'openssl.cnf'], dir);
  openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
      '-days', String(days), '-extfile', 'openssl.cnf', '-extensions', extensions, '-out', `${name}.crt`],
    dir,
  );
  return pair(dir, name, key);
}
