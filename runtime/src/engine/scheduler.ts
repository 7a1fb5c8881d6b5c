// Interleaves generations one model step at a time, most urgent first: inline completions, then
// interactive rewrites, then background generation, then the warm-up of a document's prefix. A
// newer inline request for a document supersedes the older one, any request ends a warm-up (whose
// prefilled part stays in the prefix cache), a cancelled job stops at its next step, and the queue
// is bounded.
// One-pass head requests (classify, answer, embed) are jobs of a single step in the same queue.

import type { DraftStateStore } from '../generation/assistant.js';
import { type GeneratedSequence, type GenerationEvent, type GenerationModel, generateStream } from '../generation/generate.js';
import { type EngineRequest, type EngineResult, type Priority, emptyQueue } from '../../../protocol/engine.js';
import { EngineBusyError, SupersededError } from '../../../protocol/errors.js';
import type { PrefixCache } from './prefixCache.js';

const RANK: Record<Priority, number> = { inline: 0, interactive: 1, background: 2, warm: 3 };

export interface JobCallbacks {
  onText(delta: string): void;
  onDone(result: EngineResult): void;
  onError(error: Error): void;
}

/** A one-pass request: runs as one step of the scheduler, then reports its result. */
export interface TaskJob {
  run(signal: AbortSignal): Promise<unknown>;
  onDone(result: unknown): void;
  onError(error: Error): void;
}

interface Job {
  id: number;
  priority: Priority;
  /** Generation jobs only. */
  request?: EngineRequest;
  task?: TaskJob;
  callbacks: JobCallbacks;
  controller: AbortController;
  gen?: AsyncGenerator<GenerationEvent>;
  enqueuedAt: number;
  startedAt?: number;
  firstTokenAt?: number;
  lastStep: number;
  /** The scheduler's step count when this job was cancelled, to measure how fast cancellation bites. */
  cancelledAtStep?: number;
  text: string;
}

export interface SchedulerOptions {
  /** Drafts for generation requests that do not ask for prompt lookup (assisted generation), its state kept between them. */
  assistant?: GenerationModel;
  assistantStore?: DraftStateStore;
  /** Jobs waiting or running; one more is refused with EngineBusyError. */
  queueLimit: number;
  /** Reused KV prefixes; only a generation model has one. */
  prefixCache?: PrefixCache;
  /** Prompt tokens per prefill step, so an inline request waits at most one chunk behind another job. */
  prefillChunk: number;
}

export class Scheduler {
  private readonly _jobs: Job[] = [];
  private _pumping = false;
  private _steps = 0;
  private readonly _recent: { tokens: number; decodeMs: number }[] = [];
  private _lastLatencyMs: number | undefined;
  private _stepsAfterLastCancel: number | undefined;

  /** `_model` is absent when the checkpoint has no language-model head: only tasks are submitted then. */
  constructor(
    private readonly _model: GenerationModel | undefined,
    private readonly _options: SchedulerOptions,
  ) {}

  submit(id: number, request: EngineRequest, callbacks: JobCallbacks): void {
    if (request.priority === 'inline' && request.documentId !== undefined) {
      this._supersede(
        (j) => j.request?.priority === 'inline' && j.request.documentId === request.documentId,
        `a newer completion request for ${request.documentId} replaced this one`,
      );
    }
    // One warm-up at a time, and none while anything else wants the model: a warm-up cancelled here
    // leaves what it prefilled in the prefix cache, where the request that ended it finds it.
    this._supersede(
      (j) => j.priority === 'warm',
      request.priority === 'warm' ? 'a warm-up of another prompt replaced this one' : 'a request replaced this warm-up',
    );
    if (this._refuseWhenFull(callbacks)) return;
    this._jobs.push({
      id,
      priority: request.priority,
      request,
      callbacks,
      controller: new AbortController(),
      enqueuedAt: performance.now(),
      lastStep: 0,
      text: '',
    });
    void this._pump();
  }

  /** Queues a one-pass request; it runs between two generation steps when its priority comes up. */
  submitTask(id: number, priority: Priority, task: TaskJob): void {
    this._supersede((j) => j.priority === 'warm', 'a request replaced this warm-up');
    const callbacks: JobCallbacks = { onText: () => undefined, onDone: () => undefined, onError: (e) => task.onError(e) };
    if (this._refuseWhenFull(callbacks)) return;
    this._jobs.push({
      id,
      priority,
      task,
      callbacks,
      controller: new AbortController(),
      enqueuedAt: performance.now(),
      lastStep: 0,
      text: '',
    });
    void this._pump();
  }

  private _supersede(which: (job: Job) => boolean, reason: string): void {
    for (const job of this._jobs) {
      if (job.controller.signal.aborted || !which(job)) continue;
      job.cancelledAtStep = this._steps;
      job.controller.abort(new SupersededError(reason));
    }
  }

  private _refuseWhenFull(callbacks: JobCallbacks): boolean {
    const live = this._jobs.filter((j) => !j.controller.signal.aborted).length;
    if (live < this._options.queueLimit) return false;
    callbacks.onError(
      new EngineBusyError(`the runtime is busy: ${live} requests are queued or running (limit ${this._options.queueLimit}); retry shortly`),
    );
    return true;
  }

  cancel(id: number): void {
    const job = this._jobs.find((j) => j.id === id);
    if (!job || job.controller.signal.aborted) return;
    job.cancelledAtStep = this._steps;
    job.controller.abort();
  }

