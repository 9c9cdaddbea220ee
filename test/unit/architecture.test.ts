/**
 * The layers of src/ (.dependency-cruiser.cjs, docs/architecture.md): no upward import, no import
 * between folders of the same rank, no cycle, no folder without a rank, no test code in src/.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const depcruise = join(root, 'node_modules/.bin/depcruise');

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

async function violations(cwd: string, paths: string[]): Promise<Violation[]> {
  const r = await promisify(execFile)(depcruise, [...paths, '--config', join(root, '.dependency-cruiser.cjs'), '--output-type', 'json'], { cwd, maxBuffer: 64 * 1024 * 1024 }).catch((err: { stdout?: string; stderr?: string }) => {
    // depcruise exits non-zero when it finds violations; its report is still on stdout.
    if (err.stdout) return { stdout: err.stdout };
    throw new Error(`depcruise failed: ${err.stderr ?? String(err)}`);
  });
  return (JSON.parse(r.stdout) as { summary: { violations: Violation[] } }).summary.violations;
}

const shown = (v: Violation[]) => v.map((x) => `${x.rule.name}: ${x.from} → ${x.to}`).join('\n');

describe('layers', () => {
  it('src/, bench/, scripts/ and tools/ keep the layering', async () => {
    const found = await violations(root, ['src', 'bench', 'scripts', 'tools']);
    expect(found, shown(found)).toEqual([]);
  }, 120_000);

  it('the rules catch an upward import, a same-rank import, a cycle and a folder without a rank', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fb-layers-'));
    try {
      await copyFile(join(root, 'tsconfig.json'), join(dir, 'tsconfig.json'));
      const files: Record<string, string> = {
        'src/fleet/fleet.ts': 'export const fleet = 1;\n',
        'src/opamp/server.ts': "import { fleet } from '../fleet/fleet.js';\nexport const s = fleet;\n",
        'src/kube/a.ts': "import { b } from '../standalone/b.js';\nexport const a = b;\n",
        'src/standalone/b.ts': 'export const b = 1;\n',
        'src/render/c.ts': "import { d } from './d.js';\nexport const c = () => d;\n",
        'src/render/d.ts': "import { c } from './c.js';\nexport const d = () => c;\n",
        'src/elsewhere/e.ts': "import { fleet } from '../fleet/fleet.js';\nexport const e = fleet;\n",
        'src/bridge/f.ts': "import { e } from '../elsewhere/e.js';\nexport const f = e;\n",
      };
      for (const [path, text] of Object.entries(files)) {
        await mkdir(join(dir, path, '..'), { recursive: true });
        await writeFile(join(dir, path), text);
      }
      const found = (await violations(dir, ['src'])).map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
      expect(found).toEqual(
        expect.arrayContaining([
          'layer-opamp: src/opamp/server.ts → src/fleet/fleet.ts',
          'layer-kube: src/kube/a.ts → src/standalone/b.ts',
          'no-circular: src/render/c.ts → src/render/d.ts',
          'src-folder-has-a-layer: src/bridge/f.ts → src/elsewhere/e.ts',
        ]),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
