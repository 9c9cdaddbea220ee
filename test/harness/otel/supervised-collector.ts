/**
 * Real OpenTelemetry agents for end-to-end tests against a bridge:
 *
 *  - startSupervisedCollector(): the OpAMP Supervisor running our collector (config push works).
 *  - startCollectorWithOpampExtension(): the collector alone with the opamp extension (read-only
 *    agent: description, health, effective config; it cannot accept remote config).
 *
 * Both use the binaries from ensureOtelBinaries() (tools/otel, docs/adr/0004-otel-agents-from-go-modules.md).
 * Each runs in its own process group that dies with the test process (../process-group.ts); every
 * wait is bounded. Loopback only. Test files start these agents through this module only.
 *
 * ```ts
 * const agent = await startSupervisedCollector({ endpoint: bridge.opampWsUrl, attributes: { 'k8s.pod.name': 'p1' }, otlpPort, workDir });
 * // ... bridge pushes a config using otlpPort ...
 * process.kill(agent.collectorPid()!, 'SIGKILL'); // the supervisor restarts it after 5 s
 * await agent.stop();
 * ```
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ensureOtelBinaries } from './binaries.js';
import { childProcesses, killGroup, spawnGroup, WaitAborted, waitUntil, type GroupProcess } from './processes.js';

/**
 * Extra arguments for every collector run: no Prometheus listener for the collector's own metrics.
 * Its default (localhost:8888) would make two collectors on one host (parallel test workers, or a
 * supervised one beside an extension-only one) fail to start. Passed on the command line after the
 * supervisor's own `--config effective.yaml`, so it also covers the supervisor's bootstrap run, which
 * merges no user config. Consequence: it overrides `service.telemetry.metrics.level` of pushed configs.
 */
export const QUIET_TELEMETRY_ARGS = ['--config', 'yaml:service::telemetry::metrics::level: none'] as const;

export interface SupervisedCollectorOptions {
  /** The bridge's OpAMP URL, ws://127.0.0.1:<port>/v1/opamp (http:// selects the plain-HTTP transport). */
  endpoint: string;
  /**
   * Non-identifying attributes (e.g. k8s.pod.name, k8s.namespace.name). Passed the way an operator
   * injects Downward-API values: the supervisor config says `${env:FB_ATTR_...}` and the values are
   * environment variables of the supervisor process. Values must be strings that do not look like
   * numbers/booleans (confmap would type them).
   */
  attributes?: Record<string, string>;
  /** Identifying attributes overriding the collector's (service.name, service.namespace, ...). */
  identifyingAttributes?: Record<string, string>;
  /** UUID for `agent.instance_id`; default: the supervisor generates one (UUIDv7) and persists it. */
  instanceUid?: string;
  /** The free port the pushed config's OTLP receiver will listen on (recorded; the harness does not bind it). */
  otlpPort?: number;
  /** A folder for this agent (supervisor.yaml, storage/, supervisor.log); must exist or be creatable. */
  workDir: string;
  /** `agent.config_apply_timeout`: APPLIED/FAILED is decided this long after a config starts. Default 3000 ms. */
  configApplyTimeoutMs?: number;
  /** `agent.bootstrap_timeout` (the one-shot run that reads the collector's description). Default 20000 ms (slow CI). */
  bootstrapTimeoutMs?: number;
  /** Port for the supervisor's own health endpoint (`GET http://127.0.0.1:<port>/health`: 200 once it has a config state); default: off. */
  healthcheckPort?: number;
  /**
   * `agent.validate_config`: run `<collector> validate` before applying a pushed config. Upstream
   * default false: a broken config then makes the collector exit (FAILED "Agent exited unexpectedly
   * with exit code 1 while applying configuration", restarted every 5 s with the same config). With
   * true, FAILED carries the validator's output and the previous collector keeps running.
   */
  validateConfig?: boolean;
  /** Supervisor log level; default debug. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Bound on start-up (persistent state written, instance uid known); default 30000 ms. */
  startTimeoutMs?: number;
  /** Merged over the generated supervisor config (deeply for `agent` and `capabilities`). */
  extraConfig?: { agent?: Record<string, unknown>; capabilities?: Record<string, unknown>; [k: string]: unknown };
  /**
   * Extra environment variables of the supervisor process (its collector inherits them), e.g. the
   * Downward-API variables a sidecar gets (POD_NAMESPACE, POD_NAME, POD_UID) when `extraConfig`
   * carries a description that refers to them as `${env:POD_NAME}`.
   */
  env?: Record<string, string>;
  /**
   * A local collector config merged AFTER the pushed one: written to `<workDir>/local-override.yaml`
   * and listed last in `agent.config_files` (`$OWN_TELEMETRY_CONFIG`, `$OPAMP_EXTENSION_CONFIG`,
   * `$REMOTE_CONFIG`, then this file), so its values win over the server's. The supervisor still
   * reports APPLIED for the pushed hash; the collector's effective config differs from it (drift).
   */
  localOverride?: Record<string, unknown>;
}

