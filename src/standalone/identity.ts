/**
 * Standalone mode's identity: an agent's attributes are its labels, and its namespace is the one
 * its credential grants. A bearer token grants the namespace of the Secret it is declared in; a
 * client certificate the namespace it names (SPIFFE ID or system:serviceaccount CN), else the
 * bridge's namespace. An agent whose `k8s.namespace.name` claims another namespace is refused: it
 * gets no config, no Secret value and no package, is counted as unbound and shown with the reason.
 * Without authentication (auth.mode none) the claimed attribute decides: namespaces are then no
 * boundary, which the bridge says at start.
 */
import type { IdentityResolver } from '../fleet/agent.js';

export const NAMESPACE_ATTRIBUTE = 'k8s.namespace.name';

export function standaloneIdentity(bridgeNamespace: string): IdentityResolver {
  return (agent) => {
    const claimed = agent.description.attributes[NAMESPACE_ATTRIBUTE];
    const v = agent.identity.verified;
    if (!v) return { ok: true, namespace: claimed ?? bridgeNamespace, labels: agent.description.attributes };
    const granted = v.namespace ?? bridgeNamespace;
    if (claimed !== undefined && claimed !== granted) {
      const by =
        v.method === 'bearerToken'
          ? `its bearer token (${v.credential?.key ?? 'token'}) is declared in namespace ${granted}`
          : v.method === 'mtls'
            ? v.namespace !== undefined
              ? `its certificate is for namespace ${granted}`
              : `its certificate names no namespace, which binds it to the bridge's namespace ${granted}`
            : `its credential is for namespace ${granted}`;
      return { ok: false, error: `the agent claims namespace ${claimed} but ${by}` };
    }
    return { ok: true, namespace: granted, labels: agent.description.attributes };
  };
}
