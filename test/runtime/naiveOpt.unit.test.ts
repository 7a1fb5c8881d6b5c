// Self-consistency tests of the naive OPT reference (test/reference/naiveOpt.ts). The reference
// is itself the oracle for the ONNX graph, so nothing else checks it: these tests pin down its
// properties (causality, padding invariance, HF's masking quirks, config variants) and one tiny
// model whose logits are derived by hand, with separate straight-line arithmetic.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  activationFunction,
  erf,
  expectedShapes,
  naiveOptForward,
  randomOptWeights,
  weightsFromMap,
  type NaiveOptConfig,
} from '../reference/naiveOpt.js';

// opt-125m-like (pre-LN, final LN, no projection), scaled down.
const PRE_LN: NaiveOptConfig = {
  vocab_size: 11,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  ffn_dim: 32,
  max_position_embeddings: 12,
  word_embed_proj_dim: 16,
  do_layer_norm_before: true,
  enable_bias: true,
  layer_norm_elementwise_affine: true,
  activation_function: 'relu',
};
// opt-350m-like: post-LN, no final LN, project_in / project_out between 8 and 16.
const POST_LN_PROJ: NaiveOptConfig = { ...PRE_LN, do_layer_norm_before: false, word_embed_proj_dim: 8 };

function model(config: NaiveOptConfig, seed = 1, tied = true) {
  return weightsFromMap(randomOptWeights(config, seed, { tied }).tensors);
}

/** Largest |a - b| over two [B][S][n] arrays of the same shape. */
function maxDiff(a: Float64Array[][], b: Float64Array[][]): number {
  let max = 0;
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i]!.length, b[i]!.length);
    for (let j = 0; j < a[i]!.length; j++) {
      assert.equal(a[i]![j]!.length, b[i]![j]!.length);
      for (let k = 0; k < a[i]![j]!.length; k++) max = Math.max(max, Math.abs(a[i]![j]![k]! - b[i]![j]![k]!));
    }
  }
  return max;
}