export interface SupervisedCollector {
  /** The supervisor's pid (leader of the process group). */
  readonly pid: number;
  readonly instanceUid: string;
  readonly workDir: string;
  /** Supervisor storage: persistent_state.yaml, effective.yaml, last_recv_remote_config.dat. */
  readonly storageDir: string;
  readonly configPath: string;
  /** `http://127.0.0.1:<healthcheckPort>/health` when healthcheckPort was given, else null. */
  readonly healthUrl: string | null;
  /** The supervisor's stdout+stderr (its JSON-ish zap lines; with passthrough_logs, the collector's lines too). */
  logs(): string;
  /** The running collector's pid (the supervisor's child started with its effective.yaml), or undefined. */
  collectorPid(): number | undefined;
  /** Waits (bounded) for a collector child other than `notPid`. */
  waitForCollectorPid(opts?: { timeoutMs?: number; notPid?: number }): Promise<number>;
  /** `<workDir>/local-override.yaml` when `localOverride` was given, else null. */
  readonly localOverridePath: string | null;
  /** storage/effective.yaml as the supervisor last wrote it (what the collector runs), or null. */
  effectiveConfigFile(): string | null;
  readonly exited: Promise<number | null>;
  hasExited(): boolean;
  /** SIGINT (the supervisor's only graceful signal; it stops the collector), then SIGKILL of the group after timeoutMs (default 15 s). */
  stop(opts?: { timeoutMs?: number }): Promise<void>;
  /** SIGKILL of the whole process group (supervisor and collector), gone without a word; resolves once the supervisor is gone. */
  kill(): Promise<void>;
}

function envName(key: string, i: number): string {
  return `FB_ATTR_${i}_${key.replace(/[^A-Za-z0-9]+/g, '_').toUpperCase()}`;
}

function ms(n: number): string {
  return `${Math.max(1, Math.round(n))}ms`;
}

