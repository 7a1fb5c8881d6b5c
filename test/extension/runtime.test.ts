// The extension's runtime supervisor and engine adapters without an editor, against the real
// runtime process (run from source through tsx): start on first need, streaming, an abort reaching
// the model within a step, early stop, restart after a crash with backoff, giving up after
// repeated crashes, a model that cannot load, cancelling a load, settings-driven restarts, and a
// graceful stop that leaves no process behind.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CancelledError, EngineUnavailableError } from '../../extension/src/engines/completionEngine.js';
import { LocalRuntimeEngine } from '../../extension/src/engines/localRuntimeEngine.js';
import { OpenAiEngine } from '../../extension/src/engines/openaiEngine.js';
import { parseLoadProgress, shortProgress } from '../../extension/src/loadProgress.js';
import { memoryLogger } from '../../extension/src/logger.js';
import { runtimeLaunch } from '../../extension/src/runtimeLaunch.js';
import { type RuntimeInit, type RuntimeState, RuntimeSupervisor } from '../../extension/src/runtimeSupervisor.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { deviceRefused } from '../helpers/devices.js';
import { tempDir } from '../helpers/decoderHarness.js';
import { sourceLaunch } from '../helpers/runtimeProcess.js';

const tmp = tempDir('ext-runtime');
after(() => tmp.remove());

const repo = resolve(import.meta.dirname, '../..');
/** The runtime from source, as the extension would launch the bundle. */

function waitFor(s: RuntimeSupervisor, pred: (st: RuntimeState) => boolean, ms = 30_000): Promise<RuntimeState> {
  if (pred(s.state)) return Promise.resolve(s.state);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (sub.dispose(), reject(new Error(`state never matched; now ${JSON.stringify(s.state)}`))), ms);
    const sub = s.onDidChangeState((st) => {
      if (pred(st)) {
        clearTimeout(timer);
        sub.dispose();
        resolve(st);
      }
    });
  });
}

const alive = (pid: number | undefined) => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('runtime launch', () => {
  test("the editor's own executable runs as Node under Electron; a configured Node runs as is", () => {
    const electron = runtimeLaunch({
      extensionPath: '/ext',
      nodePath: '',
      execPath: '/usr/share/code/code',
      versions: { ...process.versions, electron: '29.4.0' },
      env: { A: '1' },
    });
    assert.equal(electron.command, '/usr/share/code/code');
    assert.deepEqual(electron.args, [join('/ext', 'dist', 'runtime', 'cli.js'), 'rpc']);
    assert.equal(electron.env.ELECTRON_RUN_AS_NODE, '1');
    assert.equal(electron.env.A, '1');
    const node = runtimeLaunch({
      extensionPath: '/ext',
      nodePath: ' /opt/node/bin/node ',
      execPath: '/usr/share/code/code',
      versions: process.versions,
      env: { ELECTRON_RUN_AS_NODE: '1' },
    });
    assert.equal(node.command, '/opt/node/bin/node');
    assert.equal(node.env.ELECTRON_RUN_AS_NODE, undefined);
    const plain = runtimeLaunch({
      extensionPath: '/ext',
      nodePath: '',
      execPath: '/usr/bin/node',
      versions: { ...process.versions, electron: undefined as unknown as string },
      env: {},
    });
    assert.equal(plain.env.ELECTRON_RUN_AS_NODE, undefined);
  });

  test('load progress messages become fractions for the status bar', () => {
    assert.deepEqual(parseLoadProgress('downloading model.safetensors: 12.5/250.0 MiB'), {
      message: 'downloading model.safetensors: 12.5/250.0 MiB',
      downloading: true,
      file: 'model.safetensors',
      fraction: 0.05,
    });
    assert.equal(parseLoadProgress('downloading a b.bin: 3.0 MiB').fraction, undefined);
    assert.equal(parseLoadProgress('loading /models/opt').downloading, false);
    assert.equal(shortProgress(parseLoadProgress('downloading x: 50/100 MiB')), '50%');
    assert.equal(shortProgress(parseLoadProgress('loading /m')), 'loading');
    assert.equal(shortProgress(undefined), 'starting');
  });
});

