// The local engine: a model on an inference worker thread behind the Engine contract. Requests
// stream text back as it is generated; aborting one reaches the worker at once and stops it
// within one decode step.

import { Worker } from 'node:worker_threads';
import type { DtypeChoice } from '../model.js';
import type { Device } from '../session.js';
import {
  type Engine,
  type EngineInfo,
  type EngineRequest,
  type EngineResult,
  type EngineStatus,
  type TaskRequest,
  emptyPrefixCache,
  emptyQueue,
  type TaskResults,
} from '../../../protocol/engine.js';
import { reviveError } from '../../../protocol/errors.js';
import type { FromWorker, ToWorker } from './workerMessages.js';

export interface LocalEngineOptions {
  /** A model folder or a Hugging Face id. */
  model: string;
  dtype?: DtypeChoice;
  device?: Device;
  threads?: number;
  cacheDir?: string;
  /** Requests waiting or running before new ones are refused (default 16). */
  queueLimit?: number;
  /**
   * Memory for KV states of recent prompts beyond the newest (which is kept whatever its size); 0
   * keeps none. Default: room for two contexts, within half the memory the model leaves (protocol/memory.ts).
   */
  prefixCacheBytes?: number;
  /** The longest prompt + completion the client asks for: sizes the memory check and the automatic prefix cache (default: the model's positions). */
  contextTokens?: number;
  /** A smaller OPT with the same tokenizer that drafts for generation requests (InitializeParams.assistantModel). */
  assistantModel?: string;
  /** Prompt tokens per prefill step (default PREFILL_CHUNK, 128: one step is what a cancellation or a more urgent request waits for). */
  prefillChunk?: number;
  /** Loading progress (downloads, conversion). */
  onProgress?: (message: string) => void;
}

interface Pending {
  onText?: (delta: string) => void;
  /** An EngineResult for generation, the task's result for classify / answer / embed. */
  resolve(result: unknown): void;
  reject(error: Error): void;
}

/**
 * The worker beside this module: `.js` when bundled. Run from source, the worker first registers
 * tsx's loader itself (loader hooks given on the command line do not reach worker threads in Node 20).
 */
function spawnWorker(): Worker {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return new Worker(new URL('./engineWorker.js', self));
  const entry = JSON.stringify(new URL('./engineWorker.ts', self).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${entry}); });`, { eval: true });
}

export async function createLocalEngine(options: LocalEngineOptions): Promise<Engine> {
  const worker = spawnWorker();
  const pending = new Map<number, Pending>();
  const statusWaiters = new Map<number, (s: Extract<FromWorker, { type: 'status' }>['status']) => void>();
  let nextId = 1;
  let info: EngineInfo | undefined;
  let closed = false;
  let disposing = false;
  const post = (m: ToWorker) => worker.postMessage(m);

  const loaded = new Promise<EngineInfo>((resolve, reject) => {
    worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'loaded':
          info = m.info;
          resolve(m.info);
          break;
        case 'loadFailed':
          reject(reviveError(m.error));
          break;
        case 'progress':
          options.onProgress?.(m.message);
          break;
        case 'text':
          pending.get(m.id)?.onText?.(m.delta);
          break;
        case 'done':
        case 'taskDone':
          pending.get(m.id)?.resolve(m.result);
          pending.delete(m.id);
          break;
        case 'error':
          pending.get(m.id)?.reject(reviveError(m.error));
          pending.delete(m.id);
          break;
        case 'status':
          statusWaiters.get(m.id)?.(m.status);
          statusWaiters.delete(m.id);
          break;
        case 'closed':
          break;
      }
    });
    worker.on('error', (err) => {
      reject(err);
      for (const p of pending.values()) p.reject(new Error(`the inference worker crashed: ${err.message}`));
      pending.clear();
    });
    worker.on('exit', () => {
      closed = true;
      // Requests cut short by dispose() were cancelled by their owner's decision, not failed.
      for (const p of pending.values())
        p.reject(disposing ? new DOMException('the runtime is shutting down', 'AbortError') : new Error('the inference worker exited'));
      pending.clear();
    });
  });
  post({ type: 'load', options: { ...options, onProgress: undefined } });
  try {
    await loaded;
  } catch (err) {
    await worker.terminate();
    throw err;
  }

  /** Posts a request and settles with its reply; an abort reaches the worker as a cancel at once. */
  function send<T>(message: (id: number) => ToWorker, signal?: AbortSignal, onText?: (delta: string) => void): Promise<T> {
    if (closed) return Promise.reject(new Error('the engine is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => post({ type: 'cancel', id });
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => signal?.removeEventListener('abort', onAbort);
      pending.set(id, {
        onText,
        resolve: (r) => (settle(), resolve(r as T)),
        // An abort is reported with the caller's own reason, as fetch does.
        reject: (e) => (settle(), reject(signal?.aborted && e.name === 'AbortError' ? (signal.reason as Error) : e)),
      });
      post(message(id));
    });
  }
  const task = <R extends TaskRequest>(request: R, signal?: AbortSignal) =>
    send<TaskResults[R['task']]>((id) => ({ type: 'task', id, request }), signal);

  return {
    info: () => info!,
    generate(request: EngineRequest, onText?: (delta: string) => void, signal?: AbortSignal): Promise<EngineResult> {
      return send<EngineResult>((id) => ({ type: 'submit', id, request }), signal, onText);
    },
    classify: (params, signal) => task({ task: 'classify', params }, signal),
    answer: (params, signal) => task({ task: 'answer', params }, signal),
    embed: (params, signal) => task({ task: 'embed', params }, signal),
    async status(): Promise<EngineStatus> {
      const id = nextId++;
      const s = closed
        ? undefined
        : await new Promise<Extract<FromWorker, { type: 'status' }>['status']>((resolve) => {
            statusWaiters.set(id, resolve);
            post({ type: 'status', id });
          });
      return {
        info,
        rssBytes: process.memoryUsage().rss,
        recentTokensPerSecond: s?.recentTokensPerSecond,
        lastLatencyMs: s?.lastLatencyMs,
        queued: s?.queued ?? emptyQueue(),
        running: s?.running ?? 0,
        stepsAfterLastCancel: s?.stepsAfterLastCancel,
        prefixCache: s?.prefixCache ?? emptyPrefixCache(),
      };
    },
    async dispose(): Promise<void> {
      if (closed) return;
      disposing = true;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      post({ type: 'shutdown' });
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
