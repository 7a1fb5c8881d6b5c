// The inference worker: loads the model and runs the scheduler on its own thread, because
// onnxruntime-node executes each `run()` synchronously on the calling thread. The main thread stays
// free to answer protocol messages (cancel, status) between any two model steps.
// A causal LM is loaded for generation (its body graph, for embeddings, on the first embed
// request); any other OPT checkpoint is loaded as a body with its head (heads/headModel.ts).

import { parentPort } from 'node:worker_threads';
import { resolveModel } from '../hub/resolveModel.js';
import { type OptArchitecture, readOptConfig } from '../config.js';
import { requireTask, tasksOf, wrongTaskError } from '../heads/headConfig.js';
import { OptHeadModel } from '../heads/headModel.js';
import { PREFILL_CHUNK } from '../decoder.js';
import { fileAccessError } from '../errors.js';
import { autoPrefixCacheBytes, availableMemoryBytes, kvBytesPerToken } from '../memory.js';
import { loadOptModel, type OptModel } from '../model.js';
import { type TaskRequest, type TaskResults, emptyPrefixCache, emptyQueue } from '../../../protocol/engine.js';
import { type SerializedError, serializeError } from '../../../protocol/errors.js';
import type { LocalEngineOptions } from './localEngine.js';
import { DraftStateStore, checkSameTokenizer } from '../generation/assistant.js';
import { PrefixCache } from './prefixCache.js';
import { Scheduler } from './scheduler.js';
import type { FromWorker, ToWorker } from './workerMessages.js';

const port = parentPort;
if (!port) throw new Error('engineWorker must run in a worker thread');
const send = (m: FromWorker) => port.postMessage(m);
/** An error for the main thread; a file the OS refused (a cache folder that is a file, no permission) as one line naming it. */
const wire = (raw: unknown): SerializedError => serializeError(fileAccessError(raw) ?? raw);

let model: OptModel | undefined;
let assistant: { model: OptModel; dir: string } | undefined;
let scheduler: Scheduler | undefined;
let prefixCache: PrefixCache | undefined;
/** What the loaded checkpoint is, and where: every request is checked against its head first. */
let loaded: { dir: string; architecture: OptArchitecture; options: LocalEngineOptions } | undefined;
/** The body and head for classify / answer / embed (for a causal LM: opened on first use). */
let heads: Promise<OptHeadModel> | undefined;

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'load':
      void load(m.options);
      break;
    case 'submit':
      if (!scheduler || !loaded) send({ type: 'error', id: m.id, error: { name: 'Error', message: 'no model is loaded' } });
      else if (!model)
        send({ type: 'error', id: m.id, error: wire(wrongTaskError(loaded.architecture, 'generate', loaded.options.model)) });
      else {
        scheduler.submit(m.id, m.request, {
          onText: (delta) => send({ type: 'text', id: m.id, delta }),
          onDone: (result) => send({ type: 'done', id: m.id, result }),
          onError: (error) => send({ type: 'error', id: m.id, error: wire(error) }),
        });
      }
      break;
    case 'task':
      void submitTask(m.id, m.request);
      break;
    case 'cancel':
      scheduler?.cancel(m.id);
      break;
    case 'status': {
      const s = scheduler?.stats();
      send({
        type: 'status',
        id: m.id,
        status: {
          recentTokensPerSecond: s?.recentTokensPerSecond,
          lastLatencyMs: s?.lastLatencyMs,
          queued: s?.queued ?? emptyQueue(),
          running: s?.running ?? 0,
          stepsAfterLastCancel: s?.stepsAfterLastCancel,
          prefixCache: prefixCache?.stats() ?? emptyPrefixCache(),
        },
      });
      break;
    }
    case 'shutdown':
      void (async () => {
        prefixCache?.clear();
        await model?.dispose();
        await assistant?.model.dispose();
        await (await heads?.catch(() => undefined))?.dispose();
        send({ type: 'closed' });
        port.close();
      })();
      break;
  }
});

/**
 * The assistant, on the model's device and precision (after any fallback), its memory checked
 * against what the model left; refused with the reason when the tokenizers differ.
 */
async function loadAssistant(
  options: LocalEngineOptions,
  target: OptModel,
  contextTokens: number,
): Promise<{ model: OptModel; dir: string }> {
  const dir = await resolveModel(options.assistantModel!);
  send({ type: 'progress', message: `loading the assistant ${dir}` });
  const draft = await loadOptModel(dir, {
    dtype: target.source.dtype,
    device: target.device,
    threads: options.threads,
    cacheDir: options.cacheDir,
    checkMemory: true,
    contextTokens,
  });
  try {
    await checkSameTokenizer(target, draft);
  } catch (err) {
    await draft.dispose();
    throw err;
  }
  return { model: draft, dir };
}

