/**
 * Builds and drives the opamp-go test agent (test/agents/opamp-go-agent): a real OpAMP client
 * built on github.com/open-telemetry/opamp-go, controlled over JSON lines (see that directory's
 * agent.go for the full command and event list).
 *
 * ```ts
 * const agent = await startGoAgent({ endpoint: bridge.opampWsUrl, attrs: { 'deployment.environment': 'edge' } });
 * const rc = await agent.waitForRemoteConfig((e) => e.body !== null);
 * await agent.command({ cmd: 'health', healthy: false, status: 'StatusRecoverableError' });
 * await agent.stop();
 * ```
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnJsonLines, type JsonLinesChild, type WaitForOptions } from './child-process.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GO_AGENT_DIR = join(repoRoot, 'test', 'agents', 'opamp-go-agent');
const BIN_DIR = join(repoRoot, '.cache', 'bin');

/** Why the Go agent cannot be built here (no `go` on PATH), or null when it can. Synchronous, for `describe.skipIf`. */
export function goMissingReason(): string | null {
  return findGo() ? null : '`go` was not found on PATH; the opamp-go test agent cannot be built (install Go >= 1.24 to run these tests)';
}

function findGo(): string | null {
  const names = process.platform === 'win32' ? ['go.exe'] : ['go'];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const n of names) {
      const p = join(dir, n);
      try {
        if (statSync(p).isFile()) return p;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** First 12 hex digits of sha256 over go.mod, go.sum and the *.go files (names and contents). */
export function goAgentSourceHash(): string {
  const h = createHash('sha256');
  const files = readdirSync(GO_AGENT_DIR)
    .filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go'))
    .sort();
  for (const f of files) {
    const body = readFileSync(join(GO_AGENT_DIR, f));
    h.update(`${f}\0${body.length}\0`);
    h.update(body);
  }
  return h.digest('hex').slice(0, 12);
}

let building: Promise<string | null> | undefined;

/**
 * Builds the agent into `.cache/bin/opamp-go-agent-<hash>` (reused when present) and resolves with its path,
 * or with null when `go` is not on PATH. The first build downloads modules and may take minutes: call it from
 * a `beforeAll` with a generous timeout.
 */
export function buildGoAgent(): Promise<string | null> {
  building ??= doBuild().catch((err: unknown) => {
    building = undefined; // let a later call retry
    throw err;
  });
  return building;
}

async function doBuild(): Promise<string | null> {
  const go = findGo();
  if (!go) return null;
  const out = join(BIN_DIR, `opamp-go-agent-${goAgentSourceHash()}${process.platform === 'win32' ? '.exe' : ''}`);
  if (existsSync(out)) return out;
  await mkdir(BIN_DIR, { recursive: true });
  // Build next to the target and rename, so concurrent builders (vitest workers) never see a partial file.
  const tmp = `${out}.tmp-${process.pid}-${Date.now()}`;
  try {
    await new Promise<void>((ok, fail) => {
      execFile(
        go,
        ['build', '-trimpath', '-o', tmp, '.'],
        {
          cwd: GO_AGENT_DIR,
          env: { ...process.env, GOFLAGS: '-mod=readonly', CGO_ENABLED: '0', GOWORK: 'off' },
          timeout: 600_000,
          maxBuffer: 16 * 1024 * 1024,
        },
        (err, stdout, stderr) => {
          if (err) fail(new Error(`go build of ${GO_AGENT_DIR} failed: ${err.message}\n${stdout}\n${stderr}`));
          else ok();
        },
      );
    });
    await rename(tmp, out);
  } finally {
    await rm(tmp, { force: true });
  }
  return out;
}

export interface GoAgentOptions {
  /** ws://127.0.0.1:PORT/v1/opamp (opamp-go's WebSocket client) or http://127.0.0.1:PORT/v1/opamp (its plain-HTTP client, which polls every heartbeat interval). */
  endpoint: string;
  /** Canonical UUID; default: the agent makes a UUIDv7 (read it from `agent.instanceUid`). */
  instanceUid?: string;
  /** Identifying attributes; the agent defaults to service.name=test-agent when empty. */
  idAttrs?: Record<string, string>;
  /** Non-identifying attributes. */
  attrs?: Record<string, string>;
  acceptsRemoteConfig?: boolean;
  reportsHeartbeat?: boolean;
  acceptsConnectionSettings?: boolean;
  /** Advertise AcceptsPackages + ReportsPackageStatuses and install offered packages (SHA-256 checked). */
  acceptsPackages?: boolean;
  /** Initial heartbeat interval; a server offer (ConnectionSettingsOffers.opamp.heartbeat_interval_seconds) overrides it. Default: opamp-go's 30 s. */
  heartbeatSeconds?: number;
  /** Extra HTTP headers on the WebSocket upgrade request. */
  headers?: Record<string, string>;
  /** PEM CA file that verifies a wss:// server (--ca-file). */
  caFile?: string;
  /** PEM client certificate and key files for mTLS (--cert-file, --key-file). */
  certFile?: string;
  keyFile?: string;
  /** Go duration, e.g. "2m". Default 10m. */
  maxLifetime?: string;
  /** Log opamp-go debug messages to stderr. */
  verbose?: boolean;
  /**
   * Restart the opamp-go client on every OpAMP connection settings offer (stop: agent_disconnect;
   * start: same instance uid, full state), as opamp-go's example agent does; also advertises
   * ReportsConnectionSettingsStatus. Emits `restarting` events.
   */
  restartOnOffer?: boolean;
  /** The binary; default: `await buildGoAgent()`. */
  binary?: string;
  /** How long to wait for the "started" event. Default 10 s. */
  startTimeoutMs?: number;
}

function commonArgs(opts: Omit<GoAgentOptions, 'instanceUid' | 'binary' | 'startTimeoutMs'>): string[] {
  const args = ['--endpoint', opts.endpoint];
  for (const [k, v] of Object.entries(opts.idAttrs ?? {})) args.push('--id-attr', `${k}=${v}`);
  for (const [k, v] of Object.entries(opts.attrs ?? {})) args.push('--attr', `${k}=${v}`);
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('--header', `${k}=${v}`);
  if (opts.acceptsRemoteConfig !== undefined) args.push(`--accepts-remote-config=${opts.acceptsRemoteConfig}`);
  if (opts.reportsHeartbeat !== undefined) args.push(`--reports-heartbeat=${opts.reportsHeartbeat}`);
  if (opts.acceptsConnectionSettings !== undefined) args.push(`--accepts-connection-settings=${opts.acceptsConnectionSettings}`);
  if (opts.acceptsPackages !== undefined) args.push(`--accepts-packages=${opts.acceptsPackages}`);
  if (opts.heartbeatSeconds !== undefined) args.push('--heartbeat-seconds', String(opts.heartbeatSeconds));
  if (opts.caFile) args.push('--ca-file', opts.caFile);
  if (opts.certFile) args.push('--cert-file', opts.certFile);
  if (opts.keyFile) args.push('--key-file', opts.keyFile);
  if (opts.maxLifetime) args.push('--max-lifetime', opts.maxLifetime);
  if (opts.restartOnOffer) args.push('--restart-on-offer');
  if (opts.verbose) args.push('--verbose');
  return args;
}

export interface GoAgentEvent {
  event: string;
  [key: string]: unknown;
}

export interface RemoteConfigEvent extends GoAgentEvent {
  event: 'remote_config';
  client: number;
  /** Hex of AgentRemoteConfig.config_hash. */
  hash: string;
  /** Body of the "" config map entry as text; null when there is no "" entry. */
  body: string | null;
  /** Config map keys, sorted. */
  keys: string[];
  contentType: string;
}

export interface ConfigStatusEvent extends GoAgentEvent {
  event: 'config_status_sent';
  status: 'APPLYING' | 'APPLIED' | 'FAILED';
  hash: string;
  errorMessage: string;
}

/** A command for the agent; see test/agents/opamp-go-agent/agent.go. */
export type GoAgentCommand =
  | { cmd: 'mode'; remoteConfig: 'apply' | 'fail' | 'ignore'; error?: string; applyDelayMs?: number }
  | ({ cmd: 'health' } & HealthSpec)
  | { cmd: 'effective_config'; body: string; contentType?: string }
  | { cmd: 'description'; attrs: Record<string, string | number | boolean> }
  | { cmd: 'restart' }
  | { cmd: 'disconnect' };

export interface HealthSpec {
  healthy?: boolean;
  status?: string;
  lastError?: string;
  components?: Record<string, HealthSpec>;
}

export interface GoAgent extends JsonLinesChild<GoAgentEvent> {
  /** Canonical UUID the agent started with (see `instance_uid_changed` events for server-assigned ones). */
  readonly instanceUid: string;
  /** Sends a command and resolves with its ack; rejects when the agent reports ok:false. */
  command(cmd: GoAgentCommand, opts?: { timeoutMs?: number }): Promise<GoAgentEvent>;
  /** Every remote config received so far, in order. */
  remoteConfigs(): RemoteConfigEvent[];
  /** Waits for a remote config with this hex hash, or one matching the predicate. */
  waitForRemoteConfig(hashOrPredicate: string | ((e: RemoteConfigEvent) => boolean), opts?: WaitForOptions): Promise<RemoteConfigEvent>;
  /** Waits until the agent has handed this remote config status to opamp-go (optionally for one hash). */
  waitForConfigStatus(status: ConfigStatusEvent['status'], hash?: string, opts?: WaitForOptions): Promise<ConfigStatusEvent>;
}

export async function startGoAgent(opts: GoAgentOptions): Promise<GoAgent> {
  const binary = opts.binary ?? (await buildGoAgent());
  if (!binary) throw new Error(goMissingReason() ?? 'the opamp-go test agent could not be built');

  const args = commonArgs(opts);
  if (opts.instanceUid) args.push('--instance-uid', opts.instanceUid);

  const child = spawnJsonLines<GoAgentEvent>(binary, args, { name: `opamp-go-agent ${opts.instanceUid ?? ''}`.trim() });
  let started: GoAgentEvent;
  try {
    started = await child.waitFor((e) => e.event === 'started' || e.event === 'start_failed', { timeoutMs: opts.startTimeoutMs ?? 10_000 });
  } catch (err) {
    await child.stop({ timeoutMs: 1000 });
    throw err;
  }
  if (started.event !== 'started') {
    await child.stop({ timeoutMs: 1000 });
    throw new Error(`opamp-go agent failed to start: ${String(started.error)}\n${child.describe()}`);
  }

  const isRemoteConfig = (e: GoAgentEvent): e is RemoteConfigEvent => e.event === 'remote_config';

  return Object.assign(child, {
    instanceUid: String(started.instanceUid),
    async command(cmd: GoAgentCommand, copts: { timeoutMs?: number } = {}): Promise<GoAgentEvent> {
      const since = child.events.length;
      child.send(cmd);
      const ack = await child.waitFor((e) => e.event === 'ack' && e.cmd === cmd.cmd, { since, timeoutMs: copts.timeoutMs ?? 15_000 });
      if (ack.ok !== true) throw new Error(`opamp-go agent rejected ${JSON.stringify(cmd)}: ${String(ack.error)}\n${child.describe()}`);
      return ack;
    },
    remoteConfigs(): RemoteConfigEvent[] {
      return child.events.filter(isRemoteConfig);
    },
    waitForRemoteConfig(hashOrPredicate: string | ((e: RemoteConfigEvent) => boolean), wopts?: WaitForOptions): Promise<RemoteConfigEvent> {
      const pred = typeof hashOrPredicate === 'string' ? (e: RemoteConfigEvent) => e.hash === hashOrPredicate : hashOrPredicate;
      return child.waitFor((e) => isRemoteConfig(e) && pred(e), wopts) as Promise<RemoteConfigEvent>;
    },
    waitForConfigStatus(status: ConfigStatusEvent['status'], hash?: string, wopts?: WaitForOptions): Promise<ConfigStatusEvent> {
      return child.waitFor(
        (e) => e.event === 'config_status_sent' && e.status === status && (hash === undefined || e.hash === hash),
        wopts,
      ) as Promise<ConfigStatusEvent>;
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Scale mode: many agents in one process (test/agents/opamp-go-agent/scale.go)

export interface GoAgentFleetOptions extends Omit<GoAgentOptions, 'instanceUid'> {
  /** How many agents this process runs (each its own opamp-go client and UUIDv7). */
  agents: number;
  /** Non-identifying attribute carrying each agent's index; default `agent.index`. */
  indexAttr?: string;
  /** Index of this process's first agent (so several processes give distinct indices). Default 0. */
  indexOffset?: number;
  /** Also emit every per-agent event (with `agent: i`). Default false: summaries only. */
  allEvents?: boolean;
  /** At most one summary per this many ms; default 200. */
  summaryMs?: number;
}

export interface FleetSummary extends GoAgentEvent {
  event: 'summary';
  seq: number;
  agents: number;
  /** Agents whose last connection event was OnConnect (no disconnect callback in opamp-go). */
  connected: number;
  connects: number;
  connectFailed: number;
  remoteConfigs: number;
  offers: number;
  fullStateRequests: number;
  restarts: number;
  errors: number;
  uidChanges: number;
  /** Agents by their last reported remote config status (NONE: never reported one). */
  status: { APPLIED: number; APPLYING: number; FAILED: number; NONE: number };
  /** Agents whose last status is APPLIED, by hash. */
  appliedHashes: Record<string, number>;
  failedHashes: Record<string, number>;
}

export type GoAgentFleetCommand =
  | ({ agents?: number[] } & ({ cmd: 'mode'; remoteConfig: 'apply' | 'fail' | 'ignore'; error?: string; applyDelayMs?: number } | { cmd: 'restart' } | ({ cmd: 'health' } & HealthSpec)))
  | { cmd: 'summary' };

export interface GoAgentFleet extends JsonLinesChild<GoAgentEvent> {
  /** instanceUids[i] is agent i's uid. */
  readonly instanceUids: string[];
  readonly indexOffset: number;
  /** The last summary received (there is one right after start). */
  summary(): FleetSummary;
  /** Resolves with the first summary (from now, or `since`) that matches. */
  waitForSummary(pred: (s: FleetSummary) => boolean, opts?: WaitForOptions): Promise<FleetSummary>;
  command(cmd: GoAgentFleetCommand, opts?: { timeoutMs?: number }): Promise<GoAgentEvent>;
}

/** Starts one process running `opts.agents` opamp-go agents (scale mode); resolves once all clients are started. */
export async function startGoAgentFleet(opts: GoAgentFleetOptions): Promise<GoAgentFleet> {
  const binary = opts.binary ?? (await buildGoAgent());
  if (!binary) throw new Error(goMissingReason() ?? 'the opamp-go test agent could not be built');
  const args = [...commonArgs(opts), '--agents', String(opts.agents), '--index-offset', String(opts.indexOffset ?? 0)];
  if (opts.indexAttr) args.push('--index-attr', opts.indexAttr);
  if (opts.allEvents) args.push('--events', 'all');
  if (opts.summaryMs) args.push('--summary-ms', String(opts.summaryMs));
  const child = spawnJsonLines<GoAgentEvent>(binary, args, { name: `opamp-go-agent x${opts.agents}@${opts.indexOffset ?? 0}` });
  let started: GoAgentEvent;
  try {
    started = await child.waitFor((e) => e.event === 'started' || e.event === 'start_failed', { timeoutMs: opts.startTimeoutMs ?? 20_000 });
  } catch (err) {
    await child.stop({ timeoutMs: 2000 });
    throw err;
  }
  if (started.event !== 'started') {
    await child.stop({ timeoutMs: 2000 });
    throw new Error(`opamp-go agent fleet failed to start: ${String(started.error)}\n${child.describe()}`);
  }
  const isSummary = (e: GoAgentEvent): e is FleetSummary => e.event === 'summary';
  return Object.assign(child, {
    instanceUids: started.instanceUids as string[],
    indexOffset: opts.indexOffset ?? 0,
    summary(): FleetSummary {
      for (let i = child.events.length - 1; i >= 0; i--) if (isSummary(child.events[i]!)) return child.events[i] as FleetSummary;
      throw new Error('no summary yet');
    },
    waitForSummary(pred: (s: FleetSummary) => boolean, wopts?: WaitForOptions): Promise<FleetSummary> {
      return child.waitFor((e) => isSummary(e) && pred(e), wopts) as Promise<FleetSummary>;
    },
    async command(cmd: GoAgentFleetCommand, copts: { timeoutMs?: number } = {}): Promise<GoAgentEvent> {
      const since = child.events.length;
      child.send(cmd);
      const ack = await child.waitFor((e) => e.event === 'ack' && e.cmd === cmd.cmd, { since, timeoutMs: copts.timeoutMs ?? 30_000 });
      if (ack.ok !== true) throw new Error(`opamp-go agent fleet rejected ${JSON.stringify(cmd)}: ${String(ack.error)}\n${child.describe()}`);
      return ack;
    },
  });
}
