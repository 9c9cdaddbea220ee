/**
 * Conformance matrix with real OpAMP clients written by others, against the standalone bridge run
 * as a real child process (test/harness/bridge-process.ts) with bearer-token authentication on:
 *
 * | row              | client                                                    | transport | remote config |
 * |------------------|-----------------------------------------------------------|-----------|---------------|
 * | elastic-http     | `@elastic/opamp-client-node` (in this process)            | HTTP      | yes           |
 * | python-http      | `opentelemetry-opamp-client` (test/agents/python-agent)   | HTTP      | yes           |
 * | otelcol-ext-ws   | the collector's `opamp` extension, no Supervisor          | WebSocket | no (read-only)|
 * | otelcol-ext-http | the same, plain-HTTP polling                              | HTTP      | no (read-only)|
 *
 * Neither the Elastic nor the Python client has a WebSocket transport. For each row, as far as the
 * client supports it: connected and configured by selector (APPLIED); edit → applied; rejected
 * config → FAILED; agent restart with the same uid and with a new uid; bridge restart (SIGTERM,
 * SIGKILL) while connected → every agent matched, APPLIED and counted exactly once again within two
 * heartbeat intervals + 5 s (printed: `reconverge client=... transport=... signal=... ms=...`);
 * agent killed → no longer counted within the grace (two heartbeat intervals).
 *
 * Counting is judged where users read it: the Collector's status counts (matched, connected,
 * applied, failed), the agents list (one connected agent per row), and the /metrics gauges.
 *
 * One client property widens one bound: after a failed request the Elastic client waits 30 s
 * (+/- 10 %) before it tries again (opamp-client.js `_scheduleSendAfterErr`, following the spec's
 * "minimum recommended retry interval"), so when one of its polls falls into the bridge's downtime it
 * is back only then; its reconvergence bound is 2 heartbeats + 5 s after that wait. What the clients
 * do with a ConnectionSettingsOffers message (none of them accepts one: ignored) and with the
 * ReportFullState flag (all three send their full state on the next request) is noted at each start*()
 * below and observed in the last test.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpAMPClient, DIAG_CH_SEND_SUCCESS, RemoteConfigStatuses } from '@elastic/opamp-client-node';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';
import {
  bearerAuthManifests,
  bearerHeaders,
  collectorYaml,
  startBridgeProcess,
  waitUntil,
  type BridgeProcess,
} from '../harness/bridge-process.js';
import type { JsonObject } from '../harness/child-process.js';
import { conformanceChecks } from '../harness/conformance.js';
import { ensureOtelBinaries, otelMissingReason } from '../harness/otel/binaries.js';
import { startCollectorWithOpampExtension } from '../harness/otel/supervised-collector.js';
import { ensurePythonAgent, findPython3, startPythonAgent, type PythonAgent } from '../harness/python-agent.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const FILE = 'test/integration/conformance-clients.test.ts';
const python3 = await findPython3();
const skipPython = skipUnlessOnCi(`${FILE} (python-http)`, python3.ok ? null : python3.reason);
const skipOtel = skipUnlessOnCi(`${FILE} (otelcol-ext-*)`, otelMissingReason());

/** The bridge's heartbeat interval (--heartbeat-interval): what "on time" and the grace are measured in. */
const HEARTBEAT_S = 2;
/** How often the clients themselves poll / heartbeat (none of them accepts the bridge's offer). */
const CLIENT_POLL_S = 1;
/** A disconnected agent stops counting within at most two heartbeat intervals. */
const GRACE_MS = 2 * HEARTBEAT_S * 1000;
/** After a bridge restart every agent is matched, APPLIED and counted once again within this. */
const RECONVERGE_MS = 2 * HEARTBEAT_S * 1000 + 5000;
/**
 * What the test adds to a bound: its own polling of the admin API (every 100 ms, on a busy 2-core
 * machine) and the bridge's periodic sweep of silent HTTP agents (a quarter interval here).
 */