function vecDiff(a: Float64Array, b: Float64Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

function allFinite(values: Float64Array[][]): boolean {
  return values.every((row) => row.every((v) => v.every(Number.isFinite)));
}

describe('naiveOpt reference: hand-computed model', () => {
  // 1 layer, hidden 2, 1 head (head_dim 2), ffn 2, vocab 3, positional table of 4 rows.
  const config: NaiveOptConfig = {
    vocab_size: 3,
    hidden_size: 2,
    num_hidden_layers: 1,
    num_attention_heads: 1,
    ffn_dim: 2,
    max_position_embeddings: 2,
    word_embed_proj_dim: 2,
    do_layer_norm_before: true,
    enable_bias: true,
    layer_norm_elementwise_affine: true,
    activation_function: 'relu',
  };
  const f = (...v: number[]) => Float64Array.from(v);
  const L = 'model.decoder.layers.0.';
  const weights = weightsFromMap(
    new Map([
      ['model.decoder.embed_tokens.weight', f(0.1, 0.2, 0.3, -0.1, -0.2, 0.4)],
      ['model.decoder.embed_positions.weight', f(9, 9, 0.05, -0.05, 0.1, 0.0, 0.0, 0.1)], // row 0 is never read
      [`${L}self_attn_layer_norm.weight`, f(1.5, 0.5)],
      [`${L}self_attn_layer_norm.bias`, f(0.1, -0.2)],
      [`${L}self_attn.q_proj.weight`, f(1, 0, 0.5, 1)],
      [`${L}self_attn.q_proj.bias`, f(0.1, 0)],
      [`${L}self_attn.k_proj.weight`, f(0, 1, 1, 1)],
      [`${L}self_attn.k_proj.bias`, f(0, 0.2)],
      [`${L}self_attn.v_proj.weight`, f(1, 2, 0, 1)],
      [`${L}self_attn.v_proj.bias`, f(0.3, -0.1)],
      [`${L}self_attn.out_proj.weight`, f(1, -1, 0.5, 0.5)],
      [`${L}self_attn.out_proj.bias`, f(0.01, 0.02)],
      [`${L}final_layer_norm.weight`, f(1, 2)],
      [`${L}final_layer_norm.bias`, f(0, 0.1)],
      [`${L}fc1.weight`, f(1, 1, 1, -1)],
      [`${L}fc1.bias`, f(-0.5, 0.2)],
      [`${L}fc2.weight`, f(1, 0.5, -1, 2)],
      [`${L}fc2.bias`, f(0.05, 0)],
      ['model.decoder.final_layer_norm.weight', f(0.9, 1.1)],
      ['model.decoder.final_layer_norm.bias', f(0.01, -0.01)],
      ['lm_head.weight', f(1, 0, 0, 1, 1, -1)],
    ]),
  );

  // LayerNorm of a 2-vector [a, c]: mean (a + c) / 2, deviations ±(a - c) / 2, variance ((a - c) / 2)^2.
  const ln2 = (a: number, c: number, g0: number, g1: number, b0: number, b1: number): [number, number] => {
    const dev = (a - c) / 2;
    const r = dev / Math.sqrt(dev * dev + 1e-5);
    return [r * g0 + b0, -r * g1 + b1];
  };
  const relu = (x: number) => Math.max(x, 0);
  const s2 = Math.SQRT1_2; // head_dim^-0.5 with head_dim 2

  /** Everything of the layer before the attention mixing: [q, k, v] of a position. */
  function qkv(x: [number, number]) {
    const [a0, a1] = ln2(x[0], x[1], 1.5, 0.5, 0.1, -0.2);
    const q: [number, number] = [(1 * a0 + 0 * a1 + 0.1) * s2, (0.5 * a0 + 1 * a1 + 0) * s2];
    const k: [number, number] = [0 * a0 + 1 * a1 + 0, 1 * a0 + 1 * a1 + 0.2];
    const v: [number, number] = [1 * a0 + 2 * a1 + 0.3, 0 * a0 + 1 * a1 - 0.1];
    return { q, k, v };
  }
  /** Everything after the attention mixing, given the residual x and the attention context c. */
  function rest(x: [number, number], c: [number, number]): number[] {
    const h0 = x[0] + (1 * c[0] - 1 * c[1] + 0.01);
    const h1 = x[1] + (0.5 * c[0] + 0.5 * c[1] + 0.02);
    const [g0, g1] = ln2(h0, h1, 1, 2, 0, 0.1);
    const u0 = relu(1 * g0 + 1 * g1 - 0.5);
    const u1 = relu(1 * g0 - 1 * g1 + 0.2);
    const y0 = h0 + (1 * u0 + 0.5 * u1 + 0.05);
    const y1 = h1 + (-1 * u0 + 2 * u1 + 0);
    const [z0, z1] = ln2(y0, y1, 0.9, 1.1, 0.01, -0.01);
    return [z0, z1, z0 - z1];
  }

  it('matches hand-derived logits for an unpadded sequence', () => {
    // ids [1, 2] at positions 0, 1 → embed_positions rows 2, 3.
    const x0: [number, number] = [0.3 + 0.1, -0.1 + 0.0];
    const x1: [number, number] = [-0.2 + 0.0, 0.4 + 0.1];
    const p0 = qkv(x0);
    const p1 = qkv(x1);
    // Position 0 sees only itself; position 1 sees both.
    const c0: [number, number] = p0.v;
    const s10 = p1.q[0] * p0.k[0] + p1.q[1] * p0.k[1];
    const s11 = p1.q[0] * p1.k[0] + p1.q[1] * p1.k[1];
    const w10 = Math.exp(s10) / (Math.exp(s10) + Math.exp(s11));
    const w11 = Math.exp(s11) / (Math.exp(s10) + Math.exp(s11));
    const c1: [number, number] = [w10 * p0.v[0] + w11 * p1.v[0], w10 * p0.v[1] + w11 * p1.v[1]];
    const expected = [rest(x0, c0), rest(x1, c1)];

    const { logits } = naiveOptForward(config, weights, [[1, 2]]);
    for (let s = 0; s < 2; s++) {
      for (let v = 0; v < 3; v++) assert.ok(Math.abs(logits[0]![s]![v]! - expected[s]![v]!) < 1e-12, `s=${s} v=${v}`);
    }
    // The attention is not trivially uniform here, so the test would see a softmax or scale slip.
    assert.ok(Math.abs(w10 - 0.5) > 0.05);
  });

  it('matches hand-derived logits for a left-padded sequence (pad query attends uniformly to all keys)', () => {
    // ids [0 (pad), 2], mask [0, 1] → positions [-1, 0] → embed_positions rows 1, 2.
    const x0: [number, number] = [0.1 + 0.05, 0.2 - 0.05];
    const x1: [number, number] = [-0.2 + 0.1, 0.4 + 0.0];
    const p0 = qkv(x0);
    const p1 = qkv(x1);
    // Row 0: every key masked (key 0 is padding, key 1 is in the future) → all scores equal
    // finfo.min → uniform over both keys, future included (HF's eager behaviour).
    const c0: [number, number] = [(p0.v[0] + p1.v[0]) / 2, (p0.v[1] + p1.v[1]) / 2];
    // Row 1: key 0 is padding → only itself.
    const c1: [number, number] = p1.v;
    const expected = [rest(x0, c0), rest(x1, c1)];

    const { logits } = naiveOptForward(config, weights, [[0, 2]], [[0, 1]]);
    for (let s = 0; s < 2; s++) {
      for (let v = 0; v < 3; v++) assert.ok(Math.abs(logits[0]![s]![v]! - expected[s]![v]!) < 1e-12, `s=${s} v=${v}`);
    }
  });
});

describe('naiveOpt reference: activations', () => {
  it('erf matches known values to double precision', () => {
    const known: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [4.5, 0.9999999998033839],
      [-0.7, -0.6778011938374184],
      [7, 1],
    ];
    for (const [x, y] of known) assert.ok(Math.abs(erf(x) - y) < 1e-15, `erf(${x}) = ${erf(x)}`);
  });

  it('computes relu, gelu (erf), gelu_new / gelu_pytorch_tanh (tanh) and silu', () => {
    const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-14, `${a} vs ${b}`);
    close(activationFunction('relu')(-2), 0);
    close(activationFunction('relu')(1.5), 1.5);
    close(activationFunction('gelu')(1), 0.8413447460685429);
    close(activationFunction('gelu')(-1), -0.15865525393145707);
    close(activationFunction('gelu')(2.5), 2.4844758366855597);
    close(activationFunction('gelu_new')(1), 0.8411919906082768);
    close(activationFunction('gelu_pytorch_tanh')(1.5), 1.3995715769802328);
    close(activationFunction('silu')(1), 0.7310585786300049);
    close(activationFunction('silu')(-2), -0.2384058440442351);
  });

  it('throws on an unsupported activation', () => {
    const config = { ...PRE_LN, activation_function: 'swish' };
    assert.throws(() => naiveOptForward(config, model(config), [[1, 2, 3]]), /unsupported activation_function 'swish'/);
  });

  it('runs every supported activation, and they give different logits', () => {
    const ids = [[3, 1, 4, 1, 5]];
    const results = ['relu', 'gelu', 'gelu_new', 'silu'].map(
      (name) => naiveOptForward({ ...PRE_LN, activation_function: name }, model(PRE_LN), ids).logits,
    );
    for (let i = 0; i < results.length; i++) {
      assert.ok(allFinite(results[i]!));
      for (let j = i + 1; j < results.length; j++) assert.ok(maxDiff(results[i]!, results[j]!) > 1e-4, `${i} vs ${j}`);
    }
  });
});

