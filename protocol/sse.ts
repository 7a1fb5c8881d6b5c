// Server-Sent Events both ways: the encoder `opt serve` writes its streams with, and an incremental
// parser for the client, which must cope with any chunking the network produces (an event or a
// line split anywhere, even between CR and LF, several events in one chunk, comments, retry hints).

/** One `data:` event as a complete SSE frame (JSON never contains a raw newline, so one line suffices). */
export function sseData(payload: unknown): string {
  return `data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`;
}

export interface SseEvent {
  /** The `event:` field, 'message' when absent. */
  event: string;
  /** The `data:` lines joined with '\n'. */
  data: string;
  id?: string;
}

/**
 * Feed it decoded text (use a streaming TextDecoder so multi-byte characters survive chunking);
 * it returns the events completed so far. Follows the WHATWG event-stream parsing rules.
 */
export class SseParser {
  private _buffer = '';
  private _skipLeadingLf = false; // the previous chunk ended with CR, which may be half of a CRLF
  private _data: string[] = [];
  private _event = '';
  private _id: string | undefined;

  push(chunk: string): SseEvent[] {
    const events: SseEvent[] = [];
    let text = this._buffer + chunk;
    if (this._skipLeadingLf && text.startsWith('\n')) text = text.slice(1);
    this._skipLeadingLf = false;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this._line(text.slice(start, i), events);
      if (c === 13) {
        if (i + 1 === text.length) this._skipLeadingLf = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this._buffer = text.slice(start);
    return events;
  }

  /** At end of stream: an event without its terminating blank line is dropped, as the spec says. */
  end(): SseEvent[] {
    this._buffer = '';
    this._data = [];
    this._event = '';
    return [];
  }

  private _line(line: string, events: SseEvent[]): void {
    if (line === '') {
      if (this._data.length > 0)
        events.push({ event: this._event || 'message', data: this._data.join('\n'), ...(this._id !== undefined ? { id: this._id } : {}) });
      this._data = [];
      this._event = '';
      return;
    }
    if (line.startsWith(':')) return; // a comment (servers send them as keep-alives)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this._data.push(value);
    else if (field === 'event') this._event = value;
    else if (field === 'id' && !value.includes('\0')) this._id = value;
    // 'retry' and unknown fields: nothing to do for a one-shot request.
  }
}
