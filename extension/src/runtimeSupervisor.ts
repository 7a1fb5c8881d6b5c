// Owns the runtime process: starts it on first need (or when asked), initializes it with the model
// settings, restarts it with a growing delay when it crashes and gives up, saying why, after
// repeated crashes; stops it gracefully (shutdown, exit, then signals) and never leaves it behind.
// The editor keeps working throughout: callers get an EngineUnavailableError, never a hang.
// No vscode import (tests drive it against the real runtime process).

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import {
  Emitter,
  type Event,
  type MessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import {
  type EngineInfo,
  Exit,
  Initialize,
  type InitializeParams,
  LoadProgress,
  Log,
  PROTOCOL_VERSION,
  RuntimeErrorCodes,
  Shutdown,
} from '../../protocol/protocol.js';
import { CancelledError, EngineUnavailableError } from './engines/completionEngine.js';
import { type LoadProgressInfo, parseLoadProgress } from './loadProgress.js';
import type { Logger } from './logger.js';
import type { RuntimeLaunch } from './runtimeLaunch.js';

/** What initialize is sent (protocol fields; the model as the user wrote it). */
export type RuntimeInit = Omit<InitializeParams, 'protocolVersion'>;

export type RuntimeState =
  /** Not started: starts on first need. */
  | { kind: 'stopped' }
  /** Stopped on purpose (a download was cancelled): starts only when asked. */
  | { kind: 'held'; reason: string }
  /** The process is starting or loading the model. */
  | { kind: 'loading'; model: string; progress?: LoadProgressInfo }
  | { kind: 'ready'; info: EngineInfo }
  /** Crashed; a new process starts after `delayMs`. */
  | { kind: 'restarting'; reason: string; delayMs: number }
  /**
   * The model or device could not be used, or the process kept crashing: no retry until settings
   * change or a restart is asked. `fix` is what recovers: a restart, another model or another device.
   */
  | { kind: 'failed'; reason: string; fix: 'restart' | 'model' | 'device' };

export interface RestartPolicy {
  /** This many crashes within `windowMs` and the supervisor gives up. */
  maxCrashes: number;
  windowMs: number;
  /** Delay before the first restart; doubles per recent crash up to maxDelayMs. */
  initialDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { maxCrashes: 3, windowMs: 3 * 60_000, initialDelayMs: 1000, maxDelayMs: 15_000 };

export interface RuntimeSupervisorOptions {
  /** Read at every start, so a restart picks up changed settings. */
  launch: () => RuntimeLaunch;
  init: () => RuntimeInit;
  log: Logger;
  restartPolicy?: Partial<RestartPolicy>;
  /** How long shutdown and exit may take before signals are sent (default 3 s). */
  shutdownGraceMs?: number;
}

interface Proc {
  epoch: number;
  child: ChildProcessWithoutNullStreams;
  connection: MessageConnection;
  stopping: boolean;
  exited: Promise<void>;
  stderrTail: string[];
  fingerprint: string;
}

export class RuntimeSupervisor {
  private _state: RuntimeState = { kind: 'stopped' };
  private _proc: Proc | undefined;
  private _epoch = 0;
  private _crashTimes: number[] = [];
  private _restartTimer: ReturnType<typeof setTimeout> | undefined;
  private _waiters: { resolve: (c: MessageConnection) => void; reject: (e: Error) => void }[] = [];
  private _disposed = false;
  private readonly _policy: RestartPolicy;
  private readonly _onDidChangeState = new Emitter<RuntimeState>();
  readonly counters = { starts: 0, crashes: 0, restarts: 0 };
  /** The last stderr lines of the last process that ended badly. */
  lastExit: { code: number | null; signal: string | null; stderr: string } | undefined;

  constructor(private readonly _options: RuntimeSupervisorOptions) {
    this._policy = { ...DEFAULT_RESTART_POLICY, ..._options.restartPolicy };
  }

  get state(): RuntimeState {
    return this._state;
  }

  get onDidChangeState(): Event<RuntimeState> {
    return this._onDidChangeState.event;
  }

  get pid(): number | undefined {
    return this._proc?.child.pid;
  }

  /**
   * The connection to a ready runtime; starts one on first need and waits while it loads.
   * Rejects with EngineUnavailableError when the runtime is held, failed or being stopped, and with
   * CancelledError when `signal` aborts first.
   */
  ready(signal?: AbortSignal): Promise<MessageConnection> {
    if (this._disposed) return Promise.reject(new EngineUnavailableError('the extension is shutting down'));
    const s = this._state;
    if (s.kind === 'ready' && this._proc) return Promise.resolve(this._proc.connection);
    if (s.kind === 'held')
      return Promise.reject(
        new EngineUnavailableError(`the runtime is stopped (${s.reason}): start it from the status bar or with "OPT: Start Runtime"`),
      );
    if (s.kind === 'failed') return Promise.reject(new EngineUnavailableError(s.reason));
    if (signal?.aborted) return Promise.reject(new CancelledError('cancelled'));
    if (s.kind === 'stopped') this._launch();
    return new Promise<MessageConnection>((resolve, reject) => {
      const waiter = {
        resolve: (c: MessageConnection) => (signal?.removeEventListener('abort', onAbort), resolve(c)),
        reject: (e: Error) => (signal?.removeEventListener('abort', onAbort), reject(e)),
      };
      const onAbort = () => {
        this._waiters = this._waiters.filter((w) => w !== waiter);
        reject(new CancelledError('cancelled'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this._waiters.push(waiter);
    });
  }

  /** Starts the runtime if it is not running or loading (also out of held and failed). */
  start(): void {
    if (this._disposed) return;
    const k = this._state.kind;
    if (k === 'ready' || k === 'loading') return;
    this._clearRestartTimer();
    if (k === 'failed') this._crashTimes = [];
    this._launch();
  }

  /** Stops the running process (if any) and starts a new one with the current settings. */
  async restart(reason: string): Promise<void> {
    if (this._disposed) return;
    this._options.log.info(`restarting the runtime: ${reason}`);
    this._crashTimes = [];
    this.counters.restarts++;
    await this._stopProcess(false);
    this._launch();
  }

  /**
   * After a settings change: restarts only if the runtime is in use (loading, ready, restarting,
   * failed) and what it would be started with differs from what it runs with.
   */
  async applySettings(reason: string): Promise<boolean> {
    const k = this._state.kind;
    if (k === 'stopped' || k === 'held') return false;
    if (this._proc && k !== 'failed' && this._proc.fingerprint === this._fingerprint()) return false;
    await this.restart(reason);
    return true;
  }

  /** Cancels a load (a download): the process is replaced by none, and the runtime is held until asked to start. */
  async cancelLoad(): Promise<void> {
    if (this._state.kind !== 'loading') return;
    this._options.log.info('model load cancelled: stopping the runtime');
    await this._stopProcess(true, 500);
    // Callers that came while the process was being stopped (the state still said loading) would wait forever.
    this._rejectWaiters(new EngineUnavailableError('loading was cancelled'));
    this._setState({ kind: 'held', reason: 'loading was cancelled' });
  }

  /** Stops the runtime; it starts again on next need. */
  async stop(): Promise<void> {
    await this._stopProcess(true);
    // Callers that came while the process was being stopped (the state still said ready) would wait forever.
    this._rejectWaiters(new EngineUnavailableError('the runtime was stopped'));
    if (!this._disposed) this._setState({ kind: 'stopped' });
  }

  /** Stops for good (extension deactivation): awaits the process's exit. */
  async dispose(): Promise<void> {
    if (this._disposed) return;
    this._disposed = true;
    await this._stopProcess(true);
    this._rejectWaiters(new EngineUnavailableError('the extension is shutting down'));
    this._onDidChangeState.dispose();
  }

  private _fingerprint(): string {
    const l = this._options.launch();
    return JSON.stringify([l.command, l.args, this._options.init()]);
  }

  private _launch(): void {
    this._clearRestartTimer();
    const epoch = ++this._epoch;
    const launch = this._options.launch();
    const init = this._options.init();
    const fingerprint = JSON.stringify([launch.command, launch.args, init]);
    const log = this._options.log;
    this.counters.starts++;
    this._setState({ kind: 'loading', model: init.model });
    log.info(`starting the runtime: ${launch.command} ${launch.args.join(' ')}`);

    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(launch.command, launch.args, { cwd: launch.cwd, env: launch.env, stdio: 'pipe', windowsHide: true });
    } catch (err) {
      this._onExit(epoch, null, null, `cannot start ${launch.command}: ${(err as Error).message}`);
      return;
    }
    const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
    let resolveExited!: () => void;
    const proc: Proc = {
      epoch,
      child,
      connection,
      stopping: false,
      exited: new Promise((r) => (resolveExited = r)),
      stderrTail: [],
      fingerprint,
    };
    this._proc = proc;

    let ended = false;
    const onEnd = (code: number | null, signal: NodeJS.Signals | null, spawnError?: string) => {
      if (ended) return;
      ended = true;
      resolveExited();
      connection.dispose();
      this._onExit(epoch, code, signal, spawnError);
    };
    child.on('error', (err) =>
      onEnd(
        null,
        null,
        `cannot start ${launch.command}: ${err.message}${(err as NodeJS.ErrnoException).code === 'ENOENT' ? ' (set optComplete.runtime.nodePath to a Node.js 20+ executable)' : ''}`,
      ),
    );
    child.on('exit', (code, signal) => onEnd(code, signal));
    child.stdin.on('error', () => undefined); // EPIPE when the process died: reported by 'exit'
    let partial = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        proc.stderrTail.push(line);
        if (proc.stderrTail.length > 40) proc.stderrTail.shift();
        // Lines the runtime also sends as opt/log notifications are logged from those.
        if (!line.startsWith('[opt-runtime]')) log.debug(`runtime stderr: ${line}`);
      }
    });
    connection.onNotification(Log, (p) => {
      const text = `runtime: ${p.message}`;
      if (p.level === 'error') log.error(text);
      else if (p.level === 'warn') log.warn(text);
      else log.info(text);
    });
    connection.onNotification(LoadProgress, (p) => {
      if (this._epoch !== epoch || this._state.kind !== 'loading') return;
      const progress = parseLoadProgress(p.message);
      if (!progress.downloading) log.info(`runtime: ${p.message}`);
      this._setState({ kind: 'loading', model: init.model, progress });
    });
    connection.onError(([err]) => log.warn(`runtime protocol error: ${err.message}`));
    connection.listen();

    void (async () => {
      try {
        const result = await connection.sendRequest(Initialize, { protocolVersion: PROTOCOL_VERSION, ...init });
        if (this._epoch !== epoch || proc.stopping) return;
        const i = result.info;
        log.info(
          `runtime ready: ${i.modelId} (${i.dtype} on ${i.device}, ${i.maxPositions} positions) loaded in ${i.loadSeconds.toFixed(1)} s; pid ${child.pid}`,
        );
        this._setState({ kind: 'ready', info: i });
        const waiters = this._waiters;
        this._waiters = [];
        for (const w of waiters) w.resolve(connection);
      } catch (err) {
        if (this._epoch !== epoch || proc.stopping || ended) return; // a crash is reported by the exit handler
        const code = err instanceof ResponseError ? err.code : undefined;
        const message =
          code === RuntimeErrorCodes.DeviceUnavailable
            ? `the device could not be used: ${(err as Error).message}`
            : code === RuntimeErrorCodes.ModelLoadFailed
              ? `the model could not be loaded: ${(err as Error).message}`
              : `the runtime refused to start: ${(err as Error).message}`;
        log.error(message);
        await this._stopProcess(false, 1000);
        this._fail(message, code === RuntimeErrorCodes.DeviceUnavailable ? 'device' : 'model');
      }
    })();
  }

  private _onExit(epoch: number, code: number | null, signal: NodeJS.Signals | null, spawnError?: string): void {
    const proc = this._proc?.epoch === epoch ? this._proc : undefined;
    if (this._epoch !== epoch || (proc && proc.stopping) || this._disposed) return;
    this._proc = undefined;
    const stderr = proc?.stderrTail.slice(-12).join('\n') ?? '';
    this.lastExit = { code, signal, stderr };
    this.counters.crashes++;
    const what = spawnError ?? `the runtime exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`})`;
    this._options.log.error(`${what}${stderr ? `; its last output:\n${stderr}` : ''}`);
    const now = Date.now();
    this._crashTimes = this._crashTimes.filter((t) => now - t < this._policy.windowMs);
    this._crashTimes.push(now);
    const n = this._crashTimes.length;
    if (n >= this._policy.maxCrashes) {
      const minutes = Math.max(1, Math.round(this._policy.windowMs / 60_000));
      const lastLine = stderr
        .split('\n')
        .filter((l) => l.trim())
        .pop();
      this._fail(
        `the runtime stopped ${n} times within ${minutes} min, so it is not restarted again: ${what}${lastLine ? ` — ${lastLine}` : ''}. Fix the cause (see the log), then run "OPT: Restart Runtime"`,
        'restart',
      );
      return;
    }
    const delayMs = Math.min(this._policy.maxDelayMs, this._policy.initialDelayMs * 2 ** (n - 1));
    this._options.log.warn(
      `restarting the runtime in ${delayMs} ms (crash ${n} of at most ${this._policy.maxCrashes - 1} within ${Math.round(this._policy.windowMs / 1000)} s)`,
    );
    this._setState({ kind: 'restarting', reason: what, delayMs });
    this._restartTimer = setTimeout(() => {
      this._restartTimer = undefined;
      if (!this._disposed && this._state.kind === 'restarting') this._launch();
    }, delayMs);
  }

  private _fail(reason: string, fix: 'restart' | 'model' | 'device'): void {
    this._setState({ kind: 'failed', reason, fix });
    this._rejectWaiters(new EngineUnavailableError(reason));
  }

  /** Stops the current process: shutdown request, exit notification, stdin closed, then SIGTERM and SIGKILL. */
  private async _stopProcess(rejectWaiters: boolean, graceMs = this._options.shutdownGraceMs ?? 3000): Promise<void> {
    this._clearRestartTimer();
    this._epoch++; // anything still in flight for the old process is now stale
    const proc = this._proc;
    this._proc = undefined;
    if (rejectWaiters) this._rejectWaiters(new EngineUnavailableError('the runtime was stopped'));
    if (!proc) return;
    proc.stopping = true;
    const { child, connection } = proc;
    const exited = () => child.exitCode !== null || child.signalCode !== null;
    const waitExit = (ms: number) =>
      Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(exited()), ms))]);
    if (!exited()) {
      await Promise.race([connection.sendRequest(Shutdown).catch(() => undefined), new Promise((r) => setTimeout(r, graceMs))]);
      try {
        await connection.sendNotification(Exit);
      } catch {
        // already gone
      }
      child.stdin.end();
      if (!(await waitExit(graceMs))) {
        this._options.log.warn(`the runtime did not exit within ${graceMs} ms: sending SIGTERM`);
        child.kill('SIGTERM');
        if (!(await waitExit(2000))) child.kill('SIGKILL');
        await waitExit(2000);
      }
    }
    connection.dispose();
    this._options.log.info(`runtime stopped (pid ${child.pid})`);
  }

  private _rejectWaiters(err: Error): void {
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w.reject(err);
  }

  private _clearRestartTimer(): void {
    if (this._restartTimer) clearTimeout(this._restartTimer);
    this._restartTimer = undefined;
  }

  private _setState(state: RuntimeState): void {
    this._state = state;
    if (!this._disposed) this._onDidChangeState.fire(state);
  }
}
