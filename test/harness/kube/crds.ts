/**
 * Installs (or updates) our CRDs on a control plane and waits until they are Established. Raw
 * JSON, as kubectl sends it: client-node's typed serializer would drop the x-kubernetes-* keys.
 * Works on the shared control plane, where another file may have installed them already (409).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ApiextensionsV1Api, KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { vi } from 'vitest';
import { kubeRequest } from './control-plane.js';
import type { KubeConnection } from './control-plane.js';

export async function installCrds(cp: KubeConnection, dir = 'crds'): Promise<void> {
  const crds = readdirSync(dir).filter((f) => f.endsWith('.yaml')).map((f) => parse(readFileSync(join(dir, f), 'utf8')) as V1CustomResourceDefinition);
  for (const crd of crds) {
    const name = crd.metadata!.name!;
    // Test files run in parallel on the shared control plane: another may create or update the
    // same CRD between our GET and PUT (409 Conflict on the PUT); try again with the new version.
    for (let attempt = 1; ; attempt++) {
      const r = await kubeRequest(cp, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
      if (r.status === 201) break;
      if (r.status !== 409) throw new Error(`creating CRD ${name}: HTTP ${r.status} ${r.text}`);
      const cur = await kubeRequest<V1CustomResourceDefinition>(cp, 'GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      const put = await kubeRequest(cp, 'PUT', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`, { ...crd, metadata: { ...crd.metadata, resourceVersion: cur.body.metadata!.resourceVersion } });
      if (put.status === 200) break;
      if (put.status !== 409 || attempt >= 5) throw new Error(`updating CRD ${name}: HTTP ${put.status} ${put.text}`);
    }
  }
  const kc = new KubeConfig();
  kc.loadFromString(cp.kubeconfigYaml);
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  await vi.waitFor(
    async () => {
      for (const crd of crds) {
        const c = await ext.readCustomResourceDefinition({ name: crd.metadata!.name! });
        if (c.status?.conditions?.find((x) => x.type === 'Established')?.status !== 'True') throw new Error(`CRD ${crd.metadata!.name} not Established yet`);
      }
    },
    { timeout: 15_000, interval: 100 },
  );
}
