// The ONNX decoder against the naive float64 reference forward pass: every config variant, with
// and without the KV cache, left-padded batches, every checkpoint layout, and the quantized
// precisions within stated error bounds.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import { type OptDecoder, PREFILL_CHUNK } from '../../runtime/src/decoder.js';
import type { KvCacheLayout } from '../../runtime/src/onnx/optGraph.js';
import { type Fixture, type FixtureOptions, writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { argmax, ids64, maxAbs, maxAbsDiff, naiveLogits, openDecoder, row, tempDir } from '../helpers/decoderHarness.js';

const TOL = 1e-4;
const PROMPT = [2, 713, 16, 10, 1296, 9, 5, 1763, 4];

const tmp = tempDir('parity');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');
let fixtureCount = 0;
const fixture = (options: FixtureOptions) =>
  writeOptCheckpoint(join(tmp.path, `model-${fixtureCount++}`), { tokenizer: false, ...options });

/** Contrib ops with the CPU's append cache and the GPU's in-place cache; plain ops with Optimum's Concat cache. */
const GRAPHS: [boolean, KvCacheLayout][] = [
  [true, 'append'],
  [true, 'inplace'],
  [false, 'concat'],
];

const VARIANTS: [string, FixtureOptions][] = [
  ['125m-style (pre-LN)', { preset: '125m-style' }],
  ['350m-style (post-LN, project_in/out)', { preset: '350m-style', keyStyle: 'decoder' }],
  ['no biases, no LayerNorm affine', { preset: '125m-style', config: { enable_bias: false, layer_norm_elementwise_affine: false } }],
  ['final LayerNorm removed', { preset: '125m-style', config: { _remove_final_layer_norm: true } }],
  ['head_dim 8 and 3 layers', { preset: '125m-style', config: { num_attention_heads: 4, hidden_size: 32, num_hidden_layers: 3 } }],
];

for (const [name, options] of VARIANTS) {
  describe(`fp32 parity: ${name}`, () => {
    let f: Fixture;
    before(async () => {
      f = await fixture(options);
    });

    for (const [fused, kvCache] of GRAPHS) {
      const ops = `${fused ? 'contrib ops' : 'plain ops'}, ${kvCache} cache`;
      test(`every position of a prompt matches the reference (${ops})`, async () => {
        const dec = await openDecoder(f, cacheDir, 'fp32', fused, kvCache);
        const out = await dec.forward({
          inputIds: ids64([PROMPT]),
          batch: 1,
          attentionMask: ids64([PROMPT.map(() => 1)]),
          logitsToKeep: PROMPT.length,
        });
        const ref = naiveLogits(f, [PROMPT]);
        for (let k = 0; k < PROMPT.length; k++)
          assert.ok(maxAbsDiff(row(out.logits, f.config.vocab_size, out.keep, 0, k), ref[0]![k]!) < TOL, `position ${k}`);
        await dec.release();
      });

      test(`prefill then token-by-token decode with the KV cache matches (${ops})`, async () => {
        const dec = await openDecoder(f, cacheDir, 'fp32', fused, kvCache);
        const ref = naiveLogits(f, [PROMPT])[0]!;
        let out = await dec.forward({
          inputIds: ids64([PROMPT.slice(0, 4)]),
          batch: 1,
          attentionMask: ids64([[1, 1, 1, 1]]),
          logitsToKeep: 1,
        });
        assert.ok(maxAbsDiff(out.logits, ref[3]!) < TOL, 'prefill');
        for (let t = 4; t < PROMPT.length; t++) {
          out = await dec.forward({
            inputIds: ids64([[PROMPT[t]!]]),
            batch: 1,
            attentionMask: ids64([Array(t + 1).fill(1)]),
            past: out.present,
            logitsToKeep: 1,
          });
          assert.equal(out.present.length, t + 1);
          assert.ok(maxAbsDiff(out.logits, ref[t]!) < TOL, `decode step at position ${t}`);
        }
        await dec.release();
      });

      test(`left-padded batch rows equal single prompts, padded rows stay finite (${ops})`, async () => {
        const dec = await openDecoder(f, cacheDir, 'fp32', fused, kvCache);
        const short = PROMPT.slice(0, 4);
        const ids = [[1, 1, 1, ...short], PROMPT.slice(0, 7), [1, 1, 1, 1, 1, 1, 1]];
        const mask = [
          [0, 0, 0, 1, 1, 1, 1],
          [1, 1, 1, 1, 1, 1, 1],
          [0, 0, 0, 0, 0, 0, 0],
        ];
        let out = await dec.forward({ inputIds: ids64(ids), batch: 3, attentionMask: ids64(mask), logitsToKeep: 1 });
        const v = f.config.vocab_size;
        assert.ok(maxAbsDiff(row(out.logits, v, 1, 0, 0), naiveLogits(f, [short])[0]![3]!) < TOL, 'padded row');
        assert.ok(maxAbsDiff(row(out.logits, v, 1, 1, 0), naiveLogits(f, [PROMPT.slice(0, 7)])[0]![6]!) < TOL, 'full row');
        assert.ok(row(out.logits, v, 1, 2, 0).every(Number.isFinite), 'fully padded row has no NaN');
        // One decode step for the whole batch keeps the per-row equality.
        const next = [50, 60, 70];
        out = await dec.forward({
          inputIds: ids64(next.map((n) => [n])),
          batch: 3,
          attentionMask: ids64(mask.map((m) => [...m, 1])),
          past: out.present,
          logitsToKeep: 1,
        });
        assert.ok(maxAbsDiff(row(out.logits, v, 1, 0, 0), naiveLogits(f, [[...short, 50]])[0]![4]!) < TOL, 'padded row, decode');
        assert.ok(maxAbsDiff(row(out.logits, v, 1, 1, 0), naiveLogits(f, [[...PROMPT.slice(0, 7), 60]])[0]![7]!) < TOL, 'full row, decode');
        assert.ok(row(out.logits, v, 1, 2, 0).every(Number.isFinite));
        await dec.release();
      });
    }
  });
}

for (const kvCache of ['append', 'inplace'] as const)
  describe(`the ${kvCache} KV cache buffer`, () => {
    let f: Fixture;
    before(async () => {
      f = await fixture({ preset: '125m-style', seed: 17, config: { max_position_embeddings: 200 } });
    });

    test('a multi-token extension of a cached prefix matches every position', async () => {
      const dec = await openDecoder(f, cacheDir, 'fp32', true, kvCache);
      assert.ok(dec.inPlaceCache);
      assert.equal(dec.cacheLayout, kvCache);
      const ref = naiveLogits(f, [PROMPT])[0]!;
      const first = await dec.forward({
        inputIds: ids64([PROMPT.slice(0, 5)]),
        batch: 1,
        attentionMask: ids64([[1, 1, 1, 1, 1]]),
        logitsToKeep: 1,
      });
      const ext = await dec.forward({
        inputIds: ids64([PROMPT.slice(5)]),
        batch: 1,
        attentionMask: ids64([PROMPT.map(() => 1)]),
        past: first.present,
        logitsToKeep: 4,
      });
      for (let k = 0; k < 4; k++)
        assert.ok(maxAbsDiff(row(ext.logits, f.config.vocab_size, 4, 0, k), ref[5 + k]!) < TOL, `position ${5 + k}`);
      await dec.release();
    });

    test('the cache grows past its capacity without changing the logits, and reuses caller-owned logits', async () => {
      const dec = await openDecoder(f, cacheDir, 'fp32', true, kvCache);
      const ids = Array.from({ length: 70 }, (_, i) => 4 + ((i * 37) % 900));
      const ref = naiveLogits(f, [ids])[0]!;
      let out = await dec.forward({
        inputIds: ids64([ids.slice(0, 60)]),
        batch: 1,
        attentionMask: ids64([Array(60).fill(1)]),
        logitsToKeep: 1,
      });
      assert.equal(out.present.capacity, 64);
      const buffer = new Float32Array(f.config.vocab_size);
      for (let t = 60; t < 70; t++) {
        out = await dec.forward({
          inputIds: ids64([[ids[t]!]]),
          batch: 1,
          attentionMask: ids64([Array(t + 1).fill(1)]),
          past: out.present,
          logitsToKeep: 1,
          logitsBuffer: buffer,
        });
        assert.equal(out.logits.buffer, buffer.buffer, 'logits written into the caller buffer');
        assert.ok(maxAbsDiff(out.logits, ref[t]!) < TOL, `position ${t}`);
      }
      assert.equal(out.present.capacity, 128);
      await dec.release();
    });

    test('with room reserved the cache grows in place: same storage, same logits, the graph sees only what is needed', async () => {
      const dec = await openDecoder(f, cacheDir, 'fp32', true, kvCache);
      const ids = Array.from({ length: 140 }, (_, i) => 4 + ((i * 53) % 900));
      const ref = naiveLogits(f, [ids])[0]!;
      let out = await dec.forward({
        inputIds: ids64([ids.slice(0, 60)]),
        batch: 1,
        attentionMask: ids64([Array(60).fill(1)]),
        logitsToKeep: 1,
        reserve: 150,
      });
      assert.equal(out.present.capacity, 64);
      assert.equal(out.present.room, 192);
      const storage = out.present.tensors.map((t) => (t.data as Float32Array).buffer);
      for (let t = 60; t < 140; t++) {
        out = await dec.forward({
          inputIds: ids64([[ids[t]!]]),
          batch: 1,
          attentionMask: ids64([Array(t + 1).fill(1)]),
          past: out.present,
          logitsToKeep: 1,
        });
        assert.ok(maxAbsDiff(out.logits, ref[t]!) < TOL, `position ${t} (capacity ${out.present.capacity})`);
      }
      assert.equal(out.present.capacity, 192);
      assert.deepEqual(
        out.present.tensors.map((t) => (t.data as Float32Array).buffer),
        storage,
        'no new storage while within the room',
      );
      await dec.release();
    });
  });

describe('long inputs to a buffer cache run in chunks', () => {
  test(`a ${2 * PREFILL_CHUNK + 88}-token prompt (3 chunks) gives the reference logits, then decodes on`, async () => {
    const f = await fixture({ preset: '125m-style', seed: 23, config: { max_position_embeddings: 1024 } });
    const n = 2 * PREFILL_CHUNK + 88;
    const ids = Array.from({ length: n + 1 }, (_, i) => 4 + ((i * 7919) % 50000));
    const ref = naiveLogits(f, [ids])[0]!;
    const dec = await openDecoder(f, cacheDir);
    const out = await dec.forward({
      inputIds: ids64([ids.slice(0, n)]),
      batch: 1,
      attentionMask: ids64([Array(n).fill(1)]),
      logitsToKeep: 3,
    });
    assert.equal(out.present.length, n);
    for (let k = 0; k < 3; k++)
      assert.ok(maxAbsDiff(row(out.logits, f.config.vocab_size, 3, 0, k), ref[n - 3 + k]!) < TOL, `position ${n - 3 + k}`);
    const next = await dec.forward({
      inputIds: ids64([[ids[n]!]]),
      batch: 1,
      attentionMask: ids64([Array(n + 1).fill(1)]),
      past: out.present,
      logitsToKeep: 1,
    });
    assert.ok(maxAbsDiff(next.logits, ref[n]!) < TOL, 'decode step after the chunks');
    await dec.release();
  });
});

describe('checkpoint layouts give the same model', () => {
  const LAYOUTS: FixtureOptions[] = [
    { format: 'safetensors', dtype: 'F32', lmHead: 'absent' },
    { format: 'safetensors', dtype: 'F16', lmHead: 'copy' },
    { format: 'safetensors', dtype: 'BF16', lmHead: 'untied' },
    { format: 'safetensors-sharded', dtype: 'F16', lmHead: 'absent', keyStyle: 'decoder' },
    { format: 'bin', dtype: 'F32', lmHead: 'shared' },
    { format: 'bin', dtype: 'F16', lmHead: 'absent', keyStyle: 'decoder', preset: '350m-style' },
    { format: 'bin', dtype: 'BF16', lmHead: 'untied' },
    { format: 'bin-sharded', dtype: 'F32', lmHead: 'copy' },
  ];
  for (const layout of LAYOUTS) {
    test(`${layout.format}, ${layout.dtype}, lm_head ${layout.lmHead}, ${layout.keyStyle ?? 'model.decoder'} keys, ${layout.preset ?? '125m-style'}`, async () => {
      const f = await fixture({ ...layout, seed: 7 });
      const dec = await openDecoder(f, cacheDir);
      const out = await dec.forward({ inputIds: ids64([PROMPT]), batch: 1, attentionMask: ids64([PROMPT.map(() => 1)]), logitsToKeep: 1 });
      assert.ok(maxAbsDiff(out.logits, naiveLogits(f, [PROMPT])[0]!.at(-1)!) < TOL);
      await dec.release();
    });
  }
});

describe('reduced precisions stay within their error bounds', () => {
  // Bounds relative to the largest reference logit; measured errors are reported in the issue notes.
  const BOUNDS = { fp16: 0.01, int8: 0.05, int4: 0.4 } as const;
  // hidden 32 (one quantization block per row) and hidden 256 (int8's 128-wide blocks, several per
  // row, and token embeddings gathered from the quantized tied lm_head). Random weights give nearly
  // tied logits, so top-1 agreement says little for int4 at this width (5/9 at error 0.28).
  const FIXTURES = [
    [
      'hidden 32',
      { preset: '125m-style', seed: 3 },
      [
        ['fp16', false],
        ['fp16', true],
        ['int8', true],
        ['int4', true],
      ],
    ],
    [
      'hidden 256',
      { preset: '125m-style', seed: 5, config: { hidden_size: 256, ffn_dim: 512, num_attention_heads: 4, word_embed_proj_dim: 256 } },
      [['int8', true]],
    ],
  ] as const;
  for (const [label, options, cases] of FIXTURES) {
    let f: Fixture;
    before(async () => {
      f = await fixture(options as FixtureOptions);
    });
    for (const [dtype, fused] of cases) {
      test(`${label}, ${dtype}${fused ? '' : ' (plain ops)'}: relative max error ≤ ${BOUNDS[dtype]}, same top-1 token on most positions`, async (t) => {
        const dec = await openDecoder(f, cacheDir, dtype, fused);
        const out = await dec.forward({
          inputIds: ids64([PROMPT]),
          batch: 1,
          attentionMask: ids64([PROMPT.map(() => 1)]),
          logitsToKeep: PROMPT.length,
        });
        const ref = naiveLogits(f, [PROMPT])[0]!;
        let agree = 0,
          worst = 0;
        for (let k = 0; k < PROMPT.length; k++) {
          const got = row(out.logits, f.config.vocab_size, out.keep, 0, k);
          const rel = maxAbsDiff(got, ref[k]!) / maxAbs(ref[k]!);
          worst = Math.max(worst, rel);
          assert.ok(rel <= BOUNDS[dtype], `position ${k}: relative error ${rel.toFixed(4)}`);
          if (argmax(got) === argmax(ref[k]!)) agree++;
        }
        t.diagnostic(`${label}, ${dtype}: worst relative error ${worst.toFixed(4)}, top-1 agreement ${agree}/${PROMPT.length}`);
        assert.ok(agree >= PROMPT.length - (dtype === 'int4' ? 3 : 1), `top-1 agreed on ${agree}/${PROMPT.length}`);
        await dec.release();
      });
    }
  }
});

describe('conversion cache', () => {
  test('a second conversion of the same checkpoint and options comes from the cache', async () => {
    const f = await fixture({ seed: 11 });
    const first = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir });
    const second = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir });
    const other = await convertCheckpoint(f.dir, { dtype: 'int8', cacheDir });
    assert.equal(first.converted, true);
    assert.equal(second.converted, false);
    assert.equal(second.modelPath, first.modelPath);
    assert.notEqual(other.modelPath, first.modelPath);
  });

  test('changed weights produce a different cache entry', async () => {
    const a = await convertCheckpoint((await fixture({ seed: 12 })).dir, { dtype: 'fp32', cacheDir });
    const b = await convertCheckpoint((await fixture({ seed: 13 })).dir, { dtype: 'fp32', cacheDir });
    assert.notEqual(a.modelPath, b.modelPath);
  });
});

export type { OptDecoder };
