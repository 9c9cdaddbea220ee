import type { LabelSelector } from '../schema/v1alpha1/index.js';

/**
 * Kubernetes label-selector semantics (metav1.LabelSelector): every matchLabels pair and every
 * requirement must hold; an empty selector matches everything. NotIn and DoesNotExist match when
 * the key is absent, as in Kubernetes.
 */
export function selectorMatches(sel: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const req of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, req.key);
    const value = has ? labels[req.key] : undefined;
    switch (req.operator) {
      case 'In':
        if (!has || !req.values!.includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && req.values!.includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}
