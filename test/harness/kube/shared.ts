/**
 * One control plane shared by the Kubernetes integration tests.
 *
 * - With `globalSetup: ['test/harness/kube/global-setup.ts']` in vitest.config.ts: one control plane
 *   for the whole run, started lazily by the main vitest process on the first request (runs that
 *   need no Kubernetes start nothing) and stopped when the run ends.
 * - Without it: one per test worker process, started on first use and killed when that process
 *   exits (exit hook + watchdog, see control-plane.ts).
 *
 * Shared means shared: use `createTestNamespace()` per test, never stop or restart it. A test that
 * needs an API server outage starts its own with `startControlPlane()`.
 *
 * ```ts
 * const cp = await getSharedControlPlane();
 * const kc = new KubeConfig(); kc.loadFromString(cp.kubeconfigYaml);
 * const ns = await createTestNamespace(cp, 'my-test');
 * ```
 */
import { request } from 'node:http';
import { Agent } from 'undici';
import { inject } from 'vitest';
import { startControlPlane, type ControlPlane, type KubeConnection } from './control-plane.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by test/harness/kube/global-setup.ts: POST here to get the run's control plane. */
    fleetbridgeKubeCoordinator?: string;
  }
}

export interface SharedControlPlane extends KubeConnection {
  /** An undici Agent that trusts `caCert`, for fetch's `dispatcher` option. */
  dispatcher: Agent;
  /** 'run': one for the whole vitest run (globalSetup); 'process': one for this worker process. */
  scope: 'run' | 'process';
}

const KEY = Symbol.for('fleetbridge.test.sharedControlPlane');
type Holder = { [KEY]?: Promise<SharedControlPlane> };

/**
 * The shared control plane (see the module comment). May build the binaries first: call it from a
 * `beforeAll` with a generous timeout.
 */
export function getSharedControlPlane(): Promise<SharedControlPlane> {
  const g = globalThis as Holder;
  g[KEY] ??= resolveShared().catch((err: unknown) => {
    delete g[KEY];
    throw err;
  });
  return g[KEY];
}

async function resolveShared(): Promise<SharedControlPlane> {
  let coordinator: string | undefined;
  try {
    coordinator = inject('fleetbridgeKubeCoordinator');
  } catch {
    coordinator = undefined; // not inside a vitest worker
  }
  if (coordinator) {
    const conn = await postJson<KubeConnection>(coordinator);
    return { ...conn, dispatcher: new Agent({ connect: { ca: conn.caCert } }), scope: 'run' };
  }
  const cp: ControlPlane = await startControlPlane();
  return { ...pickConnection(cp), dispatcher: cp.dispatcher, scope: 'process' };
}

function pickConnection(cp: KubeConnection): KubeConnection {
  const { server, token, caCert, kubeconfigPath, kubeconfigYaml, etcdUrl } = cp;
  return { server, token, caCert, kubeconfigPath, kubeconfigYaml, etcdUrl };
}

/** POST with no client-side timeout: the first request may wait for a cold build (bounded by the caller's hook timeout). */
function postJson<T>(url: string): Promise<T> {
  return new Promise((ok, fail) => {
    const req = request(url, { method: 'POST', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) fail(new Error(`the shared control plane could not be started (${res.statusCode}):\n${text}`));
        else ok(JSON.parse(text) as T);
      });
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end();
  });
}
