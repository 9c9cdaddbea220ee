import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { MANIFEST_ERROR_CODES, OPAMP_ERROR_CODES } from '../../src/opamp/errors.js';

describe('error codes', () => {
  it('are all documented in docs/errors.md', () => {
    const doc = readFileSync('docs/errors.md', 'utf8');
    for (const code of [...Object.keys(OPAMP_ERROR_CODES), ...Object.keys(MANIFEST_ERROR_CODES)]) {
      expect(doc, `${code} is missing from docs/errors.md`).toContain('`' + code + '`');
    }
  });
});
