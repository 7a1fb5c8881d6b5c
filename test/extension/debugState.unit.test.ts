// The extension's debug state and what it is made of, outside VS Code: the assembled JSON (the
// shape the e2e harness reads), the state file written aside and renamed after a change, and the
// per-model task memo kept in globalState.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DebugRecords, type DebugSources, StateFileWriter, collectDebugState } from '../../extension/src/debugState.js';
import type { CompletionEngine, EngineInfo, EngineStatus } from '../../extension/src/engines/completionEngine.js';
import { memoryLogger } from '../../extension/src/logger.js';
import { MODEL_TASKS_KEPT, MODEL_TASKS_KEY, type MementoLike, ModelTaskMemo } from '../../extension/src/modelTaskMemo.js';
import type { RuntimeState } from '../../extension/src/runtimeSupervisor.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sources(
  state: RuntimeState,
  engine: 'local' | 'openai',
  status: () => Promise<EngineStatus>,
): DebugSources & { calls: { status: number } } {
  const calls = { status: 0 };
  const records = new DebugRecords();
  records.inlineCounters.requests = 3;
  records.generate = { prompt: 'Once', inserted: ' upon', tokens: 1, seconds: 0.5, finishReason: 'length', cancelled: false };
  records.pendingRewrite = () => ({ id: 1, label: 'Shorten', uri: 'file:///a.md', original: 'a b', proposed: 'a', version: 2 });
  return {
    calls,
    extensionVersion: '0.1.0',
    config: {
      engine,
      model: 'facebook/opt-125m',
      inlineEnabled: true,
      inlineEnabledFor: (id: string) => id !== 'plaintext',
      snapshot: () => ({ engine, model: 'facebook/opt-125m' }),
    },
    supervisor: { state, pid: 42, counters: { starts: 1, crashes: 0, restarts: 0 }, lastExit: undefined },
    engine: () => ({ status: () => (calls.status++, status()) }) as unknown as CompletionEngine,
    statusBar: { kind: 'ready', text: '$(check) OPT' },
    contextKeys: () => ({ 'optComplete.runtimeReady': state.kind === 'ready' }),
    cacheStats: () => ({ entries: 2, hits: 1, misses: 1 }),
    activeLanguage: () => 'plaintext',
    busy: () => 'generating',
    tasks: () => ['generate'],
    records,
  };
}

describe('debug state', () => {
  const ready: RuntimeState = { kind: 'ready', info: { modelId: 'facebook/opt-125m' } as EngineInfo };
  const status = { state: 'ready' } as unknown as EngineStatus;

  test('every section the e2e harness reads, from the parts that own it', async () => {
    const src = sources(ready, 'local', async () => status);
    const state = await collectDebugState(src);
    assert.deepEqual(JSON.parse(JSON.stringify(state)), {
      extensionVersion: '0.1.0',
      engine: 'local',
      runtime: { state: 'ready', detail: ready, pid: 42, model: 'facebook/opt-125m', counters: { starts: 1, crashes: 0, restarts: 0 } },
      engineStatus: { state: 'ready' },
      statusBar: { kind: 'ready', text: '$(check) OPT' },
      contextKeys: { 'optComplete.runtimeReady': true },
      inline: {
        enabled: true,
        activeLanguage: 'plaintext',
        activeLanguageEnabled: false,
        counters: { requests: 3, cacheHits: 0, engineCalls: 0, shown: 0, empty: 0, cancelled: 0, errors: 0, accepted: 0 },
        cache: { entries: 2, hits: 1, misses: 1 },
      },
      generate: {
        busy: 'generating',
        last: { prompt: 'Once', inserted: ' upon', tokens: 1, seconds: 0.5, finishReason: 'length', cancelled: false },
      },
      rewrite: { pending: { id: 1, label: 'Shorten', uri: 'file:///a.md', original: 'a b', proposed: 'a', version: 2 } },
      heads: { tasks: ['generate'] },
      settings: { engine: 'local', model: 'facebook/opt-125m' },
    });
  });

  test('a local runtime that is not ready is not asked for its status (that would start it); a failing engine reports its error', async () => {
    const loading = sources({ kind: 'loading', model: 'facebook/opt-125m' }, 'local', async () => status);
    assert.equal((await collectDebugState(loading)).engineStatus, undefined);
    assert.equal(loading.calls.status, 0);
    const remote = sources({ kind: 'stopped' }, 'openai', async () => {
      throw new Error('connection refused');
    });
    assert.deepEqual((await collectDebugState(remote)).engineStatus, { error: 'connection refused' });
  });
});