export async function startSupervisedCollector(opts: SupervisedCollectorOptions): Promise<SupervisedCollector> {
  const { collector, supervisor } = await ensureOtelBinaries();
  const workDir = opts.workDir;
  const storageDir = join(workDir, 'storage');
  await mkdir(storageDir, { recursive: true });

  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  const nonIdentifying: Record<string, string> = {};
  Object.entries(opts.attributes ?? {}).forEach(([k, v], i) => {
    const name = envName(k, i);
    env[name] = v;
    nonIdentifying[k] = `\${env:${name}}`;
  });

  const agent: Record<string, unknown> = {
    executable: collector,
    ...(opts.instanceUid ? { instance_id: opts.instanceUid } : {}),
    description: {
      ...(opts.identifyingAttributes ? { identifying_attributes: opts.identifyingAttributes } : {}),
      non_identifying_attributes: nonIdentifying,
    },
    config_apply_timeout: ms(opts.configApplyTimeoutMs ?? 3000),
    bootstrap_timeout: ms(opts.bootstrapTimeoutMs ?? 20_000),
    // The collector's opamp extension is meant to exit when the supervisor is gone (checked this
    // often); with these versions it does not (contrib#48758), so the harness kills process groups.
    orphan_detection_interval: '1s',
    // Collector output goes through the supervisor's logger (else storage/agent.log, truncated on every restart).
    passthrough_logs: true,
    validate_config: opts.validateConfig ?? false,
    args: [...QUIET_TELEMETRY_ARGS],
    ...opts.extraConfig?.agent,
  };
  let localOverridePath: string | null = null;
  if (opts.localOverride) {
    localOverridePath = join(workDir, 'local-override.yaml');
    await writeFile(localOverridePath, '# Merged after $REMOTE_CONFIG: wins over the pushed config (test/harness/otel/supervised-collector.ts)\n' + stringify(opts.localOverride));
    agent['config_files'] = ['$OWN_TELEMETRY_CONFIG', '$OPAMP_EXTENSION_CONFIG', '$REMOTE_CONFIG', localOverridePath];
  }
  const config: Record<string, unknown> = {
    server: { endpoint: opts.endpoint },
    capabilities: {
      accepts_remote_config: true,
      reports_remote_config: true,
      reports_effective_config: true,
      reports_health: true,
      reports_heartbeat: true,
      ...opts.extraConfig?.capabilities,
    },
    agent,
    storage: { directory: storageDir },
    telemetry: { logs: { level: opts.logLevel ?? 'debug' } },
    ...(opts.healthcheckPort ? { healthcheck: { endpoint: `127.0.0.1:${opts.healthcheckPort}` } } : {}),
  };
  for (const [k, v] of Object.entries(opts.extraConfig ?? {})) if (k !== 'agent' && k !== 'capabilities') config[k] = v;

  const configPath = join(workDir, 'supervisor.yaml');
  const header = [
    '# Generated by test/harness/otel/supervised-collector.ts',
    opts.otlpPort ? `# The pushed config is expected to listen for OTLP on 127.0.0.1:${opts.otlpPort}` : '',
    '',
  ].join('\n');
  await writeFile(configPath, header + stringify(config));

  const proc = spawnGroup(supervisor, ['--config', configPath], { env, cwd: workDir, logFile: join(workDir, 'supervisor.log') });
  const stateFile = join(storageDir, 'persistent_state.yaml');
  const effectiveFile = join(storageDir, 'effective.yaml');
  const describe = () => `supervisor pid ${proc.pid}${proc.hasExited() ? ' (exited)' : ''}, output tail:\n${proc.output().slice(-6000)}`;

  let instanceUid: string;
  try {
    instanceUid = await waitUntil(
      () => {
        if (proc.hasExited()) throw new WaitAborted('the supervisor exited during start-up');
        if (!existsSync(stateFile)) return undefined;
        const m = /^instance_id:\s*"?([0-9a-fA-F-]{36})"?\s*$/m.exec(readFileSync(stateFile, 'utf8'));
        return m ? m[1]!.toLowerCase() : undefined;
      },
      { timeoutMs: opts.startTimeoutMs ?? 30_000, what: `${stateFile} with the instance uid`, describe },
    );
  } catch (err) {
    await proc.stop('SIGKILL', 1000);
    throw err;
  }

  const collectorPid = (): number | undefined => {
    // Children of the supervisor: the one-shot `featuregate` run, the bootstrap run and the real one
    // all use `--config <storage>/effective.yaml`; only a long-lived one matters, so take the newest.
    const kids = childProcesses(proc.pid).filter((c) => c.argv.includes(effectiveFile) && !c.argv.includes('featuregate'));
    return kids.length > 0 ? Math.max(...kids.map((k) => k.pid)) : undefined;
  };

  return {
    pid: proc.pid,
    instanceUid,
    workDir,
    storageDir,
    configPath,
    healthUrl: opts.healthcheckPort ? `http://127.0.0.1:${opts.healthcheckPort}/health` : null,
    localOverridePath,
    logs: () => proc.output(),
    collectorPid,
    waitForCollectorPid: (w = {}) =>
      waitUntil(
        () => {
          if (proc.hasExited()) throw new WaitAborted('the supervisor exited');
          const p = collectorPid();
          return p !== undefined && p !== w.notPid ? p : undefined;
        },
        { timeoutMs: w.timeoutMs ?? 20_000, what: 'a collector child of the supervisor', describe },
      ),
    effectiveConfigFile: () => (existsSync(effectiveFile) ? readFileSync(effectiveFile, 'utf8') : null),
    exited: proc.exited,
    hasExited: () => proc.hasExited(),
    async stop(s = {}) {
      await proc.stop('SIGINT', s.timeoutMs ?? 15_000);
    },
    async kill() {
      killGroup(proc.pid, 'SIGKILL');
      await proc.exited;
    },
  };
}