async function load(options: LocalEngineOptions): Promise<void> {
  try {
    const started = performance.now();
    const dir = await resolveModel(options.model, {
      onProgress: ({ file, received, total }) =>
        send({
          type: 'progress',
          message: `downloading ${file}: ${(received / 2 ** 20).toFixed(1)}${total ? `/${(total / 2 ** 20).toFixed(1)}` : ''} MiB`,
        }),
    });
    send({ type: 'progress', message: `loading ${dir}` });
    const config = await readOptConfig(dir);
    const architecture = config.architectures[0]!;
    const loadOptions = {
      dtype: options.dtype,
      device: options.device,
      threads: options.threads,
      cacheDir: options.cacheDir,
      checkMemory: true,
    };
    let where: { device: string; deviceFallback?: string; dtype: string };
    let kv: { kvBytesPerToken: number; contextTokens: number } | undefined;
    if (architecture === 'OPTForCausalLM') {
      const contextTokens = Math.min(options.contextTokens ?? config.max_position_embeddings, config.max_position_embeddings);
      const available = availableMemoryBytes(); // before the weights take their share
      model = await loadOptModel(dir, { ...loadOptions, contextTokens, prefixCacheBytes: options.prefixCacheBytes });
      const dtype = model.source.dtype;
      prefixCache = new PrefixCache(options.prefixCacheBytes ?? autoPrefixCacheBytes(config, dtype, contextTokens, available));
      kv = { kvBytesPerToken: kvBytesPerToken(config, dtype), contextTokens };
      where = { device: model.device, deviceFallback: model.deviceFallback, dtype };
      if (options.assistantModel) assistant = await loadAssistant(options, model, contextTokens);
    } else {
      const h = await OptHeadModel.load(dir, loadOptions);
      heads = Promise.resolve(h);
      where = { device: h.body.device, deviceFallback: h.body.deviceFallback, dtype: h.body.dtype };
    }
    scheduler = new Scheduler(model, {
      assistant: assistant?.model,
      assistantStore: assistant ? new DraftStateStore(assistant.model) : undefined,
      queueLimit: options.queueLimit ?? 16,
      prefixCache,
      prefillChunk: options.prefillChunk ?? PREFILL_CHUNK,
    });
    loaded = { dir, architecture, options };
    send({
      type: 'loaded',
      info: {
        modelId: options.model,
        dir,
        architecture,
        tasks: tasksOf(architecture),
        device: where.device,
        ...(where.deviceFallback ? { deviceFallback: where.deviceFallback } : {}),
        dtype: where.dtype,
        maxPositions: config.max_position_embeddings,
        loadSeconds: (performance.now() - started) / 1000,
        ...kv,
        ...(assistant && options.assistantModel
          ? { assistant: { modelId: options.assistantModel, dir: assistant.dir, dtype: assistant.model.source.dtype } }
          : {}),
      },
    });
  } catch (err) {
    send({ type: 'loadFailed', error: wire(err) });
  }
}

/**
 * Checks the head, opens the body if this is the first embed request on a causal LM (outside the
 * scheduler, so generation steps go on meanwhile), then queues the one-pass request.
 */
async function submitTask(id: number, request: TaskRequest): Promise<void> {
  const fail = (err: unknown) => send({ type: 'error', id, error: wire(err) });
  try {
    if (!loaded || !scheduler) throw new Error('no model is loaded');
    requireTask(loaded.architecture, request.task, loaded.options.model);
    if (!heads) {
      // Same device and precision as the generation model (after any fallback): no second GPU attempt.
      const o = loaded.options;
      heads = OptHeadModel.load(loaded.dir, {
        dtype: model?.source.dtype ?? o.dtype,
        device: model?.device ?? o.device,
        threads: o.threads,
        cacheDir: o.cacheDir,
        checkMemory: true,
      });
      heads.catch(() => (heads = undefined)); // a failed load is retried by the next request
    }
    const h = await heads;
    scheduler.submitTask(id, 'interactive', {
      run: () => runTask(h, request),
      onDone: (result) => send({ type: 'taskDone', id, result }),
      onError: fail,
    });
  } catch (err) {
    fail(err);
  }
}

async function runTask(h: OptHeadModel, r: TaskRequest): Promise<TaskResults[TaskRequest['task']]> {
  switch (r.task) {
    case 'classify':
      return (await h.classify([r.params.text]))[0]!;
    case 'answer':
      return h.answer(r.params.question, r.params.context, r.params);
    case 'embed': {
      const [e] = await h.embed([r.params.text], { pooling: r.params.pooling });
      return { embedding: e!.embedding, tokens: e!.tokens };
    }
  }
}