const MEASURE_SLACK_MS = 1500;
/** Bound on ordinary steps (a config push and its status, an agent's first connection). */
const STEP_MS = 20_000;

const TOKEN = `conformance-${randomBytes(12).toString('hex')}`;
const AUTH = bearerHeaders(TOKEN);
const ROW_LABEL = 'conformance.row';
const REJECT_MARK = 'conformance-reject-me';

type RowName = 'elastic-http' | 'python-http' | 'otelcol-ext-ws' | 'otelcol-ext-http';

/** One running agent of a row, whatever the client. */
interface RowAgent {
  readonly uid: string;
  /** Bodies of the remote configs the client received (remote-config rows). */
  configs(): { hash: string; body: string }[];
  /** From now on reject (FAILED) or apply (APPLIED) the configs it receives. */
  rejectConfigs(on: boolean): Promise<void>;
  /** Graceful stop, the way the client shuts down (AgentDisconnect if the client sends one). */
  stop(): Promise<void>;
  /** Gone without a word: SIGKILL of the process (the Elastic client runs in this process; see startElastic). */
  kill(): Promise<void>;
  describe(): string;
}

interface Row {
  name: RowName;
  client: string;
  transport: 'http' | 'websocket';
  /** Accepts remote config (AcceptsRemoteConfig + ReportsRemoteConfig). */
  remoteConfig: boolean;
  /**
   * How long the client itself waits before it tries again after a failed request, at most — a
   * property of the client, not of the bridge, added to the reconvergence bound of a bridge restart
   * (during which some request fails).
   */
  retryAfterFailureMs: number;
  skip: boolean;
  start(opts?: { uid?: string }): Promise<RowAgent>;
  /** The agent the row keeps running for the bridge-restart and kill scenarios. */
  live?: RowAgent;
}

let bridge: BridgeProcess;
let workDir: string;
let pythonBin: string | undefined;
const everyAgent: RowAgent[] = [];
const results: string[] = [];

function report(line: string): void {
  results.push(line);
  console.log(line);
}

// ---------------------------------------------------------------------------------------------
// Manifests

function pipeline(marker: string): Record<string, unknown> {
  return {
    receivers: { otlp: { protocols: { http: { endpoint: '127.0.0.1:4318' } } } },
    processors: { 'attributes/marker': { actions: [{ key: 'conformance.marker', value: marker, action: 'insert' }] } },
    exporters: { debug: {} },
    service: { pipelines: { logs: { receivers: ['otlp'], processors: ['attributes/marker'], exporters: ['debug'] } } },
  };
}
const collectorName = (row: RowName) => `conf-${row}`;
const manifestFile = (row: RowName) => `${collectorName(row)}.yaml`;
const rowManifest = (row: RowName, marker: string) => collectorYaml(collectorName(row), { [ROW_LABEL]: row }, pipeline(marker));

// ---------------------------------------------------------------------------------------------
// Clients

/**
 * What the Elastic client was sent, by instance uid: the client publishes every exchange on a
 * diagnostics channel when `diagEnabled` (opamp-client.js, DIAG_CH_SEND_SUCCESS).
 */
const elasticSeen = new Map<string, { fullStateRequests: number; offers: number; exchanges: number }>();
const onElasticExchange = (m: unknown): void => {
  const { instanceUidStr, s2a } = m as { instanceUidStr: string; s2a?: { flags?: bigint; connectionSettings?: unknown } };
  const seen = elasticSeen.get(instanceUidStr) ?? { fullStateRequests: 0, offers: 0, exchanges: 0 };
  seen.exchanges++;
  if (s2a && (BigInt(s2a.flags ?? 0n) & 1n) === 1n) seen.fullStateRequests++;
  if (s2a?.connectionSettings) seen.offers++;
  elasticSeen.set(instanceUidStr, seen);
};

