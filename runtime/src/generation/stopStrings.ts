// Finds stop strings in streamed text. A stop string may span several tokens or end inside one,
// so matching runs over decoded text, keeping only the tail that could still begin a match.

export class StopStringMatcher {
  private _tail = '';
  private _consumed = 0; // characters of the stream before `_tail`
  private readonly _keep: number;

  constructor(private readonly _stops: readonly string[]) {
    this._keep = Math.max(0, ..._stops.map((s) => s.length - 1));
  }

  get active(): boolean {
    return this._stops.length > 0;
  }

  /**
   * Feeds the next chunk of decoded text. Returns the stream offset just past the earliest stop
   * string that is now complete, or -1.
   */
  push(chunk: string): number {
    if (!this.active || chunk === '') return -1;
    const text = this._tail + chunk;
    let end = -1;
    for (const stop of this._stops) {
      if (stop === '') continue;
      const at = text.indexOf(stop);
      if (at >= 0 && (end < 0 || at + stop.length < end)) end = at + stop.length;
    }
    if (end >= 0) return this._consumed + end;
    const cut = Math.max(0, text.length - this._keep);
    this._consumed += cut;
    this._tail = text.slice(cut);
    return -1;
  }
}
