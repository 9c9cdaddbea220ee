/**
 * vitest globalSetup: one control plane for the whole run, started lazily.
 *
 * Enable with `globalSetup: ['test/harness/kube/global-setup.ts']` in vitest.config.ts. It starts
 * nothing up front: it listens on 127.0.0.1 and hands its URL to the workers through `provide`;
 * the first `getSharedControlPlane()` in any worker asks it, and only then does the main process
 * build (if needed) and start etcd + kube-apiserver. Every later request gets the same connection
 * details. The teardown stops it. A run that touches no Kubernetes test pays nothing.
 *
 * Why lazy instead of starting in setup(): globalSetup runs for every `vitest run`, even one that
 * runs a single unit test, and a cold binary build takes minutes.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestProject } from 'vitest/node';
import { connectionOf, startControlPlane, type ControlPlane } from './control-plane.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let cp: Promise<ControlPlane> | undefined;
  const path = `/${randomBytes(16).toString('hex')}/control-plane`;
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== path) {
      res.writeHead(404).end();
      return;
    }
    cp ??= startControlPlane();
    cp.then(
      (c) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(connectionOf(c))),
      (err: unknown) => {
        cp = undefined; // a later request retries
        res.writeHead(500, { 'content-type': 'text/plain' }).end(err instanceof Error ? (err.stack ?? err.message) : String(err));
      },
    );
  });
  server.requestTimeout = 0; // a response may wait for a cold build
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  server.unref();
  const { port } = server.address() as AddressInfo;
  project.provide('fleetbridgeKubeCoordinator', `http://127.0.0.1:${port}${path}`);

  return async () => {
    server.close();
    const started = await cp?.catch(() => undefined);
    await started?.stop();
  };
}