/**
 * `@elastic/opamp-client-node`: HTTP only (an undici Client POSTing protobuf); headers through its
 * `headers` option. It runs in this process, so "killed" is `shutdown()`, which sends nothing (no
 * AgentDisconnect: the client has none) — on the wire the same as a killed process for the HTTP
 * transport: the polls stop. ReportFullState: it queues a full report (description, remote config
 * status) for its next request; ConnectionSettingsOffers: ignored (`_processServerToAgent` reads
 * flags, remote config and agent identification only; it cannot even advertise the capability).
 */
async function startElastic(row: Row, opts: { uid?: string } = {}): Promise<RowAgent> {
  const received: { hash: string; body: string }[] = [];
  let reject = false;
  const uid = opts.uid ?? randomUUID();
  const client = createOpAMPClient({
    endpoint: bridge.opampHttpUrl,
    instanceUid: uid,
    headers: AUTH,
    heartbeatIntervalSeconds: CLIENT_POLL_S,
    capabilities: BigInt(C.AcceptsRemoteConfig | C.ReportsRemoteConfig),
    diagEnabled: true,
    onMessage: ({ remoteConfig }) => {
      if (!remoteConfig) return;
      const body = Buffer.from(remoteConfig.config?.configMap?.['']?.body ?? new Uint8Array()).toString('utf8');
      received.push({ hash: Buffer.from(remoteConfig.configHash).toString('hex'), body });
      const bad = reject || body.includes(REJECT_MARK);
      client.setRemoteConfigStatus(
        bad
          ? { status: RemoteConfigStatuses.RemoteConfigStatuses_FAILED, lastRemoteConfigHash: remoteConfig.configHash, errorMessage: `rejected by ${row.name}` }
          : { status: RemoteConfigStatuses.RemoteConfigStatuses_APPLIED, lastRemoteConfigHash: remoteConfig.configHash, errorMessage: '' },
      );
    },
  });
  client.setAgentDescription({
    identifyingAttributes: { 'service.name': 'conformance-elastic', 'service.version': '0.5.0' },
    nonIdentifyingAttributes: { [ROW_LABEL]: row.name, 'host.name': `elastic-${uid.slice(0, 8)}` },
  });
  client.start();
  let down = false;
  const shutdown = async () => {
    if (down) return;
    down = true;
    await client.shutdown();
  };
  const agent: RowAgent = {
    uid,
    configs: () => received,
    async rejectConfigs(on) {
      reject = on;
    },
    stop: shutdown,
    kill: shutdown,
    describe: () => `elastic client ${uid}: configs received ${JSON.stringify(received.map((r) => r.hash.slice(0, 12)))}; exchanges ${JSON.stringify(elasticSeen.get(uid) ?? null)}`,
  };
  everyAgent.push(agent);
  return agent;
}

/**
 * `opentelemetry-opamp-client` through test/agents/python-agent: HTTP only (requests); headers
 * through OpAMPClient(headers=...). ReportFullState: OpAMPAgent queues build_full_state_message()
 * (description, capabilities, remote config status and effective config when it has them);
 * ConnectionSettingsOffers: ignored (MessageData carries remote_config only). stop() posts
 * AgentDisconnect; SIGKILL sends nothing.
 */
async function startPython(row: Row, opts: { uid?: string } = {}): Promise<RowAgent & { proc: PythonAgent }> {
  const proc = await startPythonAgent({
    endpoint: bridge.opampHttpUrl,
    python: pythonBin,
    heartbeatSeconds: CLIENT_POLL_S,
    headers: AUTH,
    idAttrs: { 'service.name': 'conformance-python' },
    attrs: { [ROW_LABEL]: row.name, 'host.name': `python-${randomUUID().slice(0, 8)}` },
    ...(opts.uid ? { instanceUid: opts.uid } : {}),
  });
  const agent = {
    proc,
    uid: proc.instanceUid,
    configs: () =>
      proc.events.filter((e) => e.event === 'remote_config').map((e) => ({ hash: String(e.hash), body: String(e.body ?? '') })),
    async rejectConfigs(on: boolean) {
      const since = proc.events.length;
      proc.send({ cmd: 'mode', remoteConfig: on ? 'fail' : 'apply', error: `rejected by ${row.name}` });
      await proc.waitFor((e) => e.event === 'ack' && e.cmd === 'mode', { since, timeoutMs: 10_000 });
    },
    async stop() {
      await proc.stop({ timeoutMs: 10_000 });
    },
    async kill() {
      proc.kill('SIGKILL');
      await proc.exited;
    },
    describe: () => proc.describe(),
  };
  everyAgent.push(agent);
  return agent;
}

