/**
 * A real Kubernetes control plane for the integration tests: etcd + kube-apiserver on loopback,
 * started the way controller-runtime's envtest does (see docs/adr/0002-envtest-from-go-modules.md).
 * No scheduler, controller-manager or kubelet: Pods are stored but never run, namespaces never
 * finish deleting, nothing garbage-collects.
 *
 * ```ts
 * const cp = await startControlPlane();               // builds the binaries first if needed
 * const kc = new KubeConfig(); kc.loadFromString(cp.kubeconfigYaml);
 * const ns = await createTestNamespace(cp);
 * await cp.restartApiServer();                        // same port, same etcd, same keys
 * await cp.stop();                                    // kills both, removes the temp dir
 * ```
 *
 * Lifetimes: each process runs in its own process group. They are SIGKILLed (and the temp dir
 * removed) when this process exits normally ('exit' handler), and also when it dies any other way
 * (SIGKILL included): a tiny `sh` watchdog holds a pipe from us and cleans up when the pipe closes
 * (../process-group.ts, shared with the OpenTelemetry harness).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Agent } from 'undici';
import { ensureControlPlaneBinaries } from './binaries.js';
import { spawnGroup, trackDir, untrackDir, type GroupProcess } from '../process-group.js';
import { ecKeyPem, issue, selfSignedCa, writeOpensslConfig } from '../tls.js';

export interface ControlPlaneOptions {
  /** Default: `await ensureControlPlaneBinaries()`. */
  binaries?: { apiserver: string; etcd: string };
  /** Bound on each wait for readiness (etcd /health; apiserver /readyz + namespace `default`). Default 60 s. */
  startTimeoutMs?: number;
  /** SIGTERM, then SIGKILL after this long. Default 20 s (envtest's). */
  stopTimeoutMs?: number;
  /**
   * 'openssl' (default when `openssl` is on PATH): our own CA signs the serving cert (SANs localhost, 127.0.0.1).
   * 'self-signed': kube-apiserver generates its own pair in --cert-dir; we read its CA back.
   */
  servingCerts?: 'openssl' | 'self-signed';
  extraApiServerArgs?: string[];
  extraEtcdArgs?: string[];
  /** Keep the temp dir (logs, data) after stop() for debugging. */
  keepDir?: boolean;
}

/** How to reach the API server: everything a client needs, and nothing that controls processes. */
export interface KubeConnection {
  /** https://127.0.0.1:PORT */
  server: string;
  /** Bearer token of user `fleetbridge-admin` in group `system:masters` (static token file). */
  token: string;
  /** PEM of the CA that signed the serving certificate. */
  caCert: string;
  kubeconfigPath: string;
  /** Cluster, user and context all named `fleetbridge-test`. */
  kubeconfigYaml: string;
  /** http://127.0.0.1:PORT of etcd (plain HTTP, loopback only). */
  etcdUrl: string;
}

export interface ControlPlaneTimings {
  /** Temp dir, keys, token file and (openssl) certificates. */
  setupMs: number;
  /** etcd spawn → /health OK. */
  etcdReadyMs: number;
  /** Last kube-apiserver spawn → /readyz OK. */
  apiServerReadyMs: number;
  /** Last kube-apiserver spawn → namespace `default` readable. */
  apiServerUsableMs: number;
}

