// The runtime as the editor runs it: a real child process speaking the protocol over stdio.
// Round trips, streamed partial results, cancellation latency, prefix-cache hits while typing,
// recovery from garbage on stdin, and exit when the parent's end of stdin closes.

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CancellationTokenSource,
  type MessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from 'vscode-jsonrpc/node';
import {
  Complete,
  Generate,
  Initialize,
  Log,
  PartialResult,
  PROTOCOL_VERSION,
  RuntimeErrorCodes,
  Shutdown,
  Status,
} from '../../protocol/protocol.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('rpc');
after(() => tmp.remove());

function startRuntime(): { child: ChildProcessWithoutNullStreams; connection: MessageConnection; stderr: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', 'rpc'], { stdio: 'pipe' });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  connection.listen();
  return { child, connection, stderr: () => stderr };
}

const exited = (child: ChildProcessWithoutNullStreams, ms: number) =>
  new Promise<number | null>((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => reject(new Error(`the runtime did not exit within ${ms} ms`)), ms);
    child.once('exit', (code) => (clearTimeout(timer), resolve(code)));
  });

describe('runtime process over JSON-RPC', { timeout: 60_000 }, () => {
  let rt: ReturnType<typeof startRuntime>;
  let modelDir: string;
  before(async () => {
    modelDir = (await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 41, config: { max_position_embeddings: 512 } })).dir;
    rt = startRuntime();
    const init = await rt.connection.sendRequest(Initialize, {
      protocolVersion: PROTOCOL_VERSION,
      model: modelDir,
      dtype: 'fp32',
      cacheDir: join(tmp.path, 'cache'),
    });
    assert.equal(init.info.maxPositions, 512);
  });
  after(async () => {
    rt.connection.dispose();
    rt.child.stdin.end();
    await exited(rt.child, 10_000).catch(() => rt.child.kill());
  });

  test('complete streams partial results that add up to the reply', async () => {
    let streamed = '';
    const token = 'p1';
    const sub = rt.connection.onProgress(PartialResult, token, (p) => {
      streamed += p.delta;
    });
    const r = await rt.connection.sendRequest(Complete, {
      documentId: 'a.ts',
      prefix: 'function add(a, b) {',
      suffix: '\n}',
      options: { max_new_tokens: 6 },
      partialResultToken: token,
    });
    sub.dispose();
    assert.equal(r.completionTokens, 6);
    assert.equal(streamed, r.text);
    const g = await rt.connection.sendRequest(Generate, {
      prompt: 'Once upon a time',
      options: { max_new_tokens: 5, do_sample: true, seed: 1 },
    });
    assert.equal(g.completionTokens, 5);
  });

  test('a cancelled request stops within a step and replies Cancelled', async (t) => {
    const source = new CancellationTokenSource();
    let partials = 0,
      afterCancel = 0,
      cancelled = false;
    const token = 'p2';
    const sub = rt.connection.onProgress(PartialResult, token, () => {
      partials++;
      if (cancelled) afterCancel++;
      if (partials === 3) {
        cancelled = true;
        source.cancel();
      }
    });
    const started = performance.now();
    await assert.rejects(
      rt.connection.sendRequest(
        Generate,
        { prompt: 'Tell me a long story', options: { max_new_tokens: 400, min_new_tokens: 400 }, partialResultToken: token },
        source.token,
      ),
      (e: unknown) => e instanceof ResponseError && e.code === RuntimeErrorCodes.Cancelled,
    );
    sub.dispose();
    const status = await rt.connection.sendRequest(Status);
    assert.equal(status.running, 0);
    // The step under way when the cancel arrived may finish; no other step runs for this request.
    assert.ok(
      status.stepsAfterLastCancel !== undefined && status.stepsAfterLastCancel <= 1,
      `steps after cancel: ${status.stepsAfterLastCancel}`,
    );
    assert.ok(partials < 400 && performance.now() - started < 5000);
    t.diagnostic(
      `partial results already in flight after the cancel was sent: ${afterCancel}; model steps after it reached the runtime: ${status.stepsAfterLastCancel}`,
    );
  });

  test('typing a line char by char prefills only the new tokens', async () => {
    const line = 'export function clamp(value: number, min: number, max: number): number { return Math.min(max, Math.max(min, value)); }';
    const prefilled: number[] = [];
    for (let i = 50; i <= line.length; i++) {
      const r = await rt.connection.sendRequest(Complete, {
        documentId: 'b.ts',
        prefix: line.slice(0, i),
        suffix: '',
        options: { max_new_tokens: 2 },
      });
      prefilled.push(r.promptTokens - r.reusedTokens);
    }
    assert.ok(
      prefilled.slice(1).every((n) => n <= 3),
      `prefilled per keystroke: ${prefilled.join(',')}`,
    );
    const status = await rt.connection.sendRequest(Status);
    assert.ok(status.prefixCache.hits >= prefilled.length - 1);
  });

  test('unknown methods, bad params and garbage bytes get errors, and the runtime keeps serving', { timeout: 20_000 }, async () => {
    await assert.rejects(rt.connection.sendRequest('opt/frobnicate', {}), (e: unknown) => e instanceof ResponseError && e.code === -32601);
    await assert.rejects(
      rt.connection.sendRequest(Complete, { documentId: 'x', prefix: 42 as unknown as string, suffix: '' }),
      /`prefix` must be a string/,
    );
    await assert.rejects(
      rt.connection.sendRequest(Generate, { prompt: 'x', options: { temprature: 1 } as never }),
      /unknown option `temprature`/,
    );
    await assert.rejects(
      rt.connection.sendRequest(Generate, { prompt: 'x', options: { do_sample: true, temperature: -1 } }),
      /temperature/,
    );
    const logs: string[] = [];
    const sub = rt.connection.onNotification(Log, (p) => {
      logs.push(p.message);
    });
    // A frame whose body is not JSON, then bytes with no framing at all.
    const body = '{not json';
    rt.child.stdin.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    rt.child.stdin.write('garbage without any header\r\n\r\n');
    const r = await rt.connection.sendRequest(Complete, {
      documentId: 'c.ts',
      prefix: 'still alive',
      suffix: '',
      options: { max_new_tokens: 2 },
    });
    assert.equal(r.completionTokens, 2);
    sub.dispose();
    assert.match(rt.stderr(), /ignored malformed input/);
    assert.ok(logs.some((m) => m.includes('ignored malformed input')));
  });
});

