import { describe, expect, it } from 'vitest';
import { selectorMatches } from '../../../src/render/select.js';

const labels = { role: 'edge', 'deployment.environment': 'staging', 'host.name': 'h1' };

describe('selectorMatches', () => {
  it('matches everything with an empty selector', () => {
    expect(selectorMatches({}, labels)).toBe(true);
    expect(selectorMatches({}, {})).toBe(true);
  });

  it('requires every matchLabels pair', () => {
    expect(selectorMatches({ matchLabels: { role: 'edge' } }, labels)).toBe(true);
    expect(selectorMatches({ matchLabels: { role: 'edge', 'host.name': 'h2' } }, labels)).toBe(false);
    expect(selectorMatches({ matchLabels: { missing: 'x' } }, labels)).toBe(false);
  });

  it('implements In, NotIn, Exists and DoesNotExist with Kubernetes semantics', () => {
    const m = (operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', key: string, values?: string[]) =>
      selectorMatches({ matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] }, labels);
    expect(m('In', 'role', ['edge', 'gateway'])).toBe(true);
    expect(m('In', 'role', ['gateway'])).toBe(false);
    expect(m('In', 'absent', ['x'])).toBe(false);
    expect(m('NotIn', 'role', ['gateway'])).toBe(true);
    expect(m('NotIn', 'role', ['edge'])).toBe(false);
    // Kubernetes: NotIn matches when the key is absent.
    expect(m('NotIn', 'absent', ['x'])).toBe(true);
    expect(m('Exists', 'role')).toBe(true);
    expect(m('Exists', 'absent')).toBe(false);
    expect(m('DoesNotExist', 'absent')).toBe(true);
    expect(m('DoesNotExist', 'role')).toBe(false);
  });

  it('ANDs matchLabels and every expression', () => {
    const sel = {
      matchLabels: { role: 'edge' },
      matchExpressions: [
        { key: 'deployment.environment', operator: 'In' as const, values: ['production'] },
      ],
    };
    expect(selectorMatches(sel, labels)).toBe(false);
    expect(selectorMatches(sel, { ...labels, 'deployment.environment': 'production' })).toBe(true);
  });

  it('does not match a label inherited from Object.prototype', () => {
    expect(selectorMatches({ matchExpressions: [{ key: 'constructor', operator: 'Exists' }] }, {})).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: 'toString', operator: 'DoesNotExist' }] }, {})).toBe(true);
  });
});