describe('runtime supervisor and local engine', { timeout: 120_000 }, () => {
  let modelDir: string;
  let supervisor: RuntimeSupervisor;
  let engine: LocalRuntimeEngine;
  const log = memoryLogger();
  let init: RuntimeInit;
  before(async () => {
    modelDir = (await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 5, tokenizer: true, config: { max_position_embeddings: 256 } }))
      .dir;
    init = { model: modelDir, dtype: 'fp32', cacheDir: join(tmp.path, 'cache') };
    supervisor = new RuntimeSupervisor({
      launch: sourceLaunch,
      init: () => init,
      log,
      restartPolicy: { initialDelayMs: 50, maxCrashes: 3 },
    });
    engine = new LocalRuntimeEngine(supervisor);
  });
  after(async () => {
    await supervisor.dispose();
  });

  test('starts on first need and streams a completion that adds up to the result', async () => {
    assert.equal(supervisor.state.kind, 'stopped');
    assert.equal(await engine.status(), undefined, 'no status while not running');
    let streamed = '';
    const r = await engine.run(
      { kind: 'complete', documentId: 'a', prompt: 'Hello there', suffix: '', options: { max_new_tokens: 5 } },
      { onText: (d) => void (streamed += d) },
    );
    assert.equal(supervisor.state.kind, 'ready');
    assert.equal(r.completionTokens, 5);
    assert.equal(streamed, r.text);
    assert.ok(alive(supervisor.pid));
    const g = await engine.run({ kind: 'generate', prompt: 'Once', options: { max_new_tokens: 3, do_sample: true, seed: 3 } });
    assert.equal(g.completionTokens, 3);
    const w = await engine.run({ kind: 'rewrite', prompt: 'Original:', options: { max_new_tokens: 2 } });
    assert.equal(w.completionTokens, 2);
    const status = await engine.status();
    assert.ok(status?.info?.modelId === modelDir);
  });

  test('an abort reaches the model within one step and rejects with CancelledError', async () => {
    const controller = new AbortController();
    let deltas = 0;
    const run = engine.run(
      { kind: 'generate', prompt: 'A long story', options: { max_new_tokens: 200, min_new_tokens: 200 } },
      {
        signal: controller.signal,
        onText: () => {
          if (++deltas === 3) controller.abort();
        },
      },
    );
    await assert.rejects(run, (e: unknown) => e instanceof CancelledError);
    const status = await engine.status();
    assert.equal(status?.running, 0);
    assert.ok(
      status?.stepsAfterLastCancel !== undefined && status.stepsAfterLastCancel <= 1,
      `steps after cancel: ${status?.stepsAfterLastCancel}`,
    );
    await assert.rejects(engine.run({ kind: 'complete', prompt: 'x', options: {} }, { signal: AbortSignal.abort() }), CancelledError);
  });

  test('onText returning true ends the request early with the text so far', async () => {
    let n = 0;
    const r = await engine.run(
      { kind: 'complete', documentId: 'b', prompt: 'Stop early', options: { max_new_tokens: 100, min_new_tokens: 100 } },
      { onText: () => ++n === 4 },
    );
    assert.equal(r.finishReason, 'stop');
    assert.equal(r.completionTokens, 4);
    const status = await engine.status();
    assert.equal(status?.running, 0, 'the runtime stopped generating');
  });

  test('a crash restarts the runtime with backoff and the engine keeps serving', async () => {
    const pid = supervisor.pid!;
    const restarting = waitFor(supervisor, (s) => s.kind === 'restarting');
    process.kill(pid, 'SIGKILL');
    const st = await restarting;
    assert.match((st as { reason: string }).reason, /SIGKILL/);
    await waitFor(supervisor, (s) => s.kind === 'ready');
    assert.notEqual(supervisor.pid, pid);
    const r = await engine.run({ kind: 'complete', documentId: 'c', prompt: 'after the crash', options: { max_new_tokens: 2 } });
    assert.equal(r.completionTokens, 2);
    assert.ok(supervisor.counters.crashes >= 1);
    assert.ok(log.lines.some((l) => /exited unexpectedly/.test(l)));
  });

  test('a request in flight when the runtime dies fails with EngineUnavailableError, not a hang', async () => {
    const run = engine.run(
      { kind: 'generate', prompt: 'long', options: { max_new_tokens: 400, min_new_tokens: 400 } },
      { onText: () => void process.kill(supervisor.pid!, 'SIGKILL') },
    );
    await assert.rejects(run, (e: unknown) => e instanceof EngineUnavailableError);
    await waitFor(supervisor, (s) => s.kind === 'ready');
  });

  test('settings changes restart only when what the runtime runs with changed', async () => {
    const pid = supervisor.pid;
    assert.equal(await supervisor.applySettings('nothing changed'), false);
    assert.equal(supervisor.pid, pid);
    init = { ...init, threads: 1 };
    assert.equal(await supervisor.applySettings('threads changed'), true);
    await waitFor(supervisor, (s) => s.kind === 'ready');
    assert.notEqual(supervisor.pid, pid);
    assert.equal(alive(pid), false, 'the old process is gone');
  });

  test("stop awaits the process's exit; the next need starts it again", async () => {
    const pid = supervisor.pid;
    await supervisor.stop();
    assert.equal(supervisor.state.kind, 'stopped');
    assert.equal(alive(pid), false);
    const r = await engine.run({ kind: 'complete', documentId: 'd', prompt: 'again', options: { max_new_tokens: 1 } });
    assert.equal(r.completionTokens, 1);
  });
});