export interface ExtensionCollectorOptions {
  /** The bridge's OpAMP URL, ws://… or http://… */
  endpoint: string;
  /** Default: a random UUIDv4. */
  instanceUid?: string;
  /** `agent_description.non_identifying_attributes` of the extension. */
  attributes?: Record<string, string>;
  /** A folder for this collector (collector.yaml, collector.log). */
  workDir: string;
  /**
   * The collector's own pipelines etc., merged over a default of one nop→nop logs pipeline (give
   * `receivers`/`processors`/`exporters`/`service.pipelines`). `extensions.opamp` and
   * `service.extensions` are set by the harness.
   */
  config?: Record<string, unknown>;
  /** Extension capabilities (defaults: reports_effective_config, reports_health on). */
  capabilities?: Record<string, boolean>;
  /** Headers of every request (`extensions.opamp.server.{ws,http}.headers`), e.g. Authorization. */
  headers?: Record<string, string>;
  /** Plain-HTTP transport only: `polling_interval`. Default 1 s. */
  pollingIntervalSeconds?: number;
  /** `service.telemetry.logs.level` of the collector; default: the collector's own. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

export interface ExtensionCollector {
  readonly pid: number;
  readonly instanceUid: string;
  readonly configPath: string;
  logs(): string;
  readonly exited: Promise<number | null>;
  hasExited(): boolean;
  /** SIGTERM (graceful), then SIGKILL of the group after timeoutMs (default 10 s). */
  stop(opts?: { timeoutMs?: number }): Promise<void>;
  /** SIGKILL of the process group; resolves once it is gone (at most about 5 s). */
  kill(): Promise<void>;
}

/** The collector alone with the opamp extension pointed at the bridge: a read-only OpAMP agent. */
export async function startCollectorWithOpampExtension(opts: ExtensionCollectorOptions): Promise<ExtensionCollector> {
  const { collector } = await ensureOtelBinaries();
  await mkdir(opts.workDir, { recursive: true });
  const instanceUid = opts.instanceUid ?? randomUUID();
  const user = opts.config ?? {};
  const userService = (user['service'] as Record<string, unknown> | undefined) ?? {};
  const cfg: Record<string, unknown> = {
    receivers: { nop: {} },
    exporters: { nop: {} },
    ...user,
    extensions: {
      ...((user['extensions'] as Record<string, unknown> | undefined) ?? {}),
      opamp: {
        server: opts.endpoint.startsWith('http')
          ? { http: { endpoint: opts.endpoint, ...(opts.headers ? { headers: opts.headers } : {}), polling_interval: `${opts.pollingIntervalSeconds ?? 1}s` } }
          : { ws: { endpoint: opts.endpoint, ...(opts.headers ? { headers: opts.headers } : {}) } },
        instance_uid: instanceUid,
        capabilities: { reports_effective_config: true, reports_health: true, ...opts.capabilities },
        agent_description: { non_identifying_attributes: opts.attributes ?? {} },
      },
    },
    service: {
      pipelines: { logs: { receivers: ['nop'], exporters: ['nop'] } },
      ...userService,
      extensions: [...(((userService['extensions'] as string[] | undefined) ?? []).filter((e) => e !== 'opamp')), 'opamp'],
      telemetry: { metrics: { level: 'none' }, ...(opts.logLevel ? { logs: { level: opts.logLevel } } : {}) },
    },
  };
  const configPath = join(opts.workDir, 'collector.yaml');
  await writeFile(configPath, '# Generated by test/harness/otel/supervised-collector.ts\n' + stringify(cfg));
  const proc: GroupProcess = spawnGroup(collector, ['--config', configPath], { cwd: opts.workDir, logFile: join(opts.workDir, 'collector.log') });
  return {
    pid: proc.pid,
    instanceUid,
    configPath,
    logs: () => proc.output(),
    exited: proc.exited,
    hasExited: () => proc.hasExited(),
    async stop(s = {}) {
      await proc.stop('SIGTERM', s.timeoutMs ?? 10_000);
    },
    async kill() {
      await proc.stop('SIGKILL', 5_000);
    },
  };
}
