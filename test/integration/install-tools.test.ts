/**
 * The install tools the chart and manifest tests drive: helm (tools/helm) and kubectl with its
 * built-in kustomize (tools/k8s/apiserver, the control plane's version), both built from Go modules
 * and cached in .cache/. Proves they run, report the pinned versions, and talk to the shared
 * kube-apiserver through a kubeconfig file.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureHelm, helmMissingReason, helmVersions } from '../harness/helm/binaries.js';
import { controlPlaneMissingReason, controlPlaneVersions, ensureKubectl, kubectlMissingReason } from '../harness/kube/binaries.js';
import { createTestNamespace } from '../harness/kube/control-plane.js';
import { getSharedControlPlane, type SharedControlPlane } from '../harness/kube/shared.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const exec = promisify(execFile);
const skip = skipUnlessOnCi('install-tools.test', helmMissingReason() ?? kubectlMissingReason() ?? controlPlaneMissingReason());

describe.skipIf(skip)('install tools built from Go modules: helm and kubectl (+ kustomize)', () => {
  let helm: string;
  let kubectl: string;
  let cp: SharedControlPlane;
  let dir: string;
  let kubeconfig: string;
  let env: NodeJS.ProcessEnv;

  /** Runs a tool with a time limit; its HOME-based caches and config live in the test's temp folder. */
  const tool = async (bin: string, args: string[]) => {
    const { stdout } = await exec(bin, args, { env, timeout: 60_000, maxBuffer: 16 << 20 });
    return stdout;
  };

  beforeAll(async () => {
    // Cold builds take minutes each (CI pre-builds with tools/{k8s,helm}/build.sh); cached ones are instant.
    const log = (l: string) => console.log(`[install-tools] ${l}`);
    const t0 = Date.now();
    [helm, kubectl, cp] = await Promise.all([ensureHelm({ log }), ensureKubectl({ log }), getSharedControlPlane()]);
    console.log(`[install-tools] helm, kubectl and the control plane ready after ${Date.now() - t0} ms`);
    dir = await mkdtemp(join(tmpdir(), 'fleetbridge-install-tools-'));
    kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, cp.kubeconfigYaml, { mode: 0o600 });
    env = {
      ...process.env,
      HOME: dir,
      KUBECONFIG: '',
      HELM_CACHE_HOME: join(dir, 'helm', 'cache'),
      HELM_CONFIG_HOME: join(dir, 'helm', 'config'),
      HELM_DATA_HOME: join(dir, 'helm', 'data'),
    };
  }, 40 * 60_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a second ensureHelm()/ensureKubectl() is instant and returns the same paths', async () => {
    const t0 = performance.now();
    expect(await Promise.all([ensureHelm(), ensureKubectl()])).toEqual([helm, kubectl]);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('helm version --short is the pinned helm', async () => {
    expect(helmVersions().helm).toBe('v3.22.0');
    expect((await tool(helm, ['version', '--short'])).trim()).toBe(helmVersions().helm);
  });

  it('kubectl version: the client is the control plane version, and so is the server it reaches', async () => {
    expect(controlPlaneVersions().kubernetes).toBe('v1.36.3');
    const client = JSON.parse(await tool(kubectl, ['version', '--client', '-o', 'json']));
    expect(client.clientVersion.gitVersion).toBe(controlPlaneVersions().kubernetes);
    expect(client.clientVersion).toMatchObject({ major: '1', minor: '36', gitTreeState: 'clean' });
    expect(client.kustomizeVersion).toMatch(/^v5\./);
    const both = JSON.parse(await tool(kubectl, ['--kubeconfig', kubeconfig, 'version', '-o', 'json']));
    expect(both.serverVersion.gitVersion).toBe(controlPlaneVersions().kubernetes);
  });

  it('kubectl get --raw /readyz against the shared control plane', async () => {
    expect((await tool(kubectl, ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'kube-cache'), 'get', '--raw', '/readyz'])).trim()).toBe('ok');
  });

  it('kubectl kustomize (built in) renders a kustomization', async () => {
    const k = join(dir, 'kustomize');
    await mkdir(k, { recursive: true });
    await writeFile(join(k, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  a: "1"\n');
    await writeFile(join(k, 'kustomization.yaml'), 'namespace: somewhere\nnamePrefix: x-\nresources:\n  - cm.yaml\n');
    const out = await tool(kubectl, ['kustomize', k]);
    expect(out).toContain('name: x-probe');
    expect(out).toContain('namespace: somewhere');
  });

  it('helm list against the shared control plane: succeeds, and a fresh namespace has no releases', async () => {
    // Other test files may install releases into the shared control plane meanwhile: -A only has to work.
    const all = JSON.parse(await tool(helm, ['--kubeconfig', kubeconfig, 'list', '-A', '-o', 'json']));
    expect(Array.isArray(all)).toBe(true);
    const ns = await createTestNamespace(cp, 'install-tools');
    expect(JSON.parse(await tool(helm, ['--kubeconfig', kubeconfig, 'list', '-n', ns, '-o', 'json']))).toEqual([]);
  });
});
