/** Drift is judged on configs read as the collector reads them (render/yaml.ts). */
import { describe, expect, it } from 'vitest';
import { configDifferences, parseConfigBody } from '../../../src/fleet/drift.js';

// What a collector reports: yaml.v3's output, merged, defaults filled in, strings quoted where needed.
const EFFECTIVE = [
  'processors:',
  '    batch/a: {send_batch_size: 511, timeout: 200ms}',
  '    batch/b: {send_batch_size: 511, timeout: 1s}',
  '    attributes: {actions: [{action: insert, key: k, value: "yes"}, {action: insert, key: o, value: "0777"}]}',
  'receivers: {filelog: {start_at: 2024-01-02T00:00:00Z}}',
  '',
].join('\n');

describe('drift with merge keys and Go scalar readings', () => {
  it('a desired config written with anchors and merge keys is not drift against the expanded effective config', () => {
    const desired = parseConfigBody(
      [
        'processors:',
        '  batch/a: &b {send_batch_size: 0777, timeout: 200ms}',
        '  batch/b: {<<: *b, timeout: 1s}',
        '  attributes: {actions: [{action: insert, key: k, value: "yes"}, {action: insert, key: o, value: "0777"}]}',
        'receivers: {filelog: {start_at: 2024-01-01T19:00:00-05:00}}',
      ].join('\n'),
    );
    expect(configDifferences(desired, parseConfigBody(EFFECTIVE))).toEqual([]);
  });

  it('a "<<" key the author quoted is an ordinary key, and missing from the effective config is drift', () => {
    const desired = parseConfigBody('processors:\n  batch/b:\n    "<<": {send_batch_size: 1}\n');
    expect(configDifferences(desired, parseConfigBody(EFFECTIVE))).toEqual(['processors.batch/b.<<: missing']);
  });

  it('values Go reads differently are drift: plain 0777 is 511, not "0777"; plain yes is the string "yes"', () => {
    expect(configDifferences(parseConfigBody('a: 0777\nb: yes\nc: 1_000'), parseConfigBody('a: 511\nb: "yes"\nc: 1000'))).toEqual([]);
    expect(configDifferences(parseConfigBody('a: 0777'), parseConfigBody('a: 777'))).toEqual(['a: expected 511, found 777']);
  });

  it('does not judge a body Go would reject', () => {
    expect(parseConfigBody('b: &b [1]\nm:\n  <<: *b\n')).toBeNull();
  });
});
