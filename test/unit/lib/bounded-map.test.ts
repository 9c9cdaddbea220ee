import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../../src/lib/bounded-map.js';

describe('BoundedMap', () => {
  it('drops every entry when a new key would exceed the entries bound (evict all)', () => {
    const m = new BoundedMap<string, number>({ maxEntries: 2 });
    m.set('a', 1).set('b', 2);
    m.set('a', 3); // replacing a value never evicts
    expect([...m.keys()]).toEqual(['a', 'b']);
    m.set('c', 4);
    expect([...m.keys()]).toEqual(['c']);
  });

  it('drops the oldest entries until a new one fits (evict oldest)', () => {
    const m = new BoundedMap<string, number>({ maxEntries: 2, evict: 'oldest' });
    m.set('a', 1).set('b', 2).set('c', 3);
    expect([...m.keys()]).toEqual(['b', 'c']);
  });

  it('bounds the total weight too', () => {
    const m = new BoundedMap<string, string>({ maxEntries: 100, maxWeight: 10, weigh: (k) => k.length });
    m.set('aaaa', 'aaaa').set('bbbb', 'bbbb');
    m.delete('aaaa');
    m.set('cccccc', 'cccccc'); // 4 + 6 fits
    expect(m.size).toBe(2);
    m.set('d', 'd'); // 11 > 10: cleared first
    expect([...m.keys()]).toEqual(['d']);
  });
});
