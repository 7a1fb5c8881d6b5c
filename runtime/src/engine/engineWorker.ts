// The inference worker: loads the model and runs the scheduler on its own thread, because
// onnxruntime-node executes each `run()` synchronously on the calling thread. The main thread stays
// free to answer protocol messages (cancel, status) between any two model steps.

import { parentPort } from 'node:worker_threads';
import { resolveModel } from '../hub/resolveModel.js';
import { loadOptModel, type OptModel } from '../model.js';
import { PrefixCache } from './prefixCache.js';
import { Scheduler } from './scheduler.js';
import type { FromWorker, ToWorker, WireError } from './workerMessages.js';

const port = parentPort;
if (!port) throw new Error('engineWorker must run in a worker thread');
const send = (m: FromWorker) => port.postMessage(m);
const wire = (err: unknown): WireError => ({ name: (err as Error)?.name ?? 'Error', message: (err as Error)?.message ?? String(err) });

let model: OptModel | undefined;
let scheduler: Scheduler | undefined;
let prefixCache: PrefixCache | undefined;

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'load':
      void load(m.options);
      break;
    case 'submit':
      if (!scheduler) send({ type: 'error', id: m.id, error: { name: 'Error', message: 'no model is loaded' } });
      else {
        scheduler.submit(m.id, m.request, {
          onText: (delta) => send({ type: 'text', id: m.id, delta }),
          onDone: (result) => send({ type: 'done', id: m.id, result }),
          onError: (error) => send({ type: 'error', id: m.id, error: wire(error) }),
        });
      }
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
          queued: s?.queued ?? { inline: 0, interactive: 0, background: 0 },
          running: s?.running ?? 0,
          stepsAfterLastCancel: s?.stepsAfterLastCancel,
          prefixCache: prefixCache?.stats() ?? { entries: 0, bytes: 0, hits: 0, misses: 0 },
        },
      });
      break;
    }
    case 'shutdown':
      void (async () => {
        prefixCache?.clear();
        await model?.dispose();
        send({ type: 'closed' });
        port.close();
      })();
      break;
  }
});

async function load(options: import('./localEngine.js').LocalEngineOptions): Promise<void> {
  try {
    const started = performance.now();
    const dir = await resolveModel(options.model, {
      onProgress: ({ file, received, total }) => send({ type: 'progress', message: `downloading ${file}: ${(received / 2 ** 20).toFixed(1)}${total ? `/${(total / 2 ** 20).toFixed(1)}` : ''} MiB` }),
    });
    send({ type: 'progress', message: `loading ${dir}` });
    model = await loadOptModel(dir, { dtype: options.dtype, device: options.device, threads: options.threads, cacheDir: options.cacheDir, checkMemory: true });
    prefixCache = new PrefixCache(options.prefixCacheBytes ?? 256 << 20);
    scheduler = new Scheduler(model, { queueLimit: options.queueLimit ?? 16, prefixCache, prefillChunk: options.prefillChunk ?? 256 });
    send({
      type: 'loaded',
      info: {
        modelId: options.model,
        dir,
        architecture: model.config.architectures[0] ?? 'OPTForCausalLM',
        tasks: ['generate'],
        device: options.device ?? 'cpu',
        dtype: model.source.dtype,
        maxPositions: model.config.max_position_embeddings,
        loadSeconds: (performance.now() - started) / 1000,
      },
    });
  } catch (err) {
    send({ type: 'loadFailed', error: wire(err) });
  }
}