/**
 * The collector with only the `opamp` extension (no Supervisor): a read-only agent. Headers go in
 * `extensions.opamp.server.{ws,http}.headers`. Its own process group, SIGKILLed with this process.
 * On opamp-go's client: ReportFullState → the next message carries its whole state (description,
 * health, effective config, available components, ...); ConnectionSettingsOffers → ignored (the
 * extension advertises neither AcceptsOpAMPConnectionSettings nor ReportsHeartbeat). On SIGTERM the
 * WebSocket client sends AgentDisconnect, the HTTP client does not.
 */
async function startExtension(row: Row, opts: { uid?: string } = {}): Promise<RowAgent> {
  const uid = opts.uid ?? randomUUID();
  const ext = await startCollectorWithOpampExtension({
    endpoint: row.transport === 'websocket' ? bridge.opampWsUrl : bridge.opampHttpUrl,
    instanceUid: uid,
    headers: AUTH,
    pollingIntervalSeconds: CLIENT_POLL_S,
    logLevel: 'debug',
    attributes: { [ROW_LABEL]: row.name, 'host.name': `otelcol-${uid.slice(0, 8)}` },
    workDir: join(workDir, `${row.name}-${uid.slice(0, 8)}-${Date.now()}`),
  });
  const agent: RowAgent = {
    uid,
    configs: () => [],
    async rejectConfigs() {
      throw new Error(`${row.name} does not accept remote config`);
    },
    async stop() {
      await ext.stop({ timeoutMs: 10_000 });
    },
    async kill() {
      await ext.kill();
    },
    describe: () => `collector ${uid} pid ${ext.pid}${ext.hasExited() ? ' (exited)' : ''}, output tail:\n${ext.logs().slice(-3000)}`,
  };
  everyAgent.push(agent);
  return agent;
}

const rows: Row[] = [
  // opamp-client.js _scheduleSendAfterErr: after a failed request the next try is 30 s (+/- 10 % jitter) later.
  { name: 'elastic-http', client: '@elastic/opamp-client-node', transport: 'http', remoteConfig: true, retryAfterFailureMs: 33_000, skip: false, start: (o) => startElastic(rowOf('elastic-http'), o) },
  // agent.py _Job.delay: initial_backoff (0.5 s here) doubling, +/- 20 %; a failed heartbeat is retried once, then the next one is due.
  { name: 'python-http', client: 'opentelemetry-opamp-client', transport: 'http', remoteConfig: true, retryAfterFailureMs: 0, skip: skipPython, start: (o) => startPython(rowOf('python-http'), o) },
  // opamp-go (v0.22.0) wsclient.ensureConnected / httpsender: exponential backoff from 0.5 s.
  { name: 'otelcol-ext-ws', client: 'otelcol opamp extension', transport: 'websocket', remoteConfig: false, retryAfterFailureMs: 0, skip: skipOtel, start: (o) => startExtension(rowOf('otelcol-ext-ws'), o) },
  { name: 'otelcol-ext-http', client: 'otelcol opamp extension', transport: 'http', remoteConfig: false, retryAfterFailureMs: 0, skip: skipOtel, start: (o) => startExtension(rowOf('otelcol-ext-http'), o) },
];
function rowOf(name: RowName): Row {
  return rows.find((r) => r.name === name)!;
}
const activeRows = () => rows.filter((r) => !r.skip);

