/**
 * Hostile (and merely unusual) YAML manifests for the manifest-folder tests.
 */

/** Billion laughs: each level is ten aliases of the one before. */
export function aliasBomb(levels = 9): string {
  const lines = ['a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
  for (let i = 1; i <= levels; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
  return `apiVersion: fleetbridge.dev/v1alpha1\nkind: Collector\nmetadata: { name: bomb }\nspec:\n  selector: {}\n  config:\n${lines.map((l) => `    ${l}`).join('\n')}\n`;
}

/** A legitimate Collector that uses one anchor 101 times. */
export function manyAliases(name = 'anchors', uses = 101): string {
  const procs = Array.from({ length: uses }, (_, i) => `      attributes/p${i}: *attrs`).join('\n');
  return `apiVersion: fleetbridge.dev/v1alpha1\nkind: Collector\nmetadata: { name: ${name} }\nspec:\n  selector: { matchLabels: { role: ${name} } }\n  config:\n    x-common: &attrs { actions: [{ key: team, value: a, action: upsert }] }\n    processors:\n${procs}\n    exporters: { debug: {} }\n`;
}