describe('state file', () => {
  const tmp = { path: mkdtempSync(join(tmpdir(), 'opt-complete-ext-debug-state-')) };
  after(() => rmSync(tmp.path, { recursive: true, force: true }));

  test('changes within the delay are written once, whole, by renaming a file written aside', async () => {
    const file = join(tmp.path, 'state.json');
    let produced = 0;
    const writer = new StateFileWriter(async () => ({ n: ++produced }), memoryLogger(), 20);
    writer.schedule(file);
    writer.schedule(file);
    writer.schedule(file);
    await sleep(120);
    assert.equal(produced, 1);
    assert.equal(readFileSync(file, 'utf8'), '{\n  "n": 1\n}\n');
    assert.deepEqual(readdirSync(tmp.path), ['state.json'], 'no temporary file is left');
    writer.schedule(file);
    await sleep(120);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { n: 2 });
  });

  test('no file set: nothing; disposed: the pending write is dropped; a failed write is logged', async () => {
    let produced = 0;
    const log = memoryLogger();
    const writer = new StateFileWriter(async () => ({ n: ++produced }), log, 20);
    writer.schedule('');
    const file = join(tmp.path, 'dropped.json');
    writer.schedule(file);
    writer.dispose();
    await sleep(80);
    assert.equal(produced, 0);
    assert.equal(existsSync(file), false);
    writer.schedule(join(tmp.path, 'no-such-dir', 'state.json'));
    await sleep(120);
    assert.equal(log.lines.length, 1);
    assert.match(log.lines[0]!, /^warn: cannot write the debug state to .*no-such-dir/);
  });
});

describe('model task memo', () => {
  function memento(): MementoLike & { data: Map<string, unknown> } {
    const data = new Map<string, unknown>();
    return { data, get: <T>(k: string) => data.get(k) as T | undefined, update: async (k: string, v: unknown) => void data.set(k, v) };
  }
  const info = (modelId: string, tasks?: EngineInfo['tasks']) => ({ modelId, tasks }) as EngineInfo;

  test("a model's tasks are recalled by its id; an unknown model has none; an older info without tasks generates", () => {
    const state = memento();
    const memo = new ModelTaskMemo(state);
    assert.equal(memo.recall('m'), undefined);
    memo.remember(info('m', ['classify', 'embed']));
    memo.remember(info('old'));
    assert.deepEqual(memo.recall('m'), ['classify', 'embed']);
    assert.deepEqual(memo.recall('old'), ['generate']);
    assert.deepEqual(Object.keys(state.data.get(MODEL_TASKS_KEY) as object), ['m', 'old']);
  });

  test('the newest models are kept, a reloaded one becoming the newest; unchanged tasks write nothing', () => {
    const state = memento();
    const memo = new ModelTaskMemo(state);
    for (let i = 0; i < MODEL_TASKS_KEPT; i++) memo.remember(info(`m${i}`, ['generate']));
    memo.remember(info('m0', ['answer']));
    memo.remember(info('new', ['generate']));
    const keys = Object.keys(state.data.get(MODEL_TASKS_KEY) as object);
    assert.equal(keys.length, MODEL_TASKS_KEPT);
    assert.equal(keys[0], 'm2', 'm1 was the oldest, and m0 was refreshed');
    assert.deepEqual(keys.slice(-2), ['m0', 'new']);
    const before = state.data.get(MODEL_TASKS_KEY);
    memo.remember(info('new', ['generate']));
    assert.equal(state.data.get(MODEL_TASKS_KEY), before);
  });
});
