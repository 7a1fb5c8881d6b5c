// Loading paths a user meets first: an ONNX export in the transformers.js / Optimum layout taken
// as it is, and the `opt` CLI (logits, tokenize, convert) run as a real child process.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeOnnxModel } from '../../runtime/src/convert.js';
import { loadOptModel } from '../../runtime/src/model.js';
import { DEFAULT_GRAPH_OPTIONS } from '../../runtime/src/onnx/optGraph.js';
import { type Fixture, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { ids64, maxAbsDiff, naiveLogits, tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('export-cli');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');
const PROMPT = [2, 31414, 232, 328, 740, 1140];

describe('ONNX exports in the transformers.js layout', () => {
  let exportDir: string;
  let f: Fixture;
  before(async () => {
    f = await writeOptCheckpoint(join(tmp.path, 'src'), { tokenizer: true });
    // A second folder holding only config, tokenizer and onnx/: what a transformers.js repo ships.
    exportDir = join(tmp.path, 'exported');
    await writeOptCheckpoint(exportDir, { tokenizer: true });
    for (const w of ['model.safetensors']) await rm(join(exportDir, w));
    await mkdir(join(exportDir, 'onnx'));
    const plain = { ...DEFAULT_GRAPH_OPTIONS, fused: false, logitsToKeepInput: false };
    await writeOnnxModel(f.dir, join(exportDir, 'onnx', 'model.onnx'), plain, undefined, join(exportDir, 'onnx', 'model.onnx_data'));
    await writeOnnxModel(
      f.dir,
      join(exportDir, 'onnx', 'model_quantized.onnx'),
      { ...plain, dtype: 'int8' },
      undefined,
      join(exportDir, 'onnx', 'model_quantized.onnx_data'),
    );
  });

  test('onnx/model.onnx is used as it is, and all-position logits are cut to the last', async () => {
    const model = await loadOptModel(exportDir, { dtype: 'fp32', cacheDir });
    assert.equal(model.source.kind, 'onnx-export');
    assert.match(model.source.modelPath, /onnx[/\\]model\.onnx$/);
    const out = await model.decoder.forward({
      inputIds: ids64([PROMPT]),
      batch: 1,
      attentionMask: ids64([PROMPT.map(() => 1)]),
      logitsToKeep: 1,
    });
    assert.ok(maxAbsDiff(out.logits, naiveLogits(f, [PROMPT])[0]!.at(-1)!) < 1e-4);
    await model.dispose();
  });

  test('--dtype int8 picks model_quantized.onnx; a dtype with no export is a clear error', async () => {
    const model = await loadOptModel(exportDir, { dtype: 'int8', cacheDir });
    assert.match(model.source.modelPath, /model_quantized\.onnx$/);
    await model.dispose();
    await assert.rejects(loadOptModel(exportDir, { dtype: 'int4', cacheDir }), /no int4 export found.*model\.onnx, model_quantized\.onnx/);
  });
});

describe('opt CLI', () => {
  let f: Fixture;
  before(async () => {
    f = await writeOptCheckpoint(join(tmp.path, 'cli-model'), { tokenizer: true, seed: 5 });
  });
  const opt = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', ...args, '--cache-dir', cacheDir], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  test('logits --ids prints last-position logits equal to the reference, and top-k in order', () => {
    const r = opt('logits', '--model', f.dir, '--dtype', 'fp32', '--ids', PROMPT.join(','), '--top-k', '3');
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout) as { ids: number[]; logits: number[]; top_k: { id: number; logit: number; token: string }[] };
    assert.deepEqual(json.ids, PROMPT);
    const ref = naiveLogits(f, [PROMPT])[0]!.at(-1)!;
    assert.ok(maxAbsDiff(json.logits, ref) < 1e-4);
    assert.equal(json.top_k.length, 3);
    const sorted = [...ref].map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
    assert.deepEqual(
      json.top_k.map((t) => t.id),
      sorted.slice(0, 3).map(([, i]) => i),
    );
  });

  test('logits --text tokenizes with BOS, like --ids of the same tokens', () => {
    const tok = JSON.parse(opt('tokenize', '--model', f.dir, '--text', 'Hello world').stdout) as { ids: number[]; tokens: string[] };
    assert.equal(tok.ids[0], 2);
    assert.equal(tok.tokens[0], '</s>');
    const byText = JSON.parse(opt('logits', '--model', f.dir, '--dtype', 'fp32', '--text', 'Hello world', '--top-k', '1').stdout) as {
      ids: number[];
      logits: number[];
    };
    assert.deepEqual(byText.ids, tok.ids);
    assert.ok(maxAbsDiff(byText.logits, naiveLogits(f, [tok.ids])[0]!.at(-1)!) < 1e-4);
  });

  test('convert reports the cached model on the second run', () => {
    const first = JSON.parse(opt('convert', '--model', f.dir, '--dtype', 'int4').stdout) as { converted: boolean; model_path: string };
    const second = JSON.parse(opt('convert', '--model', f.dir, '--dtype', 'int4').stdout) as { converted: boolean; model_path: string };
    assert.equal(first.converted, true);
    assert.equal(second.converted, false);
    assert.equal(second.model_path, first.model_path);
  });

  test('generate streams the greedy continuation; --json matches it; seeded sampling repeats', () => {
    const streamed = opt('generate', '--model', f.dir, '--dtype', 'fp32', 'Hello world', '--max-new-tokens', '6');
    assert.equal(streamed.code, 0, streamed.stderr);
    const json = JSON.parse(
      opt('generate', '--model', f.dir, '--dtype', 'fp32', 'Hello world', '--max-new-tokens', '6', '--json').stdout,
    ) as { generated_text: string; token_ids: number[]; finish_reason: string }[];
    assert.equal(streamed.stdout, `${json[0]!.generated_text}\n`);
    assert.equal(json[0]!.token_ids.length, 6);
    assert.equal(json[0]!.finish_reason, 'length');
    const sample = [
      'generate',
      '--model',
      f.dir,
      'Hi',
      '--do-sample',
      '--top-p',
      '0.9',
      '--temperature',
      '0.7',
      '--seed',
      '7',
      '--max-new-tokens',
      '8',
      '--num-return-sequences',
      '2',
    ];
    const a = opt(...sample),
      b = opt(...sample);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
    assert.match(a.stdout, /--- \[0\] length[\s\S]*--- \[1\] length/);
  });

  test('bad input exits with code 2 and a message saying what to do', () => {
    const cases: [string[], RegExp][] = [
      [['logits', '--model', join(tmp.path, 'nope'), '--ids', '2'], /model folder not found/],
      [['logits', '--model', f.dir, '--ids', '2,99999999'], /"99999999" is not a token id in \[0, 50272\)/],
      [['logits', '--model', f.dir, '--dtype', 'int3', '--ids', '2'], /--dtype must be one of auto, fp32, fp16, int8, int4/],
      [['logits', '--model', f.dir], /--ids 2,133,… or --text/],
      [['frobnicate'], /unknown command "frobnicate"/],
      [['generate', '--model', f.dir, 'Hi', '--do-sample', '--temperature=-1'], /temperature must be a strictly positive number/],
      [['generate', '--model', f.dir, 'Hi', '--do-sample', '--top-p', '1.5'], /top_p/],
      [['generate', '--model', f.dir], /generate needs a prompt/],
      [['generate', '--model', f.dir, Array(80).fill('word').join(' ')], /model has 64 positions/],
      [['logits', '--model', f.dir, '--ids', Array(70).fill(5).join(','), '--dtype', 'fp32'], /exceeds the model's 64 positions/],
    ];
    for (const [args, message] of cases) {
      const r = opt(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, 'no stack trace for bad input');
    }
  });
});
