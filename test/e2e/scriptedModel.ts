// A "scripted" OPT checkpoint for the end-to-end tests: the fixture generator's random checkpoint
// (test/fixtures/optCheckpoint.ts, real Hugging Face layout and tokenizer) with weights rewritten
// so that greedy decoding follows a table of bigrams — after token A comes token B — and every
// other token is followed by a fallback token. The model is still a real OPT graph run by the real
// runtime (layers, layer norms, KV cache, int8/fp32), but its text is known in advance, so the
// tests can place a model-written ")" right where the suffix-merging logic must act.
//
// How: the decoder layers' output projections (attention out_proj, fc2) and the position
// embeddings are zeroed, so the final hidden state is LayerNorm(embedding of the last token). Each
// scripted token's embedding is +1/-1 on its own pair of dimensions (LayerNorm keeps that pattern,
// ±sqrt(H/2)); the untied lm_head row of its successor points along that pair. The final
// LayerNorm's bias on the last dimension is a constant 1 that the fallback token's row reads, so
// the fallback wins wherever no scripted pair fires. All other lm_head rows are zero.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OptTokenizer } from '../../runtime/src/tokenizer/optTokenizer.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';

export interface ScriptedModelOptions {
  seed: number;
  /** [after, comes] pairs of single-token texts, e.g. ['Hello', ' world']. */
  bigrams: [string, string][];
  /** The token (single-token text) that follows every token without a bigram. */
  fallback: string;
  hiddenSize?: number;
  layers?: number;
  maxPositions?: number;
}

interface TensorInfo {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** A float32 tensor of the file being edited, as a view into its bytes. */
export type TensorView = (name: string) => { data: Float32Array; shape: number[] };

/** The tensors of a float32 safetensors file being edited: views, every name, and the body's key prefix. */
export interface SafetensorsEdit {
  tensor: TensorView;
  names: string[];
  prefix: string;
}

/** Reads a float32 safetensors file, lets `edit` change its tensors in place, writes it back. */
export async function editSafetensors(file: string, edit: (f: SafetensorsEdit) => void): Promise<void> {
  const buf = await readFile(file);
  const headerLength = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.toString('utf8', 8, 8 + headerLength)) as Record<string, TensorInfo>;
  const dataStart = 8 + headerLength;
  const names = Object.keys(header).filter((n) => n !== '__metadata__');
  const tensor: TensorView = (name) => {
    const info = header[name];
    if (!info || info.dtype !== 'F32') throw new Error(`scripted model: no F32 tensor ${name} (have ${names.join(', ')})`);
    const [begin, end] = info.data_offsets;
    return { data: new Float32Array(buf.buffer, buf.byteOffset + dataStart + begin, (end - begin) / 4), shape: info.shape };
  };
  edit({ tensor, names, prefix: names.some((n) => n.startsWith('model.decoder.')) ? 'model.decoder.' : 'decoder.' });
  await writeFile(file, buf);
}

/** Layers and positions contribute nothing to the residual stream; the final LayerNorm is the identity's affine part. */
export function silenceLayers({ tensor, names, prefix }: SafetensorsEdit): void {
  for (const n of names) {
    if (/\.(self_attn\.out_proj|fc2)\.(weight|bias)$/.test(n)) tensor(n).data.fill(0);
  }
  tensor(`${prefix}embed_positions.weight`).data.fill(0);
  tensor(`${prefix}final_layer_norm.weight`).data.fill(1);
  tensor(`${prefix}final_layer_norm.bias`).data.fill(0);
}

/** Writes the scripted checkpoint to `dir`; returns the token ids it used. */
export async function writeScriptedOpt(dir: string, o: ScriptedModelOptions): Promise<Map<string, number>> {
  const H = o.hiddenSize ?? 256;
  await writeOptCheckpoint(dir, {
    tokenizer: true,
    seed: o.seed,
    lmHead: 'untied',
    config: {
      hidden_size: H,
      word_embed_proj_dim: H,
      ffn_dim: 4 * H,
      num_hidden_layers: o.layers ?? 4,
      num_attention_heads: 4,
      max_position_embeddings: o.maxPositions ?? 4096,
    },
  });

  const tokenizer = await OptTokenizer.fromDir(dir);
  const ids = new Map<string, number>();
  const idOf = async (text: string) => {
    const got = await tokenizer.encode(text, { addSpecialTokens: false });
    if (got.length !== 1) throw new Error(`scripted model: ${JSON.stringify(text)} is ${got.length} tokens (${got.join(', ')}), not one`);
    ids.set(text, got[0]!);
    return got[0]!;
  };
  const pairs: [number, number][] = [];
  for (const [a, b] of o.bigrams) pairs.push([await idOf(a), await idOf(b)]);
  const fallback = await idOf(o.fallback);

  await editSafetensors(join(dir, 'model.safetensors'), (f) => {
    const { tensor, prefix } = f;
    silenceLayers(f);
    tensor(`${prefix}final_layer_norm.bias`).data[H - 1] = 1;

    // Embeddings: scripted tokens get their own ±1 pair; nothing touches the last dimension.
    const embed = tensor(`${prefix}embed_tokens.weight`).data;
    const scripted = [...new Set(pairs.map(([a]) => a))];
    if (2 * scripted.length > H - 1) throw new Error('scripted model: too many bigrams for the hidden size');
    const pairOf = new Map<number, number>();
    for (const [i, t] of scripted.entries()) {
      pairOf.set(t, i);
      const row = embed.subarray(t * H, (t + 1) * H);
      row.fill(0);
      row[2 * i] = 1;
      row[2 * i + 1] = -1;
    }
    for (let t = 0; t < embed.length / H; t++) if (!pairOf.has(t)) embed[t * H + H - 1] = 0;

    // lm_head: zero but for the successors (strong: about 5 * 2 * sqrt(H/2)) and the fallback (60).
    const head = tensor('lm_head.weight').data;
    head.fill(0);
    for (const [a, b] of pairs) {
      const i = pairOf.get(a)!;
      head[b * H + 2 * i]! += 5;
      head[b * H + 2 * i + 1]! -= 5;
    }
    head[fallback * H + H - 1] = 60;
  });
  return ids;
}
