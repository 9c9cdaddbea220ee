/**
 * Rate-limited logging for lines a peer can cause (refusals, bad frames): at most `perWindow` lines
 * per key per `windowMs`; the next line after a quiet period says how many were left out.
 */
import { performance } from 'node:perf_hooks';

export class LogBudget {
  readonly #windows = new Map<string, { start: number; lines: number; suppressed: number }>();
  constructor(
    private readonly perWindow: number,
    private readonly windowMs: number,
    private readonly now: () => number = () => performance.now(),
    /** Keys kept at most; beyond it the windows start over (keys are codes, not peer input). */
    private readonly maxKeys = 100,
  ) {}

  /** The number of lines left out since the last one, when this one may be logged; false otherwise. */
  take(key: string): number | false {
    const now = this.now();
    let w = this.#windows.get(key);
    if (!w) {
      if (this.#windows.size >= this.maxKeys) this.#windows.clear();
      this.#windows.set(key, (w = { start: now, lines: 0, suppressed: 0 }));
    }
    if (now - w.start >= this.windowMs) {
      w.start = now;
      w.lines = 0;
    }
    if (w.lines >= this.perWindow) {
      w.suppressed++;
      return false;
    }
    w.lines++;
    const suppressed = w.suppressed;
    w.suppressed = 0;
    return suppressed;
  }
}
