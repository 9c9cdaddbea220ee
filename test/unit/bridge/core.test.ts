/**
 * The bridge core without sockets: built from a manifest folder (no port is bound until listen()),
 * and what an OpAMPBridge edit takes (src/bridge/settings.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { buildStandalone } from '../../../src/bridge/standalone.js';
import { settingsChanges } from '../../../src/bridge/settings.js';
import { OpAMPBridgeSpec } from '../../../src/schema/v1alpha1/index.js';

const spec = (s: object) => OpAMPBridgeSpec.parse({ auth: { mode: 'none' }, ...s });

describe('bridge core', () => {
  it('builds from a folder without binding a port, with the Collectors in effect', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fb-core-'));
    try {
      await writeFile(join(dir, 'c.yaml'), 'apiVersion: fleetbridge.dev/v1alpha1\nkind: Collector\nmetadata: { name: all }\nspec:\n  selector: {}\n  config: { exporters: { debug: {} } }\n');
      const built = await buildStandalone({ manifestsDir: dir, logger: pino({ level: 'silent' }) });
      try {
        expect(built.core.listening).toBeNull();
        const desired = built.core.desired.forAgent('default', {});
        expect(desired?.collectors).toEqual(['default/all']);
      } finally {
        await built.manifests.close();
        await built.core.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('applies everything live but a new port and TLS turned on or off', () => {
    const base = spec({ heartbeatIntervalSeconds: 30 });
    expect(settingsChanges(base, base)).toMatchObject({ none: true, restartRequired: [] });
    expect(settingsChanges(base, spec({ heartbeatIntervalSeconds: 5 }))).toMatchObject({ none: false, heartbeat: true, fleet: true, restartRequired: [] });
    expect(settingsChanges(base, spec({ heartbeatIntervalSeconds: 30, endpoint: { port: 4999 } }))).toMatchObject({ restartRequired: ['endpoint.port'] });
    expect(settingsChanges(base, spec({ heartbeatIntervalSeconds: 30, tls: { secretName: 'x' } }))).toMatchObject({ restartRequired: ['tls'] });
    expect(settingsChanges(spec({ tls: { secretName: 'x' } }), spec({ tls: { secretName: 'y' } }))).toMatchObject({ tlsSecrets: true, restartRequired: [] });
    expect(settingsChanges(base, spec({ heartbeatIntervalSeconds: 30, auth: { mode: 'bearerToken', bearerToken: { secretName: 't' } } }))).toMatchObject({ auth: true, restartRequired: [] });
    expect(settingsChanges(base, spec({ heartbeatIntervalSeconds: 30, transports: ['http'] }))).toMatchObject({ endpoint: true });
    expect(settingsChanges(base, spec({ heartbeatIntervalSeconds: 30, ownTelemetry: { bridgeReceivesMetrics: false } }))).toMatchObject({ offers: true });
  });
});
