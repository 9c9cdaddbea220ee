/**
 * A listener that cannot bind its address ends start-up with one line naming the address, the
 * reason and what to change (a flag, or an OpAMPBridge field), instead of Node's bare
 * `listen EADDRINUSE: address already in use :::8080`.
 */

const REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'the address is not available on this host',
};

/** Thrown by listenOrExplain; `message` is the whole explanation. */
export class ListenError extends Error {
  readonly code: string;
  constructor(
    /** What listens: "OpAMP", "admin API". */
    readonly what: string,
    readonly host: string,
    readonly port: number,
    code: string | undefined,
    /** What to change, e.g. "--http-port". */
    readonly change: string,
    cause: unknown,
  ) {
    const reason = (code && REASONS[code]) ?? (cause instanceof Error ? cause.message : String(cause));
    const addr = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    // A port the host cannot have (EADDRNOTAVAIL) is fixed with --host rather than the port.
    const fix = code === 'EADDRNOTAVAIL' ? `change --host (or ${change})` : `change ${change}`;
    super(`cannot listen on ${addr} for the ${what} endpoint: ${reason}${code ? ` (${code})` : ''}; ${fix}`, { cause });
    this.name = 'ListenError';
    this.code = code ?? 'ELISTEN';
  }
}

/** Runs `listen`, turning its failure into a ListenError that names the address and what to change. */
export async function listenOrExplain<T>(listen: () => Promise<T>, what: { name: string; host: string; port: number; change: string }): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new ListenError(what.name, what.host, what.port, typeof code === 'string' ? code : undefined, what.change, err);
  }
}

/**
 * Awaits `p` while holding the event loop open: cleanup on a failed start-up may wait on unref'd
 * timers only (a server's close grace period), and Node would otherwise exit with code 0 before
 * the caller can report the failure.
 */
export async function keepingAlive<T>(p: Promise<T>): Promise<T> {
  const hold = setInterval(() => {}, 1 << 30);
  try {
    return await p;
  } finally {
    clearInterval(hold);
  }
}
