/**
 * TLS for the OpAMP and admin endpoints: the PEM material, and the secure-context options both
 * servers are built and reloaded with.
 */
import { createSecureContext, type SecureContextOptions } from 'node:tls';

/** PEM strings: the serving certificate (chain), its key, and the CA client certificates must be signed by (mTLS). */
export interface TlsMaterial {
  cert: string;
  key: string;
  /** When set, clients are asked for a certificate and it is verified against this CA (the verdict is left to the authenticate hook). */
  clientCa?: string | undefined;
}

export const MIN_TLS_VERSION = 'TLSv1.2';

/**
 * The secure-context options for `m`, checked by building a context once: a PEM that does not
 * parse, or a key that does not belong to the certificate, throws an Error saying so.
 */
export function secureContextOptions(m: TlsMaterial): SecureContextOptions {
  const opts: SecureContextOptions = { cert: m.cert, key: m.key, minVersion: MIN_TLS_VERSION, ...(m.clientCa ? { ca: m.clientCa } : {}) };
  try {
    createSecureContext(opts);
  } catch (err) {
    throw new Error(`invalid TLS material (certificate, key${m.clientCa ? ' or client CA' : ''}): ${(err as Error).message}`, { cause: err });
  }
  return opts;
}