// ---------------------------------------------------------------------------------------------
// What the bridge shows

const { describeRow, waitReady, waitConverged, waitDesired, waitUncounted, expectGauges } = conformanceChecks<Row, RowAgent>({
  bridge: () => bridge,
  rowLabel: ROW_LABEL,
  collectorName: (row) => collectorName(row as RowName),
  stepMs: STEP_MS,
  gaugesMs: GRACE_MS + MEASURE_SLACK_MS,
  agentTail: 2500,
});

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  subscribe(DIAG_CH_SEND_SUCCESS, onElasticExchange);
  workDir = await mkdtemp(join(tmpdir(), 'fleetbridge-conformance-'));
  const [py] = await Promise.all([
    skipPython ? null : ensurePythonAgent(),
    skipOtel ? null : ensureOtelBinaries({ log: (l) => console.log(`[otel-binaries] ${l}`) }),
  ]);
  pythonBin = py?.python;
  const manifests: Record<string, string> = { ...bearerAuthManifests(TOKEN) };
  for (const row of rows) manifests[manifestFile(row.name)] = rowManifest(row.name, 'v1');
  bridge = await startBridgeProcess({ manifests, heartbeatIntervalSeconds: HEARTBEAT_S });
}, 30 * 60_000);

afterAll(async () => {
  unsubscribe(DIAG_CH_SEND_SUCCESS, onElasticExchange);
  await Promise.allSettled(everyAgent.map((a) => a.kill()));
  await bridge?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  if (results.length) console.log(`[conformance] summary:\n${results.join('\n')}`);
}, 60_000);

