// Waiting for typing to pause before asking the engine. Each wait supersedes the previous one, and
// an aborted wait ends at once, so a burst of keystrokes costs one request. No vscode import.

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export class Debouncer {
  private _pending: { handle: unknown; resolve: (go: boolean) => void } | undefined;

  /** `delayMs` is read at each wait, so a changed setting applies to the next keystroke. */
  constructor(
    private readonly _delayMs: () => number,
    private readonly _timers: Timers = realTimers,
  ) {}

  /** Resolves true once `delayMs` has passed with no newer wait, false if superseded or aborted first. */
  wait(signal?: AbortSignal): Promise<boolean> {
    this._settle(false);
    if (signal?.aborted) return Promise.resolve(false);
    const ms = Math.max(0, this._delayMs());
    return new Promise<boolean>((resolve) => {
      const onAbort = () => this._settle(false, pending);
      const done = (go: boolean) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(go);
      };
      const pending = { handle: undefined as unknown, resolve: done };
      pending.handle = this._timers.setTimeout(() => this._settle(true, pending), ms);
      this._pending = pending;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Ends the pending wait (with `go`); when `only` is given, only if it is still that one. */
  private _settle(go: boolean, only?: NonNullable<Debouncer['_pending']>): void {
    const p = this._pending;
    if (!p || (only && p !== only)) return;
    this._pending = undefined;
    this._timers.clearTimeout(p.handle);
    p.resolve(go);
  }

  dispose(): void {
    this._settle(false);
  }
}
