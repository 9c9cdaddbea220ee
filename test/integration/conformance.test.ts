/**
 * Conformance matrix: real OpAMP clients against the bridge running as a real process
 * (test/harness/bridge-process.ts), over WebSocket and over plain HTTP, with bearer-token
 * authentication on. Every row runs the same scenarios:
 *
 *   connect → configured by selector; edit → applied; rejected config → FAILED with the agent's
 *   message; agent restart with the same uid and with a new uid (the old one then not counted);
 *   bridge restart (SIGTERM, then SIGKILL) with the agent connected → matched, APPLIED and counted
 *   exactly once within two heartbeat intervals + 5 s (measured, printed as `reconverge ...`);
 *   agent killed (SIGKILL) → no longer counted within the grace (two heartbeat intervals).
 *
 * Rows: the opamp-go test agent; the same agent restarting its client on every connection
 * settings offer (as opamp-go's example agent does); the OpAMP Supervisor running a collector.
 * Then a fleet run: 1,000 opamp-go clients over WebSocket (4 processes in scale mode) and 200 over
 * HTTP, all matched, APPLIED and counted once again after the bridge is SIGKILLed and restarted.
 *
 * Loopback only; every wait is bounded; nothing waits for a fixed time to see that nothing happens.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bearerAuthManifests,
  bearerHeaders,
  collectorYaml,
  startBridgeProcess,
  waitUntil,
  type AgentView,
  type BridgeProcess,
} from '../harness/bridge-process.js';
import { agentGauges } from '../harness/conformance.js';
import { buildGoAgent, goMissingReason, startGoAgent, startGoAgentFleet, type GoAgent, type GoAgentFleet } from '../harness/go-agent.js';
import { ensureOtelBinaries, otelMissingReason } from '../harness/otel/binaries.js';
import { startSupervisedCollector, type SupervisedCollector } from '../harness/otel/supervised-collector.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const FILE = 'test/integration/conformance.test.ts';
const skip = skipUnlessOnCi(FILE, goMissingReason() ?? (otelMissingReason() === null ? null : 'go missing (OpenTelemetry binaries)'));

/** The bridge's heartbeat interval (seconds) in the matrix; agents are configured with the same. */
const HB = 2;
/** Reconvergence bound after a bridge restart: two heartbeat intervals + 5 s. */
const RECONVERGE_MS = 2 * HB * 1000 + 5000;
/** A killed agent stops counting within the grace (two heartbeat intervals); plus API polling slack. */
const GRACE_MS = 2 * HB * 1000 + 1500;

type Transport = 'websocket' | 'http';
type ClientKind = 'opamp-go' | 'opamp-go-restart-on-offer' | 'supervisor';

/** One running agent of a row, whatever the client. */
interface RowAgent {
  uid: string;
  /** SIGKILL (the whole process group for the Supervisor); resolves once it is gone. */
  kill(): Promise<void>;
  /** Graceful stop (the client says agent_disconnect where it does). */
  stop(): Promise<void>;
  describe(): string;
  /** What the client did so far (offers received, client restarts, full-state requests), when it tells. */
  stats?(): string;
}

interface ClientDriver {
  start(opts: { uid?: string; fresh?: boolean }): Promise<RowAgent>;
  /** Makes the agent reject the next config (test agent), or gives a config the agent rejects (Supervisor). */
  rejectSetup(agent: RowAgent): Promise<{ config: object; message: RegExp }>;
  rejectTeardown(agent: RowAgent): Promise<void>;
  /** Bound on start → APPLIED (the Supervisor bootstraps its collector first). */
  applyTimeoutMs: number;
}

/** A valid collector config for both kinds of agent; `n` makes each version distinct. */
const goodConfig = (n: number) => ({
  receivers: { nop: {} },
  processors: { batch: { timeout: `${100 + n}ms` } },
  exporters: { nop: {} },
  service: { pipelines: { logs: { receivers: ['nop'], processors: ['batch'], exporters: ['nop'] } } },
});

const REJECT_MESSAGE = 'conformance: this agent rejects the config';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
}, 120_000);