test('requests before initialize are refused; the runtime exits when stdin closes', async () => {
  const rt = startRuntime();
  await assert.rejects(
    rt.connection.sendRequest(Complete, { documentId: 'a', prefix: 'x', suffix: '' }),
    (e: unknown) => e instanceof ResponseError && e.code === RuntimeErrorCodes.NotInitialized,
  );
  await assert.rejects(
    rt.connection.sendRequest(Initialize, { protocolVersion: 999, model: 'x' }),
    /protocol version 999 is not supported/,
  );
  await assert.rejects(
    rt.connection.sendRequest(Initialize, { protocolVersion: PROTOCOL_VERSION, model: join(tmp.path, 'missing') }),
    (e: unknown) => e instanceof ResponseError && e.code === RuntimeErrorCodes.ModelLoadFailed && /model folder not found/.test(e.message),
  );
  // A cache folder that is a file: one line naming it, not Node's raw error.
  const small = await writeOptCheckpoint(join(tmp.path, 'small'), { seed: 3 });
  const notAFolder = join(tmp.path, 'cache-is-a-file');
  writeFileSync(notAFolder, 'x');
  await assert.rejects(
    rt.connection.sendRequest(Initialize, { protocolVersion: PROTOCOL_VERSION, model: small.dir, dtype: 'fp32', cacheDir: notAFolder }),
    (e: unknown) =>
      e instanceof ResponseError &&
      e.code === RuntimeErrorCodes.ModelLoadFailed &&
      e.message.includes(notAFolder) &&
      /ENOTDIR/.test(e.message) &&
      !/\n\s+at /.test(e.message),
  );
  await rt.connection.sendRequest(Shutdown);
  rt.connection.dispose();
  rt.child.stdin.end();
  assert.equal(await exited(rt.child, 10_000), 0);
});

// A model with opt-350m's KV bytes per token (layers × hidden = 24 × 1024) in a narrow file: 384
// layers of 64. At a 1,400-token prompt one state is about 270 MiB, more than the fixed 256 MiB the
// prefix cache once had, which then kept nothing and re-ran the whole prompt on every keystroke.
describe('a KV-heavy model over JSON-RPC', { timeout: 240_000 }, () => {
  let rt: ReturnType<typeof startRuntime>;
  before(async () => {
    const { dir } = await writeOptCheckpoint(join(tmp.path, 'kv-heavy'), {
      seed: 43,
      config: {
        hidden_size: 128,
        num_attention_heads: 4,
        ffn_dim: 256,
        num_hidden_layers: 192,
        max_position_embeddings: 2048,
        word_embed_proj_dim: 128,
      },
    });
    rt = startRuntime();
    const init = await rt.connection.sendRequest(Initialize, {
      protocolVersion: PROTOCOL_VERSION,
      model: dir,
      dtype: 'int8',
      threads: 2,
      cacheDir: join(tmp.path, 'cache'),
    });
    assert.equal(init.info.kvBytesPerToken, 24 * 1024 * 2 * 4, 'opt-350m bytes per token');
  });
  after(async () => {
    rt.connection.dispose();
    rt.child.stdin.end();
    await exited(rt.child, 20_000).catch(() => rt.child.kill());
  });

  test('typing one more character reuses all but the last tokens of a 1,400-token prompt', async (t) => {
    const code =
      'export function clamp(value: number, min: number, max: number): number {\n  return Math.min(max, Math.max(min, value));\n}\n';
    let prompt = '';
    for (let i = 0; prompt.length < 5600; i++) prompt += code.replace('clamp', `clamp${i}`);
    const rows: string[] = [];
    let first = true;
    for (const typed of ['', 'c', 'co', 'con']) {
      const started = performance.now();
      const r = await rt.connection.sendRequest(Complete, {
        documentId: 'big.ts',
        prefix: prompt + typed,
        suffix: '',
        maxContextTokens: 1500,
        options: { max_new_tokens: 2 },
      });
      rows.push(`${r.promptTokens} prompt, ${r.reusedTokens} reused, ${(performance.now() - started).toFixed(0)} ms`);
      assert.ok(r.promptTokens > 1300, `${r.promptTokens} prompt tokens`);
      if (!first) assert.ok(r.reusedTokens >= r.promptTokens - 3, rows.join('; '));
      first = false;
    }
    const status = await rt.connection.sendRequest(Status);
    assert.ok(status.prefixCache.bytes > 256 * 2 ** 20, `the state kept is ${(status.prefixCache.bytes / 2 ** 20).toFixed(0)} MiB`);
    t.diagnostic(rows.join('; '));
  });
});
