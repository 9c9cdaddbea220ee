/**
 * The layers of src/ (docs/architecture.md). A folder may import its own files and folders of a
 * lower rank only; imports between folders of the same rank, upward imports and cycles fail
 * `npm test` (test/unit/architecture.test.ts).
 */
const RANKS = {
  schema: 0,
  telemetry: 0,
  lib: 0,
  opamp: 1,
  otlp: 2,
  render: 3,
  fleet: 4,
  api: 5,
  controller: 5,
  kube: 6,
  standalone: 6,
  bridge: 7,
};

const layerRules = Object.entries(RANKS).map(([folder, rank]) => {
  const notBelow = Object.entries(RANKS)
    .filter(([other, r]) => other !== folder && r >= rank)
    .map(([other]) => other);
  return {
    name: `layer-${folder}`,
    comment: `src/${folder} may import only folders below it: ${Object.entries(RANKS).filter(([, r]) => r < rank).map(([f]) => f).join(', ') || 'none'}`,
    severity: 'error',
    from: { path: `^src/${folder}/` },
    to: { path: notBelow.length > 0 ? `^src/(${notBelow.join('|')})/|^src/main\\.ts$` : '^src/main\\.ts$' },
  };
});

module.exports = {

  forbidden: [
    ...layerRules,
    { name: 'no-circular', severity: 'error', comment: 'Modules must not import each other in a cycle.', from: { path: '^src/' }, to: { circular: true } },
    {
      name: 'src-not-from-tests',
      severity: 'error',
      comment: 'src/, bench/, tools/ and scripts/ never import test code.',
      from: { path: '^(src|bench|tools|scripts)/' },
      to: { path: '^test/' },
    },
    { name: 'src-folder-has-a-layer', severity: 'error', comment: 'Every folder of src/ has a rank in RANKS.', from: { path: '^src/' }, to: { path: `^src/`, pathNot: `^src/(${Object.keys(RANKS).join('|')})/|^src/main\\.ts$` } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)generated/|node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