export interface ControlPlane extends KubeConnection {
  /** Temp folder: pki/, etcd data, kubeconfig, *.log. Removed by stop() unless keepDir. */
  dir: string;
  /**
   * An undici Agent that trusts `caCert`, for Node's global fetch:
   * `fetch(`${cp.server}/version`, { headers: { authorization: `Bearer ${cp.token}` }, dispatcher: cp.dispatcher } as RequestInit)`.
   * Closed by stop().
   */
  readonly dispatcher: Agent;
  readonly etcdPid: number | undefined;
  readonly apiServerPid: number | undefined;
  readonly timings: ControlPlaneTimings;
  /** SIGTERM kube-apiserver and wait for it to exit (SIGKILL after stopTimeoutMs). etcd keeps running. */
  stopApiServer(): Promise<void>;
  /** Start kube-apiserver again with the same flags, port, certs and keys; resolves when it is usable. */
  startApiServer(): Promise<void>;
  /** stopApiServer() then startApiServer(): an API server outage of (about) the restart time. */
  restartApiServer(): Promise<void>;
  /** Stops both processes and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** The last `chars` characters of the apiserver's (or etcd's) stderr, all runs. */
  logTail(which?: 'apiserver' | 'etcd', chars?: number): string;
  /** Resident set size in bytes of each running process (Linux /proc), undefined when not running. */
  rss(): { apiserver: number | undefined; etcd: number | undefined };
}

const ADMIN_USER = 'fleetbridge-admin';
const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const NAME = 'fleetbridge-test';

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

/** A free TCP port on 127.0.0.1 (bind to 0 and close, like envtest; callers retry on EADDRINUSE). */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? ok(addr.port) : fail(new Error('no port'))));
    });
  });
}

/** Linux: does the kernel have a default route? kube-apiserver derives its advertise address from it. */
function hasDefaultRoute(): boolean {
  try {
    const v4 = readFileSync('/proc/net/route', 'utf8').split('\n').slice(1);
    if (v4.some((l) => l.split(/\s+/)[1] === '00000000')) return true;
    const v6 = readFileSync('/proc/net/ipv6_route', 'utf8').split('\n');
    return v6.some((l) => l.startsWith('00000000000000000000000000000000 00') && !l.trim().endsWith(' lo'));
  } catch {
    return true; // not Linux or no /proc: let kube-apiserver decide
  }
}

function tail(file: string, chars: number): string {
  try {
    const s = readFileSync(file, 'utf8');
    return s.length > chars ? `…${s.slice(-chars)}` : s;
  } catch {
    return '';
  }
}

/** CA + serving cert (CN localhost; SANs localhost, 127.0.0.1) signed with openssl; keys from Node. */
async function writeServingCerts(pki: string): Promise<string> {
  await writeOpensslConfig(pki);
  const ca = await selfSignedCa(pki, 'ca', '/O=fleetbridge/CN=fleetbridge-test-ca', 7);
  await issue(pki, 'apiserver', '/CN=localhost', 'v3_srv', 'ca', 7);
  return ca.cert;
}

/** kube-apiserver's self-signed pair: apiserver.crt holds the leaf, then the CA that signed it. */
async function readSelfSignedCa(pki: string, deadline: number, exited: () => boolean): Promise<string> {
  const crt = join(pki, 'apiserver.crt');
  while (Date.now() < deadline && !exited()) {
    const pem = await readFile(crt, 'utf8').catch(() => '');
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    if (blocks.length > 0 && pem.trimEnd().endsWith('-----END CERTIFICATE-----')) return blocks[blocks.length - 1]!;
    await sleep(50);
  }
  throw new Error(`kube-apiserver wrote no ${crt}`);
}

export interface KubeResponse<T = unknown> {
  status: number;
  text: string;
  /** Parsed JSON, or undefined when the body is not JSON. */
  body: T;
}

/**
 * One HTTPS request to the API server with the admin token (or `opts.token`), verifying the serving
 * cert against the CA. For tests that want no client library, and for the harness's own waits.
 */
