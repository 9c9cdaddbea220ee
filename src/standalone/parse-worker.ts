/**
 * Worker thread that parses manifest files (parse.ts) for the folder scan, so that parsing a large
 * or hostile file never stalls the server's event loop. Started by manifests.ts from the build; one
 * request at a time: { id, text, source } → { id, result } or { id, error }.
 */
import { parentPort } from 'node:worker_threads';
import { parseManifestText } from './parse.js';

parentPort?.on('message', (m: { id: number; text: string; source: string }) => {
  try {
    parentPort!.postMessage({ id: m.id, result: parseManifestText(m.text, m.source) });
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
  }
});