describe.skipIf(skip)('conformance matrix (bearer-token authentication on)', () => {
  let workRoot: string;
  beforeAll(async () => {
    await buildGoAgent();
    await ensureOtelBinaries({ log: (l) => console.log(`[otel-binaries] ${l}`) });
    workRoot = await mkdtemp(join(tmpdir(), 'fleetbridge-conformance-'));
    cleanups.push(() => rm(workRoot, { recursive: true, force: true }));
  }, 30 * 60_000);

  const rows: { client: ClientKind; transport: Transport }[] = [];
  for (const client of ['opamp-go', 'opamp-go-restart-on-offer', 'supervisor'] as const) for (const transport of ['websocket', 'http'] as const) rows.push({ client, transport });

  for (const { client, transport } of rows) describe(`${client} over ${transport}`, () => {
    const token = `tok-${randomBytes(12).toString('hex')}`;
    const rowId = `${client}-${transport}`.replace(/[^a-z0-9-]/g, '-');
    const labels = { 'conformance.row': rowId };
    const manifest = (cfg: object) => collectorYaml('conf', labels, cfg);
    let bridge: BridgeProcess;
    let driver: ClientDriver;
    let agent: RowAgent | undefined;
    let version = 1;
    const live: RowAgent[] = [];

    const endpoint = () => (transport === 'http' ? bridge.opampHttpUrl : bridge.opampWsUrl);

    const goDriver = (restartOnOffer: boolean): ClientDriver => ({
      applyTimeoutMs: 15_000,
      async start({ uid }) {
        const a: GoAgent = await startGoAgent({
          endpoint: endpoint(),
          instanceUid: uid,
          attrs: labels,
          headers: bearerHeaders(token),
          heartbeatSeconds: HB,
          restartOnOffer,
          maxLifetime: '8m',
        });
        return {
          uid: a.instanceUid,
          async kill() {
            a.kill('SIGKILL');
            await a.exited;
          },
          async stop() {
            await a.stop();
          },
          describe: () => a.describe(),
          stats: () => {
            const n = (ev: string) => a.events.filter((e) => e.event === ev).length;
            return `offers=${n('connection_settings')} clientRestarts=${n('restarting')} fullStateRequests=${n('full_state_requested')} connects=${n('connected')}`;
          },
          go: a,
        } as RowAgent & { go: GoAgent };
      },
      async rejectSetup(ra) {
        await (ra as RowAgent & { go: GoAgent }).go.command({ cmd: 'mode', remoteConfig: 'fail', error: REJECT_MESSAGE });
        return { config: goodConfig(50), message: new RegExp(`^${REJECT_MESSAGE}$`) };
      },
      async rejectTeardown(ra) {
        await (ra as RowAgent & { go: GoAgent }).go.command({ cmd: 'mode', remoteConfig: 'apply' });
      },
    });

    const supervisorDriver = (): ClientDriver => {
      let n = 0;
      const dirs = new Map<string, string>();
      return {
        applyTimeoutMs: 60_000,
        async start({ uid, fresh }) {
          const instanceUid = uid ?? randomUUID();
          // Same uid: the same folder (persisted state, like a restarted host); new uid: a new one.
          let workDir = dirs.get(instanceUid);
          if (!workDir || fresh) {
            workDir = join(workRoot, `${rowId}-${++n}`);
            dirs.set(instanceUid, workDir);
          }
          const s: SupervisedCollector = await startSupervisedCollector({
            endpoint: endpoint(),
            instanceUid,
            attributes: labels,
            workDir,
            validateConfig: true,
            extraConfig: {
              server: { endpoint: endpoint(), headers: { Authorization: [`Bearer ${token}`] } },
              capabilities: { accepts_opamp_connection_settings: true },
            },
          });
          return {
            uid: s.instanceUid,
            async kill() {
              await s.kill();
            },
            async stop() {
              await s.stop();
            },
            describe: () => `supervisor ${s.instanceUid} pid ${s.pid}, output tail:\n${s.logs().slice(-5000)}`,
          };
        },
        async rejectSetup() {
          return {
            config: {
              ...goodConfig(60),
              exporters: { 'doesnotexist/x': {} },
              service: { pipelines: { logs: { receivers: ['nop'], processors: ['batch'], exporters: ['doesnotexist/x'] } } },
            },
            message: /doesnotexist/,
          };
        },
        async rejectTeardown() {},
      };
    };

    const startAgent = async (opts: { uid?: string; fresh?: boolean } = {}) => {
      const a = await driver.start(opts);
      live.push(a);
      return a;
    };

    const describeState = async (uids: string[]) => {
      const agents = await bridge.getAgents().catch((e: unknown) => `(${String(e)})`);
      const col = await bridge.getCollector('conf').catch((e: unknown) => `(${String(e)})`);
      const metrics = await bridge.metricsText().catch(() => '');
      return [
        `expected uids: ${uids.join(', ')}`,
        `agents: ${JSON.stringify(typeof agents === 'string' ? agents : agents.map((a) => ({ uid: a.instanceUid, transport: a.transport, connected: a.connected, labels: a.labels, remoteConfig: a.remoteConfig, verified: a.verified })))}`,
        `collector: ${JSON.stringify(typeof col === 'string' || !col ? col : { configHash: col.configHash, valid: col.valid, issues: col.issues, status: col.status })}`,
        `metrics: ${metrics.split('\n').filter((l) => /^fleetbridge_agents_(connected|config_status|recently_disconnected)/.test(l)).join('; ')}`,
        `bridge: ${bridge.describe().slice(-3000)}`,
        ...live.map((a) => a.describe().slice(-3000)),
      ].join('\n');
    };

    /**
     * The fleet's truth is exactly these agents, each connected, matched by `conf`, APPLIED and in
     * sync, and counted once: in the agent list, the Collector's status counts and the gauges.
     */
    const isConverged = async (uids: string[]): Promise<string | true> => {
      const agents = await bridge.getAgents();
      const mine = agents.filter((a) => a.labels['conformance.row'] === rowId && a.connected);
      const byUid = new Map<string, AgentView[]>();
      for (const a of mine) byUid.set(a.instanceUid, [...(byUid.get(a.instanceUid) ?? []), a]);
      if (mine.length !== uids.length) return `${mine.length} connected agents, want ${uids.length}`;
      for (const uid of uids) {
        const v = byUid.get(uid);
        if (!v || v.length !== 1) return `agent ${uid} listed ${v?.length ?? 0} times`;
        const a = v[0]!;
        if (a.transport !== transport) return `agent ${uid} on ${a.transport}`;
        if (!a.remoteConfig.collectors.includes('default/conf')) return `agent ${uid} not matched (collectors ${JSON.stringify(a.remoteConfig.collectors)})`;
        if (a.remoteConfig.status !== 'APPLIED' || !a.remoteConfig.inSync) return `agent ${uid} remote config ${JSON.stringify(a.remoteConfig)}`;
      }
      const col = await bridge.getCollector('conf');
      const n = uids.length;
      const st = col?.status;
      if (!st || st.matched !== n || st.connected !== n || st.applied !== n || st.failed !== 0) return `collector status ${JSON.stringify(st && { matched: st.matched, connected: st.connected, applied: st.applied, failed: st.failed })}`;
      const { [transport]: connected, applied } = agentGauges(await bridge.metricsText());
      if (connected !== n || applied !== n) return `gauges connected=${connected} applied=${applied}`;
      return true;
    };

    const waitConverged = async (uids: string[], timeoutMs: number, what: string) => {
      let last = '';
      await waitUntil(
        async () => {
          const r = await isConverged(uids);
          if (r !== true) last = r;
          return r === true;
        },
        { timeoutMs, intervalMs: 100, what, describe: async () => `last check: ${last}\n${await describeState(uids)}` },
      );
    };

    /** Nothing of this row is counted any more (the given uids are not connected). */
    const waitUncounted = async (goneUids: string[], remaining: string[], timeoutMs: number, what: string) => {
      let last = '';
      await waitUntil(
        async () => {
          const agents = await bridge.getAgents();
          const stillConnected = agents.filter((a) => goneUids.includes(a.instanceUid) && a.connected);
          const col = await bridge.getCollector('conf');
          const m = await bridge.metricsText();
          const n = remaining.length;
          const gauge = agentGauges(m)[transport];
          last = `still connected ${stillConnected.map((a) => a.instanceUid).join(',')}; status ${JSON.stringify(col && { matched: col.status.matched, connected: col.status.connected, applied: col.status.applied })}; gauge ${gauge}`;
          return stillConnected.length === 0 && col?.status.matched === n && col.status.connected === n && col.status.applied <= n && gauge === n;
        },
        { timeoutMs, intervalMs: 100, what, describe: async () => `last check: ${last}\n${await describeState(remaining)}` },
      );
    };

    beforeAll(async () => {
      bridge = await startBridgeProcess({
        heartbeatIntervalSeconds: HB,
        manifests: { ...bearerAuthManifests(token), 'conf.yaml': manifest(goodConfig(version)) },
      });
      cleanups.push(() => bridge.stop());
      driver = client === 'supervisor' ? supervisorDriver() : goDriver(client === 'opamp-go-restart-on-offer');
    }, 120_000);

    afterAll(async () => {
      await Promise.allSettled(live.map((a) => a.kill()));
      await bridge?.stop();
    }, 60_000);

    const needAgent = (): RowAgent => {
      if (!agent) throw new Error('no agent (an earlier scenario of this row failed)');
      return agent;
    };

    it('connect → configured by selector (APPLIED, matched, verified by its bearer token)', async () => {
      agent = await startAgent();
      await waitConverged([agent.uid], driver.applyTimeoutMs, `agent ${agent.uid} APPLIED and counted once`);
      const view = (await bridge.getAgent(agent.uid))!;
      expect(view.verified).toMatchObject({ method: 'bearerToken', credential: { key: 'token', current: true } });
      expect(view.remoteConfig.collectors).toEqual(['default/conf']);
      const col = (await bridge.getCollector('conf'))!;
      expect(col.status).toMatchObject({ matched: 1, connected: 1, applied: 1, failed: 0 });
    }, 120_000);

    it('edit → the new config is applied', async () => {
      const a = needAgent();
      const before = (await bridge.getAgent(a.uid))!.remoteConfig.desiredHash;
      version++;
      await bridge.writeManifest('conf.yaml', manifest(goodConfig(version)));
      await waitUntil(async () => (await bridge.getAgent(a.uid))?.remoteConfig.desiredHash !== before, { timeoutMs: 10_000, what: 'a new desired hash' });
      await waitConverged([a.uid], driver.applyTimeoutMs, 'the edited config APPLIED');
    }, 120_000);

    it("rejected config → FAILED with the agent's message", async () => {
      const a = needAgent();
      const { config, message } = await driver.rejectSetup(a);
      const before = (await bridge.getAgent(a.uid))!.remoteConfig.desiredHash;
      await bridge.writeManifest('conf.yaml', manifest(config));
      const failed = await waitUntil(
        async () => {
          const v = await bridge.getAgent(a.uid);
          return v && v.remoteConfig.desiredHash !== before && v.remoteConfig.reportedHash === v.remoteConfig.desiredHash && v.remoteConfig.status === 'FAILED' ? v : undefined;
        },
        { timeoutMs: driver.applyTimeoutMs, what: 'FAILED for the rejected config', describe: () => describeState([a.uid]) },
      );
      expect(failed.remoteConfig.errorMessage).toMatch(message);
      const col = (await bridge.getCollector('conf'))!;
      expect(col.status).toMatchObject({ matched: 1, failed: 1, applied: 0 });
      expect(col.status.failing).toEqual([expect.objectContaining({ instanceUid: a.uid, reason: 'ApplyFailed', message: failed.remoteConfig.errorMessage })]);

      // Recovery: the agent accepts again; a new config goes out and is applied.
      await driver.rejectTeardown(a);
      version++;
      await bridge.writeManifest('conf.yaml', manifest(goodConfig(version)));
      await waitConverged([a.uid], driver.applyTimeoutMs, 'a good config APPLIED after FAILED');
    }, 180_000);

    it('agent restart with the same uid → configured and counted once', async () => {
      const a = needAgent();
      await a.stop();
      live.splice(live.indexOf(a), 1);
      agent = undefined;
      agent = await startAgent({ uid: a.uid });
      expect(agent.uid).toBe(a.uid);
      await waitConverged([a.uid], driver.applyTimeoutMs, 'the restarted agent (same uid) APPLIED and counted once');
    }, 120_000);

    it('agent restart with a new uid → the new uid configured, the old one not counted', async () => {
      const a = needAgent();
      await a.stop();
      live.splice(live.indexOf(a), 1);
      agent = undefined;
      const b = await startAgent({ fresh: true });
      agent = b;
      expect(b.uid).not.toBe(a.uid);
      await waitConverged([b.uid], driver.applyTimeoutMs, 'the new uid APPLIED, counted once, the old one not counted');
      expect((await bridge.getAgent(a.uid))?.connected ?? false).toBe(false);
    }, 120_000);

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      it(`bridge restart (${signal}) with the agent connected → matched, APPLIED and counted once within 2 heartbeats + 5 s`, async () => {
        const a = needAgent();
        await waitConverged([a.uid], driver.applyTimeoutMs, 'converged before the restart');
        const t0 = Date.now();
        await bridge.restart(signal);
        const left = RECONVERGE_MS - (Date.now() - t0);
        await waitConverged([a.uid], Math.max(left, 1), `reconverged within ${RECONVERGE_MS} ms of the ${signal}`);
        const ms = Date.now() - t0;
        console.log(`reconverge client=${client} transport=${transport} signal=${signal} agents=1 ms=${ms}${a.stats ? ` (agent so far: ${a.stats()})` : ''}`);
        expect(ms).toBeLessThanOrEqual(RECONVERGE_MS);
      }, 120_000);
    }

    it('agent killed (SIGKILL) → no longer counted within the grace', async () => {
      const a = needAgent();
      await waitConverged([a.uid], driver.applyTimeoutMs, 'converged before the kill');
      const t0 = Date.now();
      await a.kill();
      live.splice(live.indexOf(a), 1);
      agent = undefined;
      await waitUncounted([a.uid], [], GRACE_MS, `the killed agent ${a.uid} uncounted within ${GRACE_MS} ms`);
      console.log(`uncounted client=${client} transport=${transport} ms=${Date.now() - t0}`);
    }, 60_000);
  });

  describe('1,200 opamp-go clients (1,000 over WebSocket in 4 processes, 200 over HTTP)', () => {
    /** A longer heartbeat for the fleet: 200 HTTP agents poll once per interval. */
    const FLEET_HB = 5;
    const FLEET_RECONVERGE_MS = 2 * FLEET_HB * 1000 + 5000;
    const token = `tok-${randomBytes(12).toString('hex')}`;
    const labels = { 'conformance.row': 'fleet' };
    let bridge: BridgeProcess;
    const fleets: { fleet: GoAgentFleet; transport: Transport }[] = [];

    beforeAll(async () => {
      bridge = await startBridgeProcess({
        heartbeatIntervalSeconds: FLEET_HB,
        logLevel: 'info',
        manifests: { ...bearerAuthManifests(token), 'fleet.yaml': collectorYaml('fleet', labels, goodConfig(1)) },
      });
      cleanups.push(() => bridge.stop());
    }, 120_000);

    afterAll(async () => {
      await Promise.allSettled(fleets.map((f) => f.fleet.stop({ timeoutMs: 10_000 })));
      await bridge?.stop();
    }, 60_000);

    const expected = () => ({
      websocket: fleets.filter((f) => f.transport === 'websocket').reduce((n, f) => n + f.fleet.instanceUids.length, 0),
      http: fleets.filter((f) => f.transport === 'http').reduce((n, f) => n + f.fleet.instanceUids.length, 0),
    });

    const fleetConverged = async (): Promise<string | true> => {
      const exp = expected();
      const total = exp.websocket + exp.http;
      const { websocket: ws, http, applied } = agentGauges(await bridge.metricsText());
      if (ws !== exp.websocket || http !== exp.http || applied !== total) return `gauges websocket=${ws} http=${http} applied=${applied}`;
      const col = await bridge.getCollector('fleet');
      const st = col?.status;
      if (!st || st.matched !== total || st.connected !== total || st.applied !== total || st.failed !== 0) return `collector status ${JSON.stringify(st && { matched: st.matched, connected: st.connected, applied: st.applied, failed: st.failed })}`;
      const agents = (await bridge.getAgents()).filter((a) => a.connected);
      const seen = new Map<string, number>();
      for (const a of agents) seen.set(a.instanceUid, (seen.get(a.instanceUid) ?? 0) + 1);
      for (const { fleet, transport } of fleets) {
        for (const uid of fleet.instanceUids) {
          if (seen.get(uid) !== 1) return `agent ${uid} (${transport}) listed ${seen.get(uid) ?? 0} times as connected`;
        }
      }
      const inSync = agents.filter((a) => a.remoteConfig.inSync && a.remoteConfig.status === 'APPLIED').length;
      if (inSync !== total || agents.length !== total) return `${inSync} in sync of ${agents.length} connected, want ${total}`;
      return true;
    };

    const waitFleet = async (timeoutMs: number, what: string) => {
      let last = '';
      await waitUntil(
        async () => {
          const r = await fleetConverged();
          if (r !== true) last = r;
          return r === true;
        },
        {
          timeoutMs,
          intervalMs: 250,
          what,
          describe: () => `last check: ${last}\nsummaries: ${fleets.map((f) => JSON.stringify(f.fleet.summary())).join('\n')}\nbridge: ${bridge.describe().slice(-3000)}`,
        },
      );
    };

    it('all connect, are matched, APPLIED and counted once; after a SIGKILL restart of the bridge, again within 2 heartbeats + 5 s', async () => {
      const t0 = Date.now();
      const starts: Promise<void>[] = [];
      for (let i = 0; i < 4; i++) {
        starts.push(
          startGoAgentFleet({ endpoint: bridge.opampWsUrl, agents: 250, indexOffset: i * 250, attrs: labels, headers: bearerHeaders(token), heartbeatSeconds: FLEET_HB, maxLifetime: '5m', summaryMs: 250 }).then((fleet) => {
            fleets.push({ fleet, transport: 'websocket' });
          }),
        );
      }
      starts.push(
        startGoAgentFleet({ endpoint: bridge.opampHttpUrl, agents: 200, indexOffset: 1000, attrs: labels, headers: bearerHeaders(token), heartbeatSeconds: FLEET_HB, maxLifetime: '5m', summaryMs: 250 }).then((fleet) => {
          fleets.push({ fleet, transport: 'http' });
        }),
      );
      await Promise.all(starts);
      expect(expected()).toEqual({ websocket: 1000, http: 200 });
      await waitFleet(60_000, 'all 1,200 agents APPLIED and counted once');
      console.log(`[conformance] 1,200 agents connected and APPLIED in ${Date.now() - t0} ms`);
      const hash = (await bridge.getCollector('fleet'))!.configHash;
      // The agents' own word: their summaries come every 250 ms, so the latest may predate the last APPLIED.
      for (const { fleet } of fleets) await fleet.waitForSummary((x) => x.status.APPLIED === fleet.instanceUids.length, { timeoutMs: 5000 });

      const t1 = Date.now();
      await bridge.restart('SIGKILL');
      const restarted = Date.now() - t1;
      await waitFleet(Math.max(FLEET_RECONVERGE_MS - restarted, 1), `all 1,200 agents reconverged within ${FLEET_RECONVERGE_MS} ms of the SIGKILL`);
      const ms = Date.now() - t1;
      console.log(`reconverge client=opamp-go transport=websocket+http signal=SIGKILL agents=1200 ms=${ms} (bridge ready after ${restarted} ms)`);
      expect(ms).toBeLessThanOrEqual(FLEET_RECONVERGE_MS);
      expect((await bridge.getCollector('fleet'))!.configHash).toBe(hash);
      // No agent was pushed a different config; each still runs the one it applied.
      for (const { fleet } of fleets) {
        const s = await fleet.waitForSummary((x) => x.status.APPLIED === fleet.instanceUids.length, { timeoutMs: 5000 });
        expect(Object.values(s.appliedHashes)).toEqual([fleet.instanceUids.length]);
      }
    }, 150_000);
  });
});