export function kubeRequest<T = any>(
  conn: Pick<KubeConnection, 'server' | 'token' | 'caCert'>,
  method: string,
  path: string,
  body?: unknown,
  opts: { timeoutMs?: number; contentType?: string; token?: string } = {},
): Promise<KubeResponse<T>> {
  const url = new URL(path, conn.server);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((ok, fail) => {
    const req = httpsRequest(
      url,
      {
        method,
        ca: conn.caCert,
        agent: false,
        timeout: opts.timeoutMs ?? 10_000,
        headers: {
          authorization: `Bearer ${opts.token ?? conn.token}`,
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': opts.contentType ?? 'application/json', 'content-length': Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          ok({ status: res.statusCode ?? 0, text, body: parsed as T });
        });
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url.href} timed out`)));
    req.on('error', fail);
    req.end(payload);
  });
}

function httpGetStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((ok) => {
    const req = httpRequest(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.on('end', () => ok(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => ok(0));
    req.end();
  });
}

function kubeconfigYaml(server: string, caCert: string, token: string): string {
  const q = JSON.stringify; // JSON strings are valid YAML scalars
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${NAME}`,
    '  cluster:',
    `    server: ${q(server)}`,
    `    certificate-authority-data: ${q(Buffer.from(caCert).toString('base64'))}`,
    'users:',
    `- name: ${NAME}`,
    '  user:',
    `    token: ${q(token)}`,
    'contexts:',
    `- name: ${NAME}`,
    '  context:',
    `    cluster: ${NAME}`,
    `    user: ${NAME}`,
    `current-context: ${NAME}`,
    '',
  ].join('\n');
}

function rssOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

type Proc = GroupProcess;

/** Own process group (see ../process-group.ts), output straight into the log file. */
function startProcess(binary: string, args: string[], logFile: string): Proc {
  const p = spawnGroup(binary, args, { outputTo: 'file', logFile });
  if (p.pid < 0) throw new Error(`could not start ${binary}`);
  return p;
}

/** SIGTERM, then SIGKILL of the group after timeoutMs. */
async function stopProcess(p: Proc | undefined, timeoutMs: number): Promise<void> {
  await p?.stop('SIGTERM', timeoutMs);
}

// ---------------------------------------------------------------------------------------------

/**
 * Starts etcd and kube-apiserver on free loopback ports in a fresh temp dir and resolves once the
 * API server answers /readyz and namespace `default` exists. Throws (after cleaning up) with the
 * process's log tail when a process exits early or readiness is not reached in time.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 20_000;
  const bins = opts.binaries ?? (await ensureControlPlaneBinaries());
  const servingCerts = opts.servingCerts ?? (onPath('openssl') ? 'openssl' : 'self-signed');

  const dir = await mkdtemp(join(tmpdir(), 'fleetbridge-cp-'));
  trackDir(dir);
  const pki = join(dir, 'pki');
  await mkdir(pki, { mode: 0o700 });
  const etcdLog = join(dir, 'etcd.log');
  const apiLog = join(dir, 'kube-apiserver.log');

  let etcd: Proc | undefined;
  let api: Proc | undefined;
  let stopped = false;

  const cleanup = async (): Promise<void> => {
    await stopProcess(api, stopTimeoutMs);
    await stopProcess(etcd, stopTimeoutMs);
    if (!opts.keepDir) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    untrackDir(dir);
  };

  try {
    const tSetup = Date.now();
    // --- credentials
    const token = randomBytes(32).toString('hex');
    await writeFile(join(pki, 'tokens.csv'), `${token},${ADMIN_USER},${ADMIN_USER}-uid,"system:masters"\n`, { mode: 0o600 });
    const sa = ecKeyPem();
    await writeFile(join(pki, 'sa.key'), sa.privateKey, { mode: 0o600 });
    await writeFile(join(pki, 'sa.pub'), sa.publicKey);
    let caCert = servingCerts === 'openssl' ? await writeServingCerts(pki) : '';
    const setupMs = Date.now() - tSetup;

    // --- etcd (retry on a port taken between picking and binding)
    let etcdUrl = '';
    let etcdReadyMs = 0;
    for (let attempt = 1; ; attempt++) {
      const [cp, pp] = [await freePort(), await freePort()];
      etcdUrl = `http://127.0.0.1:${cp}`;
      const peer = `http://127.0.0.1:${pp}`;
      const t0 = Date.now();
      etcd = startProcess(
        bins.etcd,
        [
          '--name=fleetbridge',
          `--data-dir=${join(dir, 'etcd')}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peer}`,
          `--initial-advertise-peer-urls=${peer}`,
          `--initial-cluster=fleetbridge=${peer}`,
          '--unsafe-no-fsync=true',
          '--log-level=warn',
          ...(opts.extraEtcdArgs ?? []),
        ],
        etcdLog,
      );
      const deadline = Date.now() + startTimeoutMs;
      while (!etcd.hasExited() && Date.now() < deadline) {
        if ((await httpGetStatus(`${etcdUrl}/health`, 2000)) === 200) break;
        await sleep(100);
      }
      if (!etcd.hasExited() && Date.now() < deadline) {
        etcdReadyMs = Date.now() - t0;
        break;
      }
      const log = tail(etcdLog, 4000);
      await stopProcess(etcd, 2000);
      if (attempt < 3 && /address already in use/.test(log)) continue;
      throw new Error(`etcd ${etcd.hasExited() ? 'exited' : `was not healthy within ${startTimeoutMs} ms`}; etcd.log tail:\n${log}`);
    }

    // --- kube-apiserver
    let port = await freePort();
    const apiArgs = (): string[] => [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      `--cert-dir=${pki}`,
      ...(servingCerts === 'openssl' ? [`--tls-cert-file=${join(pki, 'apiserver.crt')}`, `--tls-private-key-file=${join(pki, 'apiserver.key')}`] : []),
      '--service-cluster-ip-range=10.0.0.0/24',
      `--service-account-issuer=${SA_ISSUER}`,
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      `--token-auth-file=${join(pki, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      '--disable-admission-plugins=ServiceAccount',
      '--allow-privileged=true',
      // Without a default route kube-apiserver cannot pick an advertise address and exits; any
      // non-loopback address works since nothing connects to it (loopback is refused for Endpoints).
      ...(hasDefaultRoute() ? [] : ['--advertise-address=192.0.2.10', '--endpoint-reconciler-type=none']),
      ...(opts.extraApiServerArgs ?? []),
    ];
    const timings: ControlPlaneTimings = { setupMs, etcdReadyMs, apiServerReadyMs: 0, apiServerUsableMs: 0 };
    const conn = (): Pick<KubeConnection, 'server' | 'token' | 'caCert'> => ({ server: `https://127.0.0.1:${port}`, token, caCert });

    /** One start of kube-apiserver; on failure it is stopped and the error carries its log tail. */
    const launchApiServer = async (): Promise<void> => {
      const logStart = tail(apiLog, Number.MAX_SAFE_INTEGER).length;
      const t0 = Date.now();
      const deadline = t0 + startTimeoutMs;
      const p = startProcess(bins.apiserver, apiArgs(), apiLog);
      api = p;
      const fail = async (why: string): Promise<never> => {
        await stopProcess(p, 2000);
        const log = tail(apiLog, Number.MAX_SAFE_INTEGER).slice(logStart);
        throw Object.assign(new Error(`kube-apiserver ${why}; log tail:\n${log.slice(-6000)}`), { apiLog: log });
      };
      try {
        if (!caCert) caCert = await readSelfSignedCa(pki, deadline, () => p.hasExited());
      } catch (err) {
        return fail((err as Error).message);
      }
      let last = '';
      let phase: 'readyz' | 'default' = 'readyz';
      while (Date.now() < deadline) {
        if (p.hasExited()) return fail(`exited during startup (${phase})`);
        try {
          if (phase === 'readyz') {
            const r = await kubeRequest(conn(), 'GET', '/readyz', undefined, { timeoutMs: 5000 });
            last = `/readyz ${r.status}: ${r.text.slice(0, 300)}`;
            if (r.status === 200 && r.text.trim() === 'ok') {
              timings.apiServerReadyMs = Date.now() - t0;
              phase = 'default';
              continue;
            }
          } else {
            const r = await kubeRequest(conn(), 'GET', '/api/v1/namespaces/default', undefined, { timeoutMs: 5000 });
            last = `namespace default ${r.status}: ${r.text.slice(0, 300)}`;
            if (r.status === 200) {
              timings.apiServerUsableMs = Date.now() - t0;
              return;
            }
          }
        } catch (err) {
          last = (err as Error).message;
        }
        await sleep(100);
      }
      const verbose = await kubeRequest(conn(), 'GET', '/readyz?verbose', undefined, { timeoutMs: 3000 }).then(
        (r) => r.text,
        () => '',
      );
      return fail(`was not usable within ${startTimeoutMs} ms (last: ${last})\n${verbose}`);
    };

    for (let attempt = 1; ; attempt++) {
      try {
        await launchApiServer();
        break;
      } catch (err) {
        const log = (err as { apiLog?: string }).apiLog ?? '';
        if (attempt < 3 && /address already in use/.test(log)) {
          port = await freePort();
          continue;
        }
        throw err;
      }
    }

    const server = `https://127.0.0.1:${port}`;
    const yaml = kubeconfigYaml(server, caCert, token);
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, yaml, { mode: 0o600 });

    let apiLock: Promise<void> = Promise.resolve();
    const serial = (fn: () => Promise<void>): Promise<void> => {
      const next = apiLock.then(fn, fn);
      apiLock = next.catch(() => {});
      return next;
    };

    const dispatcher = new Agent({ connect: { ca: caCert } });

    const cp: ControlPlane = {
      dir,
      dispatcher,
      server,
      token,
      caCert,
      kubeconfigPath,
      kubeconfigYaml: yaml,
      etcdUrl,
      get etcdPid() {
        return etcd && !etcd.hasExited() ? etcd.pid : undefined;
      },
      get apiServerPid() {
        return api && !api.hasExited() ? api.pid : undefined;
      },
      timings,
      stopApiServer: () =>
        serial(async () => {
          await stopProcess(api, stopTimeoutMs);
        }),
      startApiServer: () =>
        serial(async () => {
          if (stopped) throw new Error('control plane was stopped');
          if (api && !api.hasExited()) return;
          await launchApiServer();
        }),
      async restartApiServer() {
        await cp.stopApiServer();
        await cp.startApiServer();
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await apiLock;
        await dispatcher.destroy().catch(() => {});
        await cleanup();
      },
      logTail: (which = 'apiserver', chars = 8000) => tail(which === 'etcd' ? etcdLog : apiLog, chars),
      rss: () => ({ apiserver: rssOf(cp.apiServerPid), etcd: rssOf(cp.etcdPid) }),
    };
    return cp;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Connection details only (no process control), e.g. to hand to another process. */
export function connectionOf(cp: KubeConnection): KubeConnection {
  const { server, token, caCert, kubeconfigPath, kubeconfigYaml, etcdUrl } = cp;
  return { server, token, caCert, kubeconfigPath, kubeconfigYaml, etcdUrl };
}

/**
 * Creates a uniquely named namespace (`<prefix>-<random>`) labelled `fleetbridge.dev/test=true`
 * and resolves with its name. Without a namespace controller a deleted namespace never goes away,
 * so tests use a fresh one each and never wait for deletion.
 */
export async function createTestNamespace(conn: Pick<KubeConnection, 'server' | 'token' | 'caCert'>, prefix = 'test'): Promise<string> {
  const clean = prefix.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 50) || 'test';
  const name = `${clean}-${randomBytes(4).toString('hex')}`;
  const r = await kubeRequest(conn, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'fleetbridge.dev/test': 'true' } },
  });
  if (r.status !== 201) throw new Error(`creating namespace ${name} failed: ${r.status} ${r.text}`);
  return name;
}
