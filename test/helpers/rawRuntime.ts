// The runtime process (`opt rpc`) spoken to in raw frames, for tests that send what a JSON-RPC
// library never would: malformed headers, batches, bytes that are not JSON at all. Replies are
// collected as they come; a test waits for the one it wants.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { type Message, StreamMessageReader } from 'vscode-jsonrpc/node';

export interface RawReply {
  id?: string | number | null;
  method?: string;
  params?: { message?: string; level?: string };
  result?: { info?: { modelId: string } } & Record<string, unknown>;
  error?: { code: number; message: string };
}

/** A body (bytes, or text as UTF-8) with its Content-Length header. */
export function frameOf(body: Buffer | string): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  return Buffer.concat([Buffer.from(`Content-Length: ${b.length}\r\n\r\n`, 'ascii'), b]);
}

export interface RawRuntimeOptions {
  env?: NodeJS.ProcessEnv;
  args?: string[];
  /** Ids of this runtime's own requests start with this (so fuzzed frames cannot collide with them). */
  idPrefix?: string;
  /** Keep at most this many messages (the oldest half goes): long fuzz runs. Indices given to `next` then shift. */
  keepMessages?: number;
}

export class RawRuntime {
  readonly child: ChildProcessWithoutNullStreams;
  readonly messages: RawReply[] = [];
  stderr = '';
  private readonly _waiters = new Set<() => void>();
  private _nextId = 1;

  constructor(private readonly _options: RawRuntimeOptions = {}) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', 'rpc', ...(_options.args ?? [])], {
      stdio: 'pipe',
      env: _options.env ?? process.env,
    });
    this.child.stderr.on('data', (d) => (this.stderr += d));
    this.child.stdin.on('error', () => undefined); // a crash shows in the checks, not as EPIPE here
    new StreamMessageReader(this.child.stdout).listen((m: Message) => {
      this.messages.push(m as RawReply);
      const keep = this._options.keepMessages;
      if (keep !== undefined && this.messages.length > keep) this.messages.splice(0, keep / 2);
      for (const w of this._waiters) w();
    });
  }

  write(bytes: Buffer | string): void {
    this.child.stdin.write(bytes);
  }

  /** Writes each chunk once the one before has been flushed (so a reader sees them as separate reads). */
  async writeChunks(chunks: Buffer[]): Promise<void> {
    for (const c of chunks) await new Promise<void>((resolve) => this.child.stdin.write(c, () => resolve()));
  }

  /** The first message from index `from` on that matches, waiting up to `ms`. */
  next(match: (m: RawReply) => boolean, from = 0, ms = 20_000): Promise<RawReply> {
    return new Promise((resolve, reject) => {
      const look = () => {
        const m = this.messages.slice(from).find(match);
        if (!m) return false;
        this._waiters.delete(look);
        clearTimeout(timer);
        resolve(m);
        return true;
      };
      const timer = setTimeout(() => {
        this._waiters.delete(look);
        reject(
          new Error(
            `no matching message within ${ms} ms (exit ${this.child.exitCode ?? this.child.signalCode}); stderr: ${this.stderr.slice(-3000)}`,
          ),
        );
      }, ms);
      timer.unref(); // a wait the test has given up on does not hold the test process
      if (!look()) this._waiters.add(look);
    });
  }

  /** Sends a request and waits for its reply (matched by its own id). */
  request(method: string, params?: unknown, ms = 30_000): Promise<RawReply> {
    const id = `${this._options.idPrefix ?? 'r'}${this._nextId++}`;
    this.write(frameOf(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })));
    return this.next((m) => m.id === id && m.method === undefined, 0, ms);
  }

  /** A reply with id null, after what is already here. */
  nullIdReply(send: () => void): Promise<RawReply> {
    const from = this.messages.length;
    send();
    return this.next((m) => m.id === null, from);
  }

  threads(): number {
    return readdirSync(`/proc/${this.child.pid}/task`).length;
  }

  rssMiB(): number {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'))![1]) / 1024;
  }

  exited(ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return new Promise((resolve, reject) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        return resolve({ code: this.child.exitCode, signal: this.child.signalCode });
      const timer = setTimeout(() => reject(new Error(`the runtime did not exit within ${ms} ms`)), ms);
      this.child.once('exit', (code, signal) => (clearTimeout(timer), resolve({ code, signal })));
    });
  }

  async stop(): Promise<void> {
    this.child.stdin.end();
    await this.exited(15_000).catch(() => this.child.kill('SIGKILL'));
  }
}