describe('runtime supervisor failures', { timeout: 60_000 }, () => {
  test("a model that cannot load fails once with the runtime's reason, and is not retried", async () => {
    const log = memoryLogger();
    const s = new RuntimeSupervisor({ launch: sourceLaunch, init: () => ({ model: join(tmp.path, 'no-such-model') }), log });
    try {
      await assert.rejects(
        s.ready(),
        (e: unknown) => e instanceof EngineUnavailableError && /could not be loaded: .*model folder not found/.test((e as Error).message),
      );
      assert.equal(s.state.kind, 'failed');
      assert.equal((s.state as { fix: string }).fix, 'model');
      assert.equal(s.counters.starts, 1);
      assert.equal(s.pid, undefined, 'no idle process left behind');
      await assert.rejects(s.ready(), EngineUnavailableError);
      assert.equal(s.counters.starts, 1);
    } finally {
      await s.dispose();
    }
  });

  test('a device that cannot run here fails as a device problem (the fix is another device, not another model)', async (t) => {
    if (!deviceRefused('cuda')) return t.skip('this machine can run CUDA');
    const { dir } = await writeOptCheckpoint(join(tmp.path, 'device-model'), {
      seed: 6,
      tokenizer: true,
      config: { max_position_embeddings: 64 },
    });
    const s = new RuntimeSupervisor({ launch: sourceLaunch, init: () => ({ model: dir, device: 'cuda' }), log: memoryLogger() });
    try {
      await assert.rejects(
        s.ready(),
        (e: unknown) =>
          e instanceof EngineUnavailableError &&
          /^the device could not be used: device cuda is not available: .*; or choose device auto or cpu$/.test((e as Error).message),
      );
      assert.equal((s.state as { fix: string }).fix, 'device');
    } finally {
      await s.dispose();
    }
  });

  test('repeated crashes stop the retries and say why', async () => {
    const log = memoryLogger();
    const crashing = () => ({
      command: process.execPath,
      args: ['-e', 'process.stderr.write("boom: missing libonnxruntime.so\\n"); process.exit(3)'],
      env: process.env,
      cwd: repo,
    });
    const s = new RuntimeSupervisor({
      launch: crashing,
      init: () => ({ model: 'x' }),
      log,
      restartPolicy: { initialDelayMs: 20, maxCrashes: 3 },
    });
    const delays: number[] = [];
    s.onDidChangeState((st) => st.kind === 'restarting' && delays.push(st.delayMs));
    try {
      await assert.rejects(
        s.ready(),
        (e: unknown) =>
          e instanceof EngineUnavailableError &&
          /stopped 3 times/.test((e as Error).message) &&
          /boom: missing libonnxruntime/.test((e as Error).message),
      );
      assert.deepEqual(delays, [20, 40], 'the delay doubles');
      assert.equal(s.state.kind, 'failed');
      assert.equal(s.counters.starts, 3);
      assert.ok(log.lines.some((l) => /exit code 3/.test(l)));
    } finally {
      await s.dispose();
    }
  });

  test('a missing Node executable is reported as such', async () => {
    const s = new RuntimeSupervisor({
      launch: () => ({ command: join(tmp.path, 'no-node'), args: [], env: process.env, cwd: repo }),
      init: () => ({ model: 'x' }),
      log: memoryLogger(),
      restartPolicy: { initialDelayMs: 10, maxCrashes: 2 },
    });
    try {
      await assert.rejects(s.ready(), /cannot start .*no-node.*nodePath/);
    } finally {
      await s.dispose();
    }
  });

  test('cancelling a load stops the process and holds the runtime until asked', async () => {
    // A runtime that never finishes initializing stands in for a long download.
    const hanging = () => ({
      command: process.execPath,
      args: ['-e', 'process.stdin.resume(); setInterval(() => {}, 1000)'],
      env: process.env,
      cwd: repo,
    });
    const s = new RuntimeSupervisor({ launch: hanging, init: () => ({ model: 'facebook/opt-66b' }), log: memoryLogger() });
    try {
      const waiting = assert.rejects(s.ready(), EngineUnavailableError);
      assert.equal(s.state.kind, 'loading');
      const pid = s.pid;
      await s.cancelLoad();
      await waiting;
      assert.equal(s.state.kind, 'held');
      assert.equal(alive(pid), false);
      await assert.rejects(s.ready(), /stopped \(loading was cancelled\)/);
      s.start();
      assert.equal((s.state as RuntimeState).kind, 'loading', 'starts again when asked');
    } finally {
      await s.dispose();
    }
    assert.equal(s.pid, undefined);
  });

  test('ready() gives up on its own abort signal while the runtime loads', async () => {
    const hanging = () => ({
      command: process.execPath,
      args: ['-e', 'process.stdin.resume(); setInterval(() => {}, 1000)'],
      env: process.env,
      cwd: repo,
    });
    const s = new RuntimeSupervisor({ launch: hanging, init: () => ({ model: 'm' }), log: memoryLogger(), shutdownGraceMs: 200 });
    try {
      const c = new AbortController();
      const waiting = s.ready(c.signal);
      c.abort();
      await assert.rejects(waiting, CancelledError);
    } finally {
      await s.dispose();
    }
  });
});