describe('naiveOpt reference: properties', () => {
  for (const [label, config] of [
    ['pre-LN', PRE_LN],
    ['post-LN with project_in/out', POST_LN_PROJ],
  ] as const) {
    const weights = model(config);

    it(`${label}: causal (a later token does not change earlier logits)`, () => {
      const a = naiveOptForward(config, weights, [[2, 7, 1, 8, 2, 8]]).logits[0]!;
      const b = naiveOptForward(config, weights, [[2, 7, 1, 8, 9, 3]]).logits[0]!;
      for (let s = 0; s < 4; s++) assert.equal(vecDiff(a[s]!, b[s]!), 0, `position ${s}`);
      assert.ok(vecDiff(a[4]!, b[4]!) > 1e-3);
    });

    it(`${label}: a left-padded row equals the unpadded sequence at its real positions`, () => {
      const seq = [5, 3, 9, 2];
      const alone = naiveOptForward(config, weights, [seq]);
      const batch = naiveOptForward(
        config,
        weights,
        [
          [1, 1, ...seq],
          [1, 1, 1, 1, 1, 1],
          [4, 10, 6, 0, 7, 3],
        ],
        [
          [0, 0, 1, 1, 1, 1],
          [0, 0, 0, 0, 0, 0],
          [1, 1, 1, 1, 1, 1],
        ],
      );
      for (let s = 0; s < seq.length; s++) {
        assert.ok(vecDiff(batch.logits[0]![s + 2]!, alone.logits[0]![s]!) < 1e-9, `position ${s}`);
        assert.ok(vecDiff(batch.lastHiddenState[0]![s + 2]!, alone.lastHiddenState[0]![s]!) < 1e-9);
      }
      // Rows are independent: the fully padded row does not disturb the full row.
      const third = naiveOptForward(config, weights, [[4, 10, 6, 0, 7, 3]]);
      assert.ok(maxDiff([batch.logits[2]!], third.logits) < 1e-12);
      // A fully padded row gives finite values everywhere.
      assert.ok(allFinite([batch.logits[1]!]));
      assert.ok(allFinite(batch.lastHiddenState));
    });

    it(`${label}: the padding mask matters (fixtures are discriminating)`, () => {
      const ids = [[8, 8, 5, 3, 9, 2]];
      const masked = naiveOptForward(config, weights, ids, [[0, 0, 1, 1, 1, 1]]).logits;
      const unmasked = naiveOptForward(config, weights, ids).logits;
      for (let s = 2; s < 6; s++) assert.ok(vecDiff(masked[0]![s]!, unmasked[0]![s]!) > 1e-3, `position ${s}`);
    });

    it(`${label}: pad queries attend to every key, future ones included (HF eager quirk)`, () => {
      const mask = [[0, 0, 1, 1, 1]];
      const a = naiveOptForward(config, weights, [[1, 1, 5, 3, 9]], mask).logits[0]!;
      const b = naiveOptForward(config, weights, [[1, 1, 5, 3, 4]], mask).logits[0]!;
      assert.ok(vecDiff(a[0]!, b[0]!) > 1e-6);
      assert.ok(vecDiff(a[1]!, b[1]!) > 1e-6);
      for (let s = 2; s < 4; s++) assert.equal(vecDiff(a[s]!, b[s]!), 0);
    });

    it(`${label}: pads read embed_positions row 1, and row 0 is never read`, () => {
      const { tensors } = randomOptWeights(config, 1);
      const ids = [[1, 1, 5, 3, 9]];
      const mask = [[0, 0, 1, 1, 1]];
      const base = naiveOptForward(config, weightsFromMap(tensors), ids, mask).logits;
      const H = config.hidden_size;
      const changeRow = (row: number) => {
        const copy = new Map(tensors);
        const positions = Float32Array.from(tensors.get('model.decoder.embed_positions.weight')!);
        // Not a constant shift: LayerNorm would cancel that (mean removal) in a pre-LN model.
        for (let i = 0; i < H; i++) positions[row * H + i]! += i % 2 === 0 ? 0.5 : -0.3;
        copy.set('model.decoder.embed_positions.weight', positions);
        return naiveOptForward(config, weightsFromMap(copy), ids, mask).logits;
      };
      assert.equal(maxDiff(changeRow(0), base), 0);
      const row1 = changeRow(1);
      assert.ok(vecDiff(row1[0]![0]!, base[0]![0]!) > 1e-3); // a pad position
      for (let s = 2; s < 5; s++) assert.equal(vecDiff(row1[0]![s]!, base[0]![s]!), 0); // real positions
      // The first real token uses row 2 (position 0), whatever the number of pads before it.
      const row2 = changeRow(2);
      assert.ok(vecDiff(row2[0]![2]!, base[0]![2]!) > 1e-3);
    });
  }

  it('pre-LN, post-LN and project_in/out variants run, are finite and differ', () => {
    const ids = [[2, 7, 1, 8, 2, 8]];
    const preLn = naiveOptForward(PRE_LN, model(PRE_LN), ids);
    const postLn = naiveOptForward({ ...PRE_LN, do_layer_norm_before: false }, model(PRE_LN), ids);
    const postLnProj = naiveOptForward(POST_LN_PROJ, model(POST_LN_PROJ), ids);
    const preLnProjConfig = { ...PRE_LN, word_embed_proj_dim: 8 };
    const preLnProj = naiveOptForward(preLnProjConfig, model(preLnProjConfig), ids);
    for (const r of [preLn, postLn, postLnProj, preLnProj]) {
      assert.ok(allFinite(r.logits));
      assert.equal(r.logits[0]![0]!.length, PRE_LN.vocab_size);
    }
    assert.ok(maxDiff(preLn.logits, postLn.logits) > 1e-3);
    assert.ok(maxDiff(postLnProj.logits, preLnProj.logits) > 1e-3);
    // project_out makes last_hidden_state word_embed_proj_dim wide (512 in opt-350m).
    assert.equal(postLnProj.lastHiddenState[0]![0]!.length, 8);
    assert.equal(preLn.lastHiddenState[0]![0]!.length, 16);
  });

  it('_remove_final_layer_norm drops the final LayerNorm (and its weights are not read)', () => {
    const config = { ...PRE_LN, _remove_final_layer_norm: true };
    const { tensors } = randomOptWeights(config, 3);
    assert.ok(!tensors.has('model.decoder.final_layer_norm.weight'));
    const removed = naiveOptForward(config, weightsFromMap(tensors), [[1, 2, 3]]);
    const kept = naiveOptForward(PRE_LN, model(PRE_LN, 3), [[1, 2, 3]]);
    assert.ok(allFinite(removed.logits));
    assert.ok(maxDiff(removed.logits, kept.logits) > 1e-3);
  });

  it('enable_bias=false runs without bias tensors and equals a biased model with zero biases', () => {
    const config = { ...POST_LN_PROJ, enable_bias: false };
    const { tensors } = randomOptWeights(POST_LN_PROJ, 4);
    const zeroed = new Map(tensors);
    const noBias = new Map<string, Float32Array>();
    for (const [name, values] of tensors) {
      if (name.endsWith('_proj.bias') || name.endsWith('fc1.bias') || name.endsWith('fc2.bias')) {
        zeroed.set(name, new Float32Array(values.length));
      } else {
        noBias.set(name, values);
      }
    }
    const ids = [[1, 6, 2, 9]];
    const a = naiveOptForward(config, weightsFromMap(noBias), ids);
    const b = naiveOptForward(POST_LN_PROJ, weightsFromMap(zeroed), ids);
    assert.ok(allFinite(a.logits));
    assert.ok(maxDiff(a.logits, b.logits) < 1e-12);
  });

  it('layer_norm_elementwise_affine=false runs without LayerNorm tensors and equals weight 1, bias 0', () => {
    const config = { ...PRE_LN, layer_norm_elementwise_affine: false };
    const { tensors } = randomOptWeights(PRE_LN, 5);
    const unit = new Map(tensors);
    const noAffine = new Map<string, Float32Array>();
    for (const [name, values] of tensors) {
      if (name.includes('layer_norm')) unit.set(name, new Float32Array(values.length).fill(name.endsWith('.weight') ? 1 : 0));
      else noAffine.set(name, values);
    }
    const ids = [[1, 6, 2, 9]];
    const a = naiveOptForward(config, weightsFromMap(noAffine), ids);
    const b = naiveOptForward(PRE_LN, weightsFromMap(unit), ids);
    assert.ok(allFinite(a.logits));
    assert.ok(maxDiff(a.logits, b.logits) < 1e-12);
    assert.ok(maxDiff(a.logits, naiveOptForward(PRE_LN, weightsFromMap(tensors), ids).logits) > 1e-3);
  });

  it('hiddenStates follows output_hidden_states: embeddings, each layer but the last, then last_hidden_state', () => {
    for (const config of [PRE_LN, POST_LN_PROJ]) {
      const weights = model(config);
      const ids = [[3, 1, 4]];
      const out = naiveOptForward(config, weights, ids, undefined, { outputHiddenStates: true });
      const hs = out.hiddenStates!;
      assert.equal(hs.length, config.num_hidden_layers + 1);
      assert.equal(hs[0]![0]![0]!.length, config.hidden_size);
      assert.equal(hs[1]![0]![0]!.length, config.hidden_size);
      assert.deepEqual(hs[hs.length - 1], out.lastHiddenState);
      // Entry 0 is project_in(embed_tokens[3]) + embed_positions[0 + 2].
      const { tensors } = randomOptWeights(config, 1);
      const H = config.hidden_size;
      const P = config.word_embed_proj_dim;
      const tok = tensors.get('model.decoder.embed_tokens.weight')!.subarray(3 * P, 4 * P);
      const pos = tensors.get('model.decoder.embed_positions.weight')!.subarray(2 * H, 3 * H);
      const projIn = tensors.get('model.decoder.project_in.weight');
      for (let i = 0; i < H; i++) {
        let x = 0;
        if (projIn) for (let j = 0; j < P; j++) x += projIn[i * P + j]! * tok[j]!;
        else x = tok[i]!;
        assert.ok(Math.abs(hs[0]![0]![0]![i]! - (x + pos[i]!)) < 1e-12);
      }
      // Without the option there is no hiddenStates, and the outputs are the same.
      const plain = naiveOptForward(config, weights, ids);
      assert.equal(plain.hiddenStates, undefined);
      assert.equal(maxDiff(plain.logits, out.logits), 0);
    }
  });

  it('rejects weights of the wrong size and unknown token ids', () => {
    const { tensors } = randomOptWeights(PRE_LN, 1);
    const bad = new Map(tensors);
    bad.set('model.decoder.layers.1.fc1.weight', new Float32Array(5));
    assert.throws(() => naiveOptForward(PRE_LN, weightsFromMap(bad), [[1, 2]]), /fc1\.weight' has 5 values, expected \[32, 16\]/);
    assert.throws(() => naiveOptForward(PRE_LN, weightsFromMap(tensors), [[1, 11]]), /token id 11/);
  });
});

describe('naiveOpt reference: fixture helpers', () => {
  it('expectedShapes lists every parameter with its PyTorch shape', () => {
    const shapes = expectedShapes(POST_LN_PROJ);
    assert.deepEqual(shapes.get('model.decoder.embed_tokens.weight'), [11, 8]);
    assert.deepEqual(shapes.get('model.decoder.embed_positions.weight'), [14, 16]);
    assert.deepEqual(shapes.get('model.decoder.project_in.weight'), [16, 8]);
    assert.deepEqual(shapes.get('model.decoder.project_out.weight'), [8, 16]);
    assert.deepEqual(shapes.get('model.decoder.layers.1.fc1.weight'), [32, 16]);
    assert.deepEqual(shapes.get('model.decoder.layers.1.fc2.weight'), [16, 32]);
    assert.deepEqual(shapes.get('lm_head.weight'), [11, 8]);
    assert.ok(!shapes.has('model.decoder.final_layer_norm.weight')); // post-LN has none
    // 2 embeddings + 2 projections + per layer (4 linears × 2 + 2 LayerNorms × 2 + 2 linears × 2) + lm_head
    assert.equal(shapes.size, 2 + 2 + 2 * 16 + 1);
    assert.equal(expectedShapes(PRE_LN).size, 2 + 2 + 2 * 16 + 1); // final LN instead of projections
    assert.equal(expectedShapes({ ...PRE_LN, enable_bias: false, layer_norm_elementwise_affine: false }).size, 2 + 2 * 6 + 1);
  });

  it('randomOptWeights is deterministic, matches the shapes, and ties lm_head by default', () => {
    const a = randomOptWeights(POST_LN_PROJ, 42);
    const b = randomOptWeights(POST_LN_PROJ, 42);
    const c = randomOptWeights(POST_LN_PROJ, 43);
    assert.deepEqual([...a.tensors.keys()], [...a.shapes.keys()]);
    for (const [name, shape] of a.shapes) {
      assert.equal(
        a.tensors.get(name)!.length,
        shape.reduce((x, y) => x * y, 1),
        name,
      );
      assert.deepEqual(a.tensors.get(name), b.tensors.get(name), name);
    }
    assert.notDeepEqual(a.tensors.get('model.decoder.layers.0.fc1.weight'), c.tensors.get('model.decoder.layers.0.fc1.weight'));
    assert.equal(a.tensors.get('lm_head.weight'), a.tensors.get('model.decoder.embed_tokens.weight'));
    const untied = randomOptWeights(POST_LN_PROJ, 42, { tied: false });
    assert.notEqual(untied.tensors.get('lm_head.weight'), untied.tensors.get('model.decoder.embed_tokens.weight'));
    assert.notDeepEqual(untied.tensors.get('lm_head.weight'), untied.tensors.get('model.decoder.embed_tokens.weight'));
    // Untied lm_head changes the logits but not the hidden states.
    const ids = [[1, 2, 3]];
    const tiedOut = naiveOptForward(POST_LN_PROJ, weightsFromMap(a.tensors), ids);
    const untiedOut = naiveOptForward(POST_LN_PROJ, weightsFromMap(untied.tensors), ids);
    assert.ok(maxDiff(tiedOut.logits, untiedOut.logits) > 1e-3);
    // Realistic value ranges: LayerNorm weights near 1, small nonzero biases.
    const lnWeight = a.tensors.get('model.decoder.layers.0.final_layer_norm.weight')!;
    assert.ok(lnWeight.every((v) => v > 0.5 && v < 1.5) && lnWeight.some((v) => Math.abs(v - 1) > 0.01));
    const bias = a.tensors.get('model.decoder.layers.0.fc1.bias')!;
    assert.ok(bias.every((v) => Math.abs(v) < 0.5) && bias.some((v) => v !== 0));
    // options.std sets the scale of the matrices (HF's init_std is 0.02).
    const small = randomOptWeights(POST_LN_PROJ, 42, { std: 0.02 }).tensors.get('model.decoder.layers.0.fc1.weight')!;
    assert.ok(small.every((v) => Math.abs(v) < 0.02 * 6));
  });
});
