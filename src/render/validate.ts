import { isPlainObject } from './merge.js';

const COMPONENT_KINDS = ['receivers', 'processors', 'exporters', 'connectors', 'extensions'] as const;

/**
 * One problem of a collector config. `structure`: the config is malformed on its own. `reference`:
 * it names a component that is not defined — which may be fine for an overlay Collector whose
 * merge partner defines it, so references are judged on the merged config.
 */
export interface ConfigIssue {
  kind: 'structure' | 'reference';
  message: string;
}

/**
 * Checks of an OpenTelemetry Collector config that need no component knowledge: top-level
 * sections are maps, every pipeline names only defined components (connectors count as receivers
 * and exporters), every service extension is defined. Issues in the order found.
 */
export function checkCollectorConfig(cfg: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const structure = (message: string) => issues.push({ kind: 'structure', message });
  const reference = (message: string) => issues.push({ kind: 'reference', message });
  if (!isPlainObject(cfg)) {
    structure('config must be a YAML mapping');
    return issues;
  }
  for (const kind of COMPONENT_KINDS) {
    if (cfg[kind] !== undefined && cfg[kind] !== null && !isPlainObject(cfg[kind])) structure(`${kind} must be a mapping`);
  }
  const defined = (kind: (typeof COMPONENT_KINDS)[number]): Set<string> =>
    new Set(isPlainObject(cfg[kind]) ? Object.keys(cfg[kind] as object) : []);
  const receivers = defined('receivers');
  const processors = defined('processors');
  const exporters = defined('exporters');
  const connectors = defined('connectors');
  const extensions = defined('extensions');
  const service = cfg['service'];
  if (service === undefined || service === null) return issues;
  if (!isPlainObject(service)) {
    structure('service must be a mapping');
    return issues;
  }
  const exts = service['extensions'];
  if (exts !== undefined && exts !== null) {
    if (!Array.isArray(exts)) structure('service.extensions must be a list');
    else for (const e of exts) if (!extensions.has(String(e)) && String(e) !== 'opamp') reference(`service.extensions names extension "${String(e)}", which is not defined under extensions`);
  }
  const pipelines = service['pipelines'];
  if (pipelines === undefined || pipelines === null) return issues;
  if (!isPlainObject(pipelines)) {
    structure('service.pipelines must be a mapping');
    return issues;
  }
  for (const [pname, p] of Object.entries(pipelines)) {
    if (!isPlainObject(p)) {
      structure(`pipeline ${pname} must be a mapping`);
      continue;
    }
    const check = (field: string, ok: (id: string) => boolean, what: string) => {
      const list = p[field];
      if (list === undefined || list === null) return;
      if (!Array.isArray(list)) {
        structure(`pipeline ${pname}: ${field} must be a list`);
        return;
      }
      for (const id of list) if (!ok(String(id))) reference(`pipeline ${pname} names ${what} "${String(id)}", which is not defined`);
    };
    check('receivers', (id) => receivers.has(id) || connectors.has(id), 'receiver');
    check('processors', (id) => processors.has(id), 'processor');
    check('exporters', (id) => exporters.has(id) || connectors.has(id), 'exporter');
  }
  return issues;
}

/** Every problem of a config, as human-readable messages. */
export function validateCollectorConfig(cfg: unknown): string[] {
  return checkCollectorConfig(cfg).map((i) => i.message);
}
