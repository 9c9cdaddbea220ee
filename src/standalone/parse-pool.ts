/**
 * Parses manifest texts in a worker thread, bounded in time and memory (parse-worker.ts).
 */
import { Worker } from 'node:worker_threads';
import { parseManifestText, type ParsedManifest } from './parse.js';

/**
 * Parses files one at a time, in a worker thread bounded in time and heap (a timeout or running out
 * of memory stops the worker and reports the file), or in this thread when the worker's build is not
 * there (tests run from the sources).
 */
export class ManifestParser {
  #worker: Worker | null = null;
  #next = 1;

  constructor(
    readonly url: URL | null,
    readonly limits: { readonly parserHeapMb: number; readonly parseTimeoutMs: number },
  ) {}

  async parse(text: string, source: string): Promise<ParsedManifest> {
    if (!this.url) return parseManifestText(text, source);
    const w = (this.#worker ??= this.#spawn(this.url));
    const id = this.#next++;
    return new Promise<ParsedManifest>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        w.off('message', onMessage);
        w.off('error', onError);
        w.off('exit', onExit);
      };
      const onMessage = (m: { id: number; result?: ParsedManifest; error?: string }) => {
        if (m.id !== id) return;
        done();
        if (m.error !== undefined) reject(new Error(m.error));
        else resolve(m.result!);
      };
      const onError = (err: Error & { code?: string }) => {
        done();
        this.#drop(w);
        reject(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? new Error(`it needs more than ${this.limits.parserHeapMb} MB of memory`) : err);
      };
      const onExit = (code: number) => {
        done();
        this.#drop(w);
        reject(new Error(`the parser stopped (exit code ${code})`));
      };
      const timer = setTimeout(() => {
        done();
        this.#drop(w);
        reject(new Error(`parsing took longer than ${this.limits.parseTimeoutMs / 1000} s`));
      }, this.limits.parseTimeoutMs);
      w.on('message', onMessage);
      w.once('error', onError);
      w.once('exit', onExit);
      w.postMessage({ id, text, source });
    });
  }

  #spawn(url: URL): Worker {
    // No execArgv of this process (e.g. --import hooks that read stdin): the parser needs none.
    const w = new Worker(url, { execArgv: [], resourceLimits: { maxOldGenerationSizeMb: this.limits.parserHeapMb, maxYoungGenerationSizeMb: 64 } });
    w.unref();
    return w;
  }

  #drop(w: Worker): void {
    if (this.#worker === w) this.#worker = null;
    void w.terminate();
  }

  async release(): Promise<void> {
    const w = this.#worker;
    this.#worker = null;
    if (w) await w.terminate();
  }
}
