// Waiting for typing to pause before asking the engine. Each wait supersedes the previous one, and
// an aborted wait ends at once, so a burst of keystrokes costs one request. How long to wait
// depends on where the cursor is: typing pauses at the end of a word far more often than inside
// one, and that is where a completion is wanted. No vscode import (the editor bench uses it too).

export interface DebounceSettings {
  /** After a keystroke inside a word. */
  debounceMs: number;
  /** After a keystroke that ends a word: whitespace, punctuation, or the start of a line. */
  wordEndDebounceMs: number;
}

/** True when the text before the cursor does not end inside a word (letters, digits, marks, `_`, `$`). */
export function endsWord(textBeforeCursor: string): boolean {
  const last = [...textBeforeCursor.slice(-2)].at(-1); // the last code point, not half of a surrogate pair
  return last === undefined || !/[\p{L}\p{N}\p{M}_$]/u.test(last);
}

/** The wait before asking the engine, for the text before the cursor. */
export function debounceFor(textBeforeCursor: string, s: DebounceSettings): number {
  return endsWord(textBeforeCursor) ? s.wordEndDebounceMs : s.debounceMs;
}

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

  constructor(private readonly _timers: Timers = realTimers) {}

  /** Resolves true once `delayMs` has passed with no newer wait, false if superseded or aborted first. */
  wait(delayMs: number, signal?: AbortSignal): Promise<boolean> {
    this._settle(false);
    if (signal?.aborted) return Promise.resolve(false);
    const ms = Math.max(0, delayMs);
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
