/**
 * deploy/ — plain manifests for `kubectl apply -k deploy/` — rendered from the Helm chart with its
 * default values, so the two never disagree. Used by `npm run gen:deploy` (scripts/gen-deploy.mjs)
 * and by test/integration/helm-chart.test.ts, which regenerates and compares.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export const DEPLOY_NAMESPACE = 'fleetbridge-system';
const HEADER = '# Generated from charts/fleetbridge (default values) by `npm run gen:deploy` — do not edit.\n';

/** File name (in deploy/) → text. `helm`: path to a helm v3 binary. */
export async function renderDeploy(helm) {
  const { stdout } = await promisify(execFile)(helm, ['template', 'fleetbridge', 'charts/fleetbridge', '--namespace', DEPLOY_NAMESPACE, '--include-crds'], {
    timeout: 120_000,
    maxBuffer: 64 << 20,
  });
  return new Map([
    ['namespace.yaml', `${HEADER}apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${DEPLOY_NAMESPACE}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n`],
    ['fleetbridge.yaml', HEADER + stdout.replace(/^# Source: .*\n/gm, '')],
    ['kustomization.yaml', `${HEADER}apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n  - fleetbridge.yaml\n`],
  ]);
}