  stats() {
    const queued = emptyQueue();
    for (const j of this._jobs) if (j.startedAt === undefined) queued[j.priority]++;
    const tokens = this._recent.reduce((n, r) => n + r.tokens, 0);
    const ms = this._recent.reduce((n, r) => n + r.decodeMs, 0);
    return {
      queued,
      running: this._jobs.filter((j) => j.startedAt !== undefined).length,
      steps: this._steps,
      recentTokensPerSecond: ms > 0 ? (tokens / ms) * 1000 : undefined,
      lastLatencyMs: this._lastLatencyMs,
      stepsAfterLastCancel: this._stepsAfterLastCancel,
    };
  }

  /** Runs steps until no job is left; one pump at a time. */
  private async _pump(): Promise<void> {
    if (this._pumping) return;
    this._pumping = true;
    try {
      for (let job = this._next(); job; job = this._next()) await this._step(job);
    } finally {
      this._pumping = false;
    }
  }

  /** Cancelled jobs first (they end without model work), then by priority, then least recently stepped. */
  private _next(): Job | undefined {
    let best: Job | undefined;
    for (const j of this._jobs) {
      if (!best) best = j;
      else if (j.controller.signal.aborted !== best.controller.signal.aborted) best = j.controller.signal.aborted ? j : best;
      else if (RANK[j.priority] !== RANK[best.priority]) best = RANK[j.priority] < RANK[best.priority] ? j : best;
      else if (j.lastStep < best.lastStep) best = j;
    }
    return best;
  }

  private async _step(job: Job): Promise<void> {
    const signal = job.controller.signal;
    if (signal.aborted && !job.gen) return this._finish(job, undefined, signal.reason as Error);
    if (job.task) return this._runTask(job, job.task);
    try {
      if (!job.gen) {
        if (!this._model || !job.request) throw new Error('internal: a generation job without a generation model');
        job.startedAt = performance.now();
        job.gen = generateStream(this._model, job.request.prompt, {
          ...job.request.options,
          return_full_text: false,
          signal,
          truncate: 'left',
          maxPromptTokens: job.request.maxPromptTokens,
          prefixStore: this._options.prefixCache,
          prefillChunk: this._options.prefillChunk,
          prefillOnly: job.priority === 'warm',
          ...(this._options.assistant && job.request.options.prompt_lookup_num_tokens === undefined && job.priority !== 'warm'
            ? { assistantModel: this._options.assistant, assistantStore: this._options.assistantStore }
            : {}),
        });
      }
      // Advance by one model step: a prefill chunk, or one token (and its text).
      for (;;) {
        const { value: event, done } = await job.gen.next();
        if (done) throw new Error('internal: generation ended without a result');
        if (event.type === 'prefill' || event.type === 'step') {
          job.lastStep = ++this._steps;
          return;
        }
        if (event.type === 'token') {
          job.firstTokenAt ??= performance.now();
          if (event.text) {
            job.text += event.text;
            job.callbacks.onText(event.text);
          }
          continue; // then 'step' or 'done', without running the model
        }
        job.lastStep = ++this._steps;
        return this._finish(job, event.result);
      }
    } catch (err) {
      this._finish(job, undefined, signal.aborted ? (signal.reason as Error) : (err as Error));
    }
  }

  /** One model pass; once started it runs to the end (a cancel that arrives meanwhile is too late). */
  private async _runTask(job: Job, task: TaskJob): Promise<void> {
    job.startedAt = performance.now();
    let result: unknown;
    try {
      result = await task.run(job.controller.signal);
    } catch (err) {
      return this._finish(job, undefined, err as Error);
    }
    job.lastStep = ++this._steps;
    this._remove(job);
    this._lastLatencyMs = performance.now() - job.enqueuedAt;
    task.onDone(result);
  }

  /** Takes an ended job out of the queue, noting how many steps ran after its cancel. */
  private _remove(job: Job): void {
    this._jobs.splice(this._jobs.indexOf(job), 1);
    if (job.cancelledAtStep !== undefined) this._stepsAfterLastCancel = this._steps - job.cancelledAtStep;
  }

  private _finish(job: Job, result: GeneratedSequence | undefined, error?: Error): void {
    this._remove(job);
    void job.gen?.return(undefined); // runs its cleanup: the KV state goes back to the prefix cache
    if (!result) {
      job.callbacks.onError(error ?? new Error('generation failed'));
      return;
    }
    const now = performance.now();
    const started = job.startedAt ?? now;
    const firstToken = job.firstTokenAt ?? now;
    const timings = { queuedMs: started - job.enqueuedAt, prefillMs: firstToken - started, decodeMs: now - firstToken };
    if (result.tokenIds.length > 0) {
      // A warm-up generates nothing: no latency a user waited for, no decode speed.
      this._lastLatencyMs = now - job.enqueuedAt;
      this._recent.push({ tokens: result.tokenIds.length - 1, decodeMs: timings.decodeMs });
      if (this._recent.length > 16) this._recent.shift();
    }
    job.callbacks.onDone({
      text: result.text,
      finishReason: result.finishReason,
      promptTokens: result.promptTokens,
      reusedTokens: result.reusedTokens,
      completionTokens: result.tokenIds.length,
      truncated: result.truncated,
      ...(result.speculation ? { speculation: result.speculation } : {}),
      timings,
    });
  }
}
