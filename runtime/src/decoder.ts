// One forward step of the OPT decoder over an ONNX session: feeds token ids, the attention mask
// and the key/value cache, returns the kept logits and the new cache. Works with the graphs this
// runtime builds and with Optimum / transformers.js exports (which may want position_ids or
// use_cache_branch, and return logits for every position).
//
// Legend: B batch, S new tokens, P cached tokens, T = P + S, H heads, hd head dim, V vocab rows, K kept positions.

import { UsageError } from './errors.js';
import { type ModelSession, Tensor } from './session.js';

export interface DecoderShape {
  numLayers: number;
  numHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
}

/** The per-layer key/value tensors [B, H, P, hd] after some tokens. Owned by whoever holds it. */
export interface KvCache {
  readonly batch: number;
  readonly length: number; // P
  readonly tensors: readonly Tensor[]; // key0, value0, key1, value1, …
}

export interface ForwardInput {
  /** Token ids [B, S], row-major. */
  inputIds: BigInt64Array;
  batch: number;
  /** 1 for tokens, 0 for (left) padding, over cached and new tokens: [B, T]. */
  attentionMask: BigInt64Array;
  past?: KvCache;
  /** Logits are returned for the last K positions only (1 in generation). */
  logitsToKeep: number;
}

export interface ForwardOutput {
  /** [B, K, V] */
  logits: Float32Array;
  keep: number;
  present: KvCache;
}

export class OptDecoder {
  private readonly _hasKeepInput: boolean;
  private readonly _hasPositionIds: boolean;
  private readonly _hasCacheBranch: boolean;
  private readonly _kvType: 'float32' | 'float16';

  constructor(private readonly _session: ModelSession, readonly shape: DecoderShape) {
    const inputs = new Set(_session.inputNames);
    for (const required of ['input_ids', 'attention_mask', 'past_key_values.0.key']) {
      if (!inputs.has(required)) throw new UsageError(`the ONNX model has no "${required}" input: it is not an OPT decoder with a KV cache (inputs: ${[...inputs].join(', ')})`);
    }
    this._hasKeepInput = inputs.has('num_logits_to_keep');
    this._hasPositionIds = inputs.has('position_ids');
    this._hasCacheBranch = inputs.has('use_cache_branch');
    const kvType = _session.inputTypes['past_key_values.0.key'];
    if (kvType !== 'float32' && kvType !== 'float16') throw new UsageError(`the ONNX model's KV cache is ${kvType}; expected float32 or float16`);
    this._kvType = kvType;
  }

  async forward(x: ForwardInput): Promise<ForwardOutput> {
    const { numLayers, numHeads, headDim, vocabSize, maxPositions } = this.shape;
    const kvType = this._kvType;
    const b = x.batch;
    const s = x.inputIds.length / b;
    const p = x.past?.length ?? 0;
    const t = p + s;
    if (!Number.isInteger(s) || s < 1) throw new UsageError(`forward: ${x.inputIds.length} ids do not split into ${b} rows`);
    if (x.attentionMask.length !== b * t) throw new UsageError(`forward: attention mask has ${x.attentionMask.length} values, expected ${b}×${t}`);
    if (x.past && x.past.batch !== b) throw new UsageError(`forward: cache holds ${x.past.batch} rows, input has ${b}`);
    if (t > maxPositions) throw new UsageError(`sequence of ${t} tokens exceeds the model's ${maxPositions} positions`);
    const keep = Math.min(Math.max(1, x.logitsToKeep), s);

    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', x.inputIds, [b, s]),
      attention_mask: new Tensor('int64', x.attentionMask, [b, t]),
    };
    for (let i = 0; i < numLayers; i++) {
      for (const [j, kind] of (['key', 'value'] as const).entries()) {
        feeds[`past_key_values.${i}.${kind}`] = x.past?.tensors[2 * i + j] ?? emptyKv(kvType, b, numHeads, headDim);
      }
    }
    if (this._hasKeepInput) feeds.num_logits_to_keep = new Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
    if (this._hasPositionIds) feeds.position_ids = new Tensor('int64', positionIds(x.attentionMask, b, t, s), [b, s]);
    if (this._hasCacheBranch) feeds.use_cache_branch = new Tensor('bool', Uint8Array.of(p > 0 ? 1 : 0), [1]);

    const out = await this._session.run(feeds);
    const present: Tensor[] = [];
    for (let i = 0; i < numLayers; i++) present.push(out[`present.${i}.key`]!, out[`present.${i}.value`]!);

    const logitsTensor = out.logits!;
    const returned = logitsTensor.dims[1]!;
    let logits = logitsTensor.data as Float32Array;
    if (logitsTensor.type !== 'float32') throw new UsageError(`the ONNX model returns ${logitsTensor.type} logits; expected float32`);
    if (returned !== keep) logits = lastPositions(logits, b, returned, keep, vocabSize);
    return { logits, keep, present: { batch: b, length: t, tensors: present } };
  }

  release(): Promise<void> {
    return this._session.release();
  }
}

function emptyKv(type: 'float32' | 'float16', b: number, h: number, hd: number): Tensor {
  return type === 'float16' ? new Tensor('float16', new Uint16Array(0), [b, h, 0, hd]) : new Tensor('float32', new Float32Array(0), [b, h, 0, hd]);
}

/** HF's generate-time position ids for exports that take them: cumsum(mask) - 1, padding → 1. */
function positionIds(mask: BigInt64Array, b: number, t: number, s: number): BigInt64Array {
  const out = new BigInt64Array(b * s);
  for (let r = 0; r < b; r++) {
    let sum = 0n;
    for (let j = 0; j < t; j++) {
      const m = mask[r * t + j]!;
      sum += m;
      if (j >= t - s) out[r * s + j - (t - s)] = m === 0n ? 1n : sum - 1n;
    }
  }
  return out;
}

/** [B, S, V] → its last K positions [B, K, V]. */
function lastPositions(all: Float32Array, b: number, s: number, k: number, v: number): Float32Array {
  const out = new Float32Array(b * k * v);
  for (let r = 0; r < b; r++) out.set(all.subarray((r * s + s - k) * v, (r * s + s) * v), r * k * v);
  return out;
}
