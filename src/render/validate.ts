import { isPlainObject } from './merge.js';

const COMPONENT_KINDS = ['receivers', 'processors', 'exporters', 'connectors', 'extensions'] as const;

/**
 * Structural checks of an OpenTelemetry Collector config that need no component knowledge:
 * top-level sections are maps, every pipeline names only defined components (connectors count
 * as receivers and exporters), every service extension is defined. Returns human-readable issues.
 */
export function validateCollectorConfig(cfg: unknown): string[] {
  const issues: string[] = [];
  if (!isPlainObject(cfg)) return ['config must be a YAML mapping'];
  for (const kind of COMPONENT_KINDS) {
    if (cfg[kind] !== undefined && cfg[kind] !== null && !isPlainObject(cfg[kind])) issues.push(`${kind} must be a mapping`);
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
  if (!isPlainObject(service)) return [...issues, 'service must be a mapping'];
  const exts = service['extensions'];
  if (exts !== undefined && exts !== null) {
    if (!Array.isArray(exts)) issues.push('service.extensions must be a list');
    else for (const e of exts) if (!extensions.has(String(e)) && String(e) !== 'opamp') issues.push(`service.extensions names extension "${String(e)}", which is not defined under extensions`);
  }
  const pipelines = service['pipelines'];
  if (pipelines === undefined || pipelines === null) return issues;
  if (!isPlainObject(pipelines)) return [...issues, 'service.pipelines must be a mapping'];
  for (const [pname, p] of Object.entries(pipelines)) {
    if (!isPlainObject(p)) {
      issues.push(`pipeline ${pname} must be a mapping`);
      continue;
    }
    const check = (field: string, ok: (id: string) => boolean, what: string) => {
      const list = p[field];
      if (list === undefined || list === null) return;
      if (!Array.isArray(list)) {
        issues.push(`pipeline ${pname}: ${field} must be a list`);
        return;
      }
      for (const id of list) if (!ok(String(id))) issues.push(`pipeline ${pname} names ${what} "${String(id)}", which is not defined`);
    };
    check('receivers', (id) => receivers.has(id) || connectors.has(id), 'receiver');
    check('processors', (id) => processors.has(id), 'processor');
    check('exporters', (id) => exporters.has(id) || connectors.has(id), 'exporter');
  }
  return issues;
}