describe('OpenAI-compatible engine adapter', () => {
  test('maps request kinds and options, streams, and stops early', async () => {
    const bodies: Record<string, unknown>[] = [];
    const server = createServer((req, res) => {
      let raw = '';
      req.on('data', (d) => (raw += d));
      req.on('end', () => {
        if (req.url?.endsWith('/models')) {
          res.setHeader('content-type', 'application/json');
          return res.end(JSON.stringify({ data: [{ id: 'opt-test', max_model_len: 2048 }] }));
        }
        bodies.push(JSON.parse(raw));
        res.setHeader('content-type', 'text/event-stream');
        for (const t of ['one', ' two', ' three'])
          res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: t, finish_reason: null }] })}\n\n`);
        res.write(
          `data: ${JSON.stringify({ choices: [{ index: 0, text: '', finish_reason: 'length' }], usage: { prompt_tokens: 2, completion_tokens: 3 } })}\n\n`,
        );
        res.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    const engine = new OpenAiEngine({ baseUrl: url, apiKey: 'k' });
    try {
      let streamed = '';
      const r = await engine.run(
        { kind: 'complete', documentId: 'd', prompt: 'p', options: { max_new_tokens: 3, stop_strings: ['\n'] }, maxContextTokens: 100 },
        { onText: (d) => void (streamed += d) },
      );
      assert.equal(r.text, 'one two three');
      assert.equal(streamed, r.text);
      assert.equal(bodies[0]!.max_tokens, 3);
      assert.deepEqual(bodies[0]!.stop, ['\n']);
      assert.equal(bodies[0]!.truncate_prompt_tokens, 100);
      const early = await engine.run({ kind: 'generate', prompt: 'p', options: {} }, { onText: (_d, soFar) => soFar.includes('two') });
      assert.equal(early.text, 'one two');
      assert.equal(early.finishReason, 'stop');
      await assert.rejects(engine.run({ kind: 'rewrite', prompt: 'p', options: {} }, { signal: AbortSignal.abort() }), CancelledError);
      assert.equal((await engine.status())?.info?.modelId, 'opt-test');
    } finally {
      await engine.dispose();
      server.close();
    }
  });
});