describe('conformance matrix: real OpAMP clients, bearer-token auth on', () => {
  it('refuses an agent without the token (authentication is on)', async () => {
    const r = await fetch(bridge.opampHttpUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' }, body: new Uint8Array([0x0a, 0x10, ...randomBytes(16)]) });
    expect(r.status).toBe(401);
  });

  for (const row of rows) {
    describe.skipIf(row.skip)(`${row.name} (${row.client} over ${row.transport})`, () => {
      let agent: RowAgent | undefined;
      const need = () => {
        if (!agent) throw new Error(`${row.name}: no agent (an earlier step failed)`);
        return agent;
      };

      it('connects with the token, is described, matched by its selector and counted once' + (row.remoteConfig ? '; receives its config and reports APPLIED' : ' (read-only: no config is pushed)'), async () => {
        agent = await row.start();
        row.live = agent;
        const view = await waitConverged(row, agent, STEP_MS);
        expect(view.transport).toBe(row.transport);
        expect(view.labels[ROW_LABEL]).toBe(row.name);
        expect(view.verified).toMatchObject({ method: 'bearerToken' });
        if (row.remoteConfig) {
          expect(agent.configs().map((c) => c.hash)).toContain(view.remoteConfig.desiredHash);
          expect(agent.configs().at(-1)!.body).toContain('conformance.marker');
        } else {
          expect(view.capabilities.names).not.toContain('AcceptsRemoteConfig');
          expect(view.health).not.toBeNull();
          expect(view.effectiveConfig).not.toBeNull();
          expect(view.remoteConfig.desiredHash).toMatch(/^[0-9a-f]{64}$/);
        }
      }, 60_000);

      if (row.remoteConfig) {
        it('edit → the new config is applied', async () => {
          const a = need();
          const before = (await bridge.getAgent(a.uid))!.remoteConfig.desiredHash;
          await bridge.writeManifest(manifestFile(row.name), rowManifest(row.name, 'v2-edited'));
          const hash = await waitDesired(row, a, before);
          await waitConverged(row, a, STEP_MS, { hash });
          expect(a.configs().find((c) => c.hash === hash)?.body).toContain('v2-edited');
        }, 60_000);

        it('rejected config → FAILED with the agent\'s message; a good config after it is applied', async () => {
          const a = need();
          const before = (await bridge.getAgent(a.uid))!.remoteConfig.desiredHash;
          await a.rejectConfigs(true);
          await bridge.writeManifest(manifestFile(row.name), rowManifest(row.name, `v3-${REJECT_MARK}`));
          const bad = await waitDesired(row, a, before);
          const failed = await waitUntil(
            async () => {
              const [v, c] = await Promise.all([bridge.getAgent(a.uid), bridge.getCollector(collectorName(row.name))]);
              return v?.remoteConfig.status === 'FAILED' && v.remoteConfig.reportedHash === bad && c?.status.failed === 1 ? { v, c } : undefined;
            },
            { timeoutMs: STEP_MS, what: `${row.name}: FAILED for ${bad}`, describe: () => describeRow(row, a) },
          );
          expect(failed.v.remoteConfig).toMatchObject({ errorMessage: `rejected by ${row.name}`, inSync: false });
          expect(failed.c.status).toMatchObject({ matched: 1, connected: 1, applied: 0, failed: 1 });
          expect(failed.c.status.failing).toEqual([expect.objectContaining({ instanceUid: a.uid, reason: 'ApplyFailed', message: `rejected by ${row.name}` })]);

          await a.rejectConfigs(false);
          await bridge.writeManifest(manifestFile(row.name), rowManifest(row.name, 'v4-good'));
          const good = await waitDesired(row, a, bad);
          await waitConverged(row, a, STEP_MS, { hash: good });
        }, 60_000);
      }

      it('agent restart with the same uid: ' + (row.remoteConfig ? 'configured again, ' : '') + 'counted once', async () => {
        const old = need();
        await old.stop();
        const t0 = Date.now();
        agent = await row.start({ uid: old.uid });
        row.live = agent;
        expect(agent.uid).toBe(old.uid);
        // The restarted process must be heard from (and, with remote config, be sent its config again:
        // it starts without one) — what the bridge knew of the previous process does not count.
        await waitConverged(row, agent, STEP_MS, { since: t0 });
        report(`same-uid-restart client=${row.client} transport=${row.transport} ms=${Date.now() - t0}`);
      }, 60_000);

      it('agent restart with a new uid: the new one is ' + (row.remoteConfig ? 'configured and ' : '') + 'counted, the old one no longer (within the grace)', async () => {
        const old = need();
        await old.stop();
        const t0 = Date.now();
        // The old uid (stopped; the Elastic client and opamp-go's HTTP client send no AgentDisconnect) stops counting within the grace ...
        const oldGone = waitUntil(
          async () => {
            const v = await bridge.getAgent(old.uid);
            return !v || !v.connected ? Date.now() - t0 : undefined;
          },
          { timeoutMs: GRACE_MS + MEASURE_SLACK_MS, what: `${row.name}: old uid ${old.uid} no longer connected`, describe: () => describeRow(row, old) },
        );
        oldGone.catch(() => undefined); // awaited below; keeps an early failure from being unhandled
        // ... while the new one connects and converges, and is then the only one counted.
        agent = await row.start();
        row.live = agent;
        expect(agent.uid).not.toBe(old.uid);
        const [gone] = await Promise.all([oldGone, waitConverged(row, agent, STEP_MS, { since: t0 })]);
        report(`old-uid-uncounted client=${row.client} transport=${row.transport} after=stop ms=${gone} (grace ${GRACE_MS} ms)`);
      }, 60_000);
    });
  }

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`bridge restart (${signal}) with every client connected: each agent matched, APPLIED and counted exactly once again within 2 heartbeats + 5 s`, async () => {
      const live = activeRows();
      // Every row needs a connected, configured agent first (a fresh one if an earlier step left none).
      await Promise.all(
        live.map(async (row) => {
          if (row.live) {
            const ok = await waitReady(row, row.live, 5_000).then(() => true, () => false);
            if (ok) return;
            await row.live.kill();
          }
          row.live = await row.start();
          await waitReady(row, row.live, STEP_MS);
        }),
      );
      const pushedBefore = new Map(live.map((r) => [r.name, r.live!.configs().length]));
      const t0 = Date.now();
      await bridge.restart(signal);
      const ready = Date.now();
      const outcomes = await Promise.allSettled(
        live.map(async (row) => {
          const bound = RECONVERGE_MS + row.retryAfterFailureMs + MEASURE_SLACK_MS;
          const view = await waitConverged(row, row.live!, bound);
          const ms = Date.now() - ready;
          const repushed = row.live!.configs().length - pushedBefore.get(row.name)!;
          // firstSeen of the new incarnation's record: when the client first reached it again.
          const firstContact = Date.parse(view.firstSeen) - ready;
          report(
            `reconverge client=${row.client} transport=${row.transport} signal=${signal} ms=${ms} ` +
              `(first contact ${firstContact} ms; from the signal ${Date.now() - t0} ms; bound ${bound} ms${row.remoteConfig ? `; configs re-sent ${repushed}` : ''})`,
          );
          return ms;
        }),
      );
      const failures = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`${live[i]!.name}: ${(o.reason as Error).message.split('\n')[0]}`] : []));
      if (failures.length) {
        for (const [i, o] of outcomes.entries()) if (o.status === 'rejected') console.error(`[conformance] ${live[i]!.name} after ${signal}:\n${(o.reason as Error).message}`);
      }
      expect(failures).toEqual([]);
      // Counted exactly once across the fleet: one connected agent per row, and the gauges agree.
      const connected = (await bridge.getAgents()).filter((a) => a.connected);
      expect(connected.map((a) => a.instanceUid).sort()).toEqual(live.map((r) => r.live!.uid).sort());
      await expectGauges(live);
    }, 120_000);
  }

  it('agent killed: no longer counted within the grace (two heartbeat intervals)', async () => {
    const live = activeRows().filter((r) => r.live);
    expect(live.map((r) => r.name)).toEqual(activeRows().map((r) => r.name));
    // Everyone is connected (polls / heartbeats on time) before the kill.
    await Promise.all(live.map((row) => waitReady(row, row.live!, STEP_MS)));
    const t0 = Date.now();
    await Promise.all(live.map((row) => row.live!.kill()));
    const outcomes = await Promise.allSettled(
      live.map(async (row) => {
        const ms = await waitUncounted(row, t0, GRACE_MS + MEASURE_SLACK_MS);
        report(`uncounted client=${row.client} transport=${row.transport} after=kill ms=${ms} (grace ${GRACE_MS} ms)`);
        return ms;
      }),
    );
    const failures = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`${live[i]!.name}: ${(o.reason as Error).message.split('\n')[0]}`] : []));
    expect(failures).toEqual([]);
    await expectGauges([]);
  }, 60_000);

  it('what each client was sent: full-state requests and connection-settings offers (observed, printed)', async () => {
    const elastic = [...elasticSeen.entries()].map(([uid, s]) => `${uid}:${JSON.stringify(s)}`);
    report(`observed client=@elastic/opamp-client-node ${elastic.join(' ')}`);
    const py = everyAgent.filter((a): a is RowAgent & { proc: PythonAgent } => 'proc' in a);
    for (const a of py) {
      const msgs = a.proc.events.filter((e: JsonObject) => e.event === 'server_message');
      report(
        `observed client=opentelemetry-opamp-client ${a.uid}: fullStateRequests=${msgs.filter((e) => e.reportFullState).length} offers=${msgs.filter((e) => e.connectionSettings).length}`,
      );
    }
    // None of these clients accepts connection settings (no AcceptsOpAMPConnectionSettings), so none should be offered any.
    for (const [uid, s] of elasticSeen) expect(s.offers, `offers sent to elastic ${uid}`).toBe(0);
    for (const a of py) expect(a.proc.events.filter((e: JsonObject) => e.event === 'server_message' && e.connectionSettings).length, `offers sent to python ${a.uid}`).toBe(0);
  });
});
