import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { podIdentity, type PodLookup } from '../../../src/kube/pod-identity.js';
import type { AgentRecord } from '../../../src/fleet/agent.js';

const pods: V1Pod[] = [
  { metadata: { namespace: 'team-a', name: 'web-1', uid: 'u-web-1', labels: { app: 'web', tier: 'front' } }, spec: { serviceAccountName: 'collector', containers: [] } },
  { metadata: { namespace: 'team-a', name: 'other-1', uid: 'u-other-1', labels: { app: 'other' } }, spec: { containers: [] } },
  { metadata: { namespace: 'team-b', name: 'db-1', uid: 'u-db-1', labels: { app: 'db' } } },
];
const lookup: PodLookup = {
  byUid: (u) => pods.find((p) => p.metadata?.uid === u),
  byName: (ns, n) => pods.find((p) => p.metadata?.namespace === ns && p.metadata?.name === n),
};
const resolve = podIdentity(lookup, (ns) => ns === 'team-a');
const agent = (attributes: Record<string, string>) => ({ description: { attributes }, identity: { verified: null } }) as unknown as AgentRecord;

describe('podIdentity', () => {
  it('binds by pod uid and takes labels from the pod, not from the agent', () => {
    expect(resolve(agent({ 'k8s.pod.uid': 'u-web-1', app: 'forged' }))).toEqual({ ok: true, namespace: 'team-a', labels: { app: 'web', tier: 'front' }, pod: 'team-a/web-1' });
  });

  it('binds by pod name and namespace', () => {
    expect(resolve(agent({ 'k8s.pod.name': 'web-1', 'k8s.namespace.name': 'team-a' }))).toMatchObject({ ok: true, pod: 'team-a/web-1' });
  });

  it('refuses a pod that does not exist', () => {
    expect(resolve(agent({ 'k8s.pod.name': 'ghost', 'k8s.namespace.name': 'team-a' }))).toEqual({ ok: false, error: 'the agent claims pod team-a/ghost, which does not exist' });
  });

  it('refuses a pod in a namespace the bridge does not serve, by name or by uid', () => {
    expect(resolve(agent({ 'k8s.pod.name': 'db-1', 'k8s.namespace.name': 'team-b' }))).toEqual({ ok: false, error: 'the agent claims a pod in namespace team-b, which this bridge does not serve' });
    expect(resolve(agent({ 'k8s.pod.uid': 'u-db-1' }))).toEqual({ ok: false, error: "the agent's pod is in namespace team-b, which this bridge does not serve" });
  });

  it('refuses a uid that belongs to another pod than the one named', () => {
    expect(resolve(agent({ 'k8s.pod.uid': 'u-web-1', 'k8s.pod.name': 'web-2', 'k8s.namespace.name': 'team-a' }))).toEqual({ ok: false, error: 'the agent claims pod team-a/web-2 but uid u-web-1 belongs to pod team-a/web-1' });
  });

  it('binds by the verified token, and refuses claims that disagree with it', () => {
    const verified = { method: 'serviceAccountToken', namespace: 'team-a', podName: 'web-1', podUid: 'u-web-1', username: 'system:serviceaccount:team-a:agent' };
    const withToken = (attributes: Record<string, string>) => ({ description: { attributes }, identity: { verified } }) as unknown as AgentRecord;
    expect(resolve(withToken({}))).toMatchObject({ ok: true, pod: 'team-a/web-1', labels: { app: 'web', tier: 'front' } });
    expect(resolve(withToken({ 'k8s.pod.uid': 'u-web-1' }))).toMatchObject({ ok: true });
    expect(resolve(withToken({ 'k8s.pod.name': 'db-1', 'k8s.namespace.name': 'team-b' }))).toEqual({ ok: false, error: 'the agent claims pod team-b/db-1 but its token is bound to pod team-a/web-1' });
    expect(resolve({ description: { attributes: {} }, identity: { verified: { ...verified, namespace: 'team-b', podName: 'db-1', podUid: 'u-db-1' } } } as unknown as AgentRecord)).toEqual({ ok: false, error: "the agent's token is bound to a pod in namespace team-b, which this bridge does not serve" });
  });

  it('refuses an agent that names no pod', () => {
    expect(resolve(agent({ 'service.name': 'x' })).ok).toBe(false);
  });

  it('binds a client certificate to the claimed pod only within its namespace and ServiceAccount', () => {
    const cert = { method: 'mtls', namespace: 'team-a', serviceAccount: 'collector', username: 'spiffe://cluster.local/ns/team-a/sa/collector' };
    const withCert = (attributes: Record<string, string>, verified: object = cert) => ({ description: { attributes }, identity: { verified } }) as unknown as AgentRecord;
    expect(resolve(withCert({ 'k8s.pod.name': 'web-1', 'k8s.namespace.name': 'team-a' }))).toMatchObject({ ok: true, pod: 'team-a/web-1' });
    expect(resolve(withCert({ 'k8s.pod.uid': 'u-other-1' }))).toEqual({ ok: false, error: 'the agent claims pod team-a/other-1 (ServiceAccount default) but its certificate is for team-a/collector' });
    expect(resolve(withCert({ 'k8s.pod.uid': 'u-db-1' }))).toEqual({ ok: false, error: 'the agent claims pod team-b/db-1 (ServiceAccount default) but its certificate is for team-a/collector' });
    expect(resolve(withCert({}))).toMatchObject({ ok: false, error: expect.stringContaining('cannot be bound to a pod') });
    expect(resolve(withCert({ 'k8s.pod.uid': 'u-web-1' }, { method: 'mtls', username: 'CN=plain' }))).toEqual({ ok: false, error: "the agent's certificate (CN=plain) names no namespace and ServiceAccount" });
  });

  it('binds a bearer-token agent by its claims (a shared token identifies no pod)', () => {
    const verified = { method: 'bearerToken', username: 'bearer-token:token', credential: { key: 'token', current: true } };
    expect(resolve({ description: { attributes: { 'k8s.pod.uid': 'u-web-1' } }, identity: { verified } } as unknown as AgentRecord)).toMatchObject({ ok: true, pod: 'team-a/web-1' });
  });
});
