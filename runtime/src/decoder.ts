// One forward step of the OPT decoder over an ONNX session: feeds token ids, the attention mask
// and the key/value cache, returns the kept logits and the new cache. Works with the graphs this
// runtime builds and with Optimum / transformers.js exports (which may want position_ids or
// use_cache_branch, and return logits for every position).
//
// Legend: B batch, S new tokens, P cached tokens, T = P + S, H heads, hd head dim, V vocab rows, K kept positions.

import { UsageError } from '../../protocol/errors.js';
import { CACHE_DIM, type KvCacheLayout, kvName, pastKey, presentKey, presentValue } from './onnx/optGraph.js';
import { type ModelSession, Tensor } from './session.js';

export interface DecoderShape {
  numLayers: number;
  numHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
}

/**
 * The per-layer key/value tensors after some tokens: [B, H, P, hd] for graphs that grow the cache
 * by Concat, or [B, H, capacity, hd] buffers extended in place (append and in-place layouts;
 * positions ≥ P are stale). A forward step that extends a buffer reuses its storage (and may re-lay
 * it out for a larger capacity), so a cache passed to `forward` is consumed: only the cache it
 * returns may be used afterwards.
 */
export interface KvCache {
  readonly batch: number;
  readonly length: number; // P
  /** Positions the buffers hold (≥ length): the tensors' third dimension, what the graph sees. */
  readonly capacity: number;
  /**
   * Buffer caches: positions the tensors' storage can hold (≥ capacity). The tensors view the
   * start of it; a larger capacity within the room re-lays the heads out in place, without a new
   * allocation.
   */
  readonly room?: number;
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
  /**
   * Buffer caches: positions the cache's storage should have room for (e.g. prompt + new tokens),
   * so that it grows without reallocating. The graph sees only what is needed, rounded up to a
   * granule (every position it sees is attended to, the append layout masking the unused ones).
   */
  reserve?: number;
  /** Fill this buffer with the logits instead of allocating one (it must hold B × K × V floats; graphs that keep K only). */
  logitsBuffer?: Float32Array;
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
  readonly cacheLayout: Exclude<KvCacheLayout, 'none'>;
  /** The cache is a fixed-capacity buffer extended in place (append or in-place layouts), so prefixes can be kept and reused. */
  get inPlaceCache(): boolean {
    return this.cacheLayout !== 'concat';
  }

  constructor(
    private readonly _session: ModelSession,
    readonly shape: DecoderShape,
  ) {
    const inputs = new Set(_session.inputNames);
    for (const required of ['input_ids', 'attention_mask', pastKey(0)]) {
      if (!inputs.has(required))
        throw new UsageError(
          `the ONNX model has no "${required}" input: it is not an OPT decoder with a KV cache (inputs: ${[...inputs].join(', ')})`,
        );
    }
    this._hasKeepInput = inputs.has('num_logits_to_keep');
    this._hasPositionIds = inputs.has('position_ids');
    this._hasCacheBranch = inputs.has('use_cache_branch');
    // float16: an fp16 graph's cache, or a float32 graph's append cache built with kvDtype 'fp16'
    // (its new_key_values outputs are then float16 too, written into the Uint16Array buffers as is).
    const kvType = _session.inputTypes[pastKey(0)];
    if (kvType !== 'float32' && kvType !== 'float16')
      throw new UsageError(`the ONNX model's KV cache is ${kvType}; expected float32 or float16`);
    this._kvType = kvType;
    const dim = _session.inputShapes[pastKey(0)]?.[2];
    this.cacheLayout = dim === CACHE_DIM.append ? 'append' : dim === CACHE_DIM.inplace ? 'inplace' : 'concat';
    if (this.cacheLayout === 'append' && !_session.outputNames.includes('new_key_values.0.key')) {
      throw new UsageError('the ONNX model takes a cache buffer but returns no new_key_values outputs: rebuild it with this runtime');
    }
  }

  async forward(x: ForwardInput): Promise<ForwardOutput> {
    const { numLayers, numHeads, headDim, vocabSize, maxPositions } = this.shape;
    const kvType = this._kvType;
    const b = x.batch;
    const s = x.inputIds.length / b;
    const p = x.past?.length ?? 0;
    const t = p + s;
    if (!Number.isInteger(s) || s < 1) throw new UsageError(`forward: ${x.inputIds.length} ids do not split into ${b} rows`);
    if (x.attentionMask.length !== b * t)
      throw new UsageError(`forward: attention mask has ${x.attentionMask.length} values, expected ${b}×${t}`);
    if (x.past && x.past.batch !== b) throw new UsageError(`forward: cache holds ${x.past.batch} rows, input has ${b}`);
    if (t > maxPositions) throw new UsageError(`sequence of ${t} tokens exceeds the model's ${maxPositions} positions`);
    const keep = Math.min(Math.max(1, x.logitsToKeep), s);
    const lastChunk = ((s - 1) % PREFILL_CHUNK) + 1; // the kept logits must all come from the last chunk
    if (this.inPlaceCache && s > PREFILL_CHUNK && keep <= lastChunk) {
      return this._chunked(x, b, s, p, t, keep);
    }

    const cache = this.inPlaceCache ? this._cacheFor(x.past, b, t, x.reserve ?? t) : undefined;
    const append = this.cacheLayout === 'append';
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', x.inputIds, [b, s]),
      // The append layout attends over the whole buffer then the new tokens: its mask spans capacity + S.
      attention_mask:
        append && p > 0 ? bufferMask(x.attentionMask, b, p, s, cache!.capacity) : new Tensor('int64', x.attentionMask, [b, t]),
    };
    for (let i = 0; i < numLayers; i++) {
      for (const [j, kind] of (['key', 'value'] as const).entries()) {
        // An empty append buffer is not read: attention runs over the new tokens alone.
        const fed = append && p === 0 ? undefined : (cache?.tensors[2 * i + j] ?? x.past?.tensors[2 * i + j]);
        feeds[kvName('past_key_values', i, kind)] = fed ?? emptyKv(kvType, b, numHeads, 0, headDim);
      }
    }
    if (this._hasKeepInput) feeds.num_logits_to_keep = new Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
    if (this._hasPositionIds) feeds.position_ids = new Tensor('int64', positionIds(x.attentionMask, b, t, s), [b, s]);
    if (this._hasCacheBranch) feeds.use_cache_branch = new Tensor('bool', Uint8Array.of(p > 0 ? 1 : 0), [1]);

    // In-place caches and caller-owned logits are bound as outputs (not possible when outputs stay on a GPU:
    // onnxruntime-node then ignores preallocated fetches). The append layout's new keys/values are
    // left to the binding: it returns every output in a new ArrayBuffer even when one was bound.
    let fetches: Record<string, Tensor | null> | undefined;
    if (!this._session.outputsOnDevice && (this.cacheLayout === 'inplace' || x.logitsBuffer)) {
      fetches = { logits: null };
      if (x.logitsBuffer && this._hasKeepInput)
        fetches.logits = new Tensor('float32', x.logitsBuffer.subarray(0, b * keep * vocabSize), [b, keep, vocabSize]);
      for (let i = 0; i < numLayers; i++) {
        for (const [j, kind] of (['key', 'value'] as const).entries()) {
          if (append) fetches[kvName('new_key_values', i, kind)] = null;
          else fetches[kvName('present', i, kind)] = cache?.tensors[2 * i + j] ?? null;
        }
      }
    }
    const out = await this._session.run(feeds, fetches);
    // A Concat cache kept on a GPU (outputs left in device memory) is consumed by the step that reads it.
    if (x.past && !cache) this.releaseCache(x.past);
    let present: KvCache;
    if (cache) {
      if (append) {
        for (let i = 0; i < numLayers; i++) {
          for (const [j, kind] of (['key', 'value'] as const).entries()) {
            writePositions(out[kvName('new_key_values', i, kind)]!, cache.tensors[2 * i + j]!, b * numHeads, s, p, cache.capacity, headDim);
          }
        }
      }
      present = { ...cache, length: t };
    } else {
      const tensors: Tensor[] = [];
      for (let i = 0; i < numLayers; i++) tensors.push(out[presentKey(i)]!, out[presentValue(i)]!);
      present = { batch: b, length: t, capacity: t, tensors };
    }

    const logitsTensor = out.logits!;
    if (logitsTensor.type !== 'float32') throw new UsageError(`the ONNX model returns ${logitsTensor.type} logits; expected float32`);
    const returned = logitsTensor.dims[1]!;
    let logits = fetches?.logits ? (fetches.logits.data as Float32Array) : (logitsTensor.data as Float32Array);
    if (returned !== keep) logits = lastPositions(logits, b, returned, keep, vocabSize);
    else if (x.logitsBuffer && logits.buffer !== x.logitsBuffer.buffer) logits = copyInto(x.logitsBuffer, logits);
    return { logits, keep, present };
  }

  /**
   * A long input in chunks of PREFILL_CHUNK tokens, each attending over the buffer the previous ones
   * filled: same logits, but activations (attention scores grow with S × T) stay bounded, and so
   * does onnxruntime's arena, which keeps its largest size for the life of the session.
   */
  private async _chunked(x: ForwardInput, b: number, s: number, p: number, t: number, keep: number): Promise<ForwardOutput> {
    let past = x.past;
    let out: ForwardOutput | undefined;
    for (let at = 0; at < s; at += PREFILL_CHUNK) {
      const end = Math.min(s, at + PREFILL_CHUNK);
      const ids = new BigInt64Array(b * (end - at));
      const mask = new BigInt64Array(b * (p + end));
      for (let r = 0; r < b; r++) {
        ids.set(x.inputIds.subarray(r * s + at, r * s + end), r * (end - at));
        mask.set(x.attentionMask.subarray(r * t, r * t + p + end), r * (p + end));
      }
      const last = end === s;
      out = await this.forward({
        inputIds: ids,
        batch: b,
        attentionMask: mask,
        past,
        logitsToKeep: last ? keep : 1,
        // Room for the whole input up front; the capacity each chunk attends over grows with the chunks.
        reserve: Math.max(x.reserve ?? t, t),
        logitsBuffer: last ? x.logitsBuffer : undefined,
      });
      past = out.present;
    }
    return out!;
  }

  /**
   * The buffers for a step ending at `t` positions: the past's own; the past's storage re-laid out
   * for a larger capacity when it has the room; else new storage (room for `reserve`) with the
   * past copied in.
   */
  private _cacheFor(past: KvCache | undefined, b: number, t: number, reserve: number): KvCache {
    if (past && t <= past.capacity) return past;
    const { numHeads, headDim, maxPositions } = this.shape;
    const capacity = Math.min(maxPositions, roundUp(t, CACHE_GRANULE));
    const rows = b * numHeads;
    if (past && capacity <= (past.room ?? past.capacity)) {
      const tensors = past.tensors.map((tensor) => widen(tensor, rows, past.length, past.capacity, capacity, headDim));
      return { batch: b, length: past.length, capacity, room: past.room, tensors };
    }
    return this._allocate(b, capacity, reserve, past);
  }

  /** New storage with room for `reserve` positions (the tensors see `capacity`), the first `from.length` positions of `from` copied in. */
  private _allocate(b: number, capacity: number, reserve: number, from: KvCache | undefined): KvCache {
    const { numLayers, numHeads, headDim, maxPositions } = this.shape;
    const rows = b * numHeads;
    const room = Math.max(capacity, Math.min(maxPositions, roundUp(reserve, CACHE_GRANULE)));
    const tensors: Tensor[] = [];
    for (let i = 0; i < 2 * numLayers; i++) {
      const storage = this._kvType === 'float16' ? new Uint16Array(rows * room * headDim) : new Float32Array(rows * room * headDim);
      const fresh = new Tensor(this._kvType, storage.subarray(0, rows * capacity * headDim), [b, numHeads, capacity, headDim]);
      if (from) copyPositions(from.tensors[i]!, fresh, rows, from.length, from.capacity, capacity, headDim);
      tensors.push(fresh);
    }
    return { batch: b, length: from?.length ?? 0, capacity, room, tensors };
  }

  /**
   * A new buffer cache holding the first `length` positions of `cache` (room for `reserve`), which
   * is left as it was: a prompt that shares only the start of a stored state continues from a copy,
   * and the state stays whole for the prompt it belongs to.
   */
  copyPrefix(cache: KvCache, length: number, reserve: number): KvCache {
    if (!this.inPlaceCache) throw new UsageError('copyPrefix needs a buffer cache (append or in-place layout)');
    const capacity = Math.min(this.shape.maxPositions, roundUp(Math.max(1, length), CACHE_GRANULE));
    return this._allocate(cache.batch, capacity, Math.max(reserve, length), { ...cache, length: Math.min(length, cache.length) });
  }

  /**
   * Frees a cache's device memory (tensors a GPU session left on the device); host caches are
   * left to the garbage collector. A cache passed to `forward` is released by it.
   */
  releaseCache(cache: KvCache): void {
    for (const t of cache.tensors) if (onDevice(t)) t.dispose();
  }

  release(): Promise<void> {
    return this._session.release();
  }
}

/** Bytes of a host cache's storage, room included (what it holds in memory). */
export function kvStorageBytes(cache: KvCache): number {
  return cache.tensors.reduce((n, t) => n + (t.data as ArrayBufferView).buffer.byteLength, 0);
}

function copyInto(buffer: Float32Array, logits: Float32Array): Float32Array {
  const out = buffer.subarray(0, logits.length);
  out.set(logits);
  return out;
}

const onDevice = (t: Tensor) => t.location !== 'cpu' && t.location !== 'cpu-pinned' && t.location !== 'none';

/** Longer inputs to a buffer-cache graph run in chunks of this many tokens. */
export const PREFILL_CHUNK = 128;

/** In-place caches grow in steps of this many positions. */
const CACHE_GRANULE = 64;

const roundUp = (n: number, step: number) => Math.ceil(n / step) * step;

function emptyKv(type: 'float32' | 'float16', b: number, h: number, positions: number, hd: number): Tensor {
  const n = b * h * positions * hd;
  return type === 'float16'
    ? new Tensor('float16', new Uint16Array(n), [b, h, positions, hd])
    : new Tensor('float32', new Float32Array(n), [b, h, positions, hd]);
}

/** Copies the first `length` positions of each of `rows` [positions, hd] blocks from one capacity to another. */
function copyPositions(from: Tensor, to: Tensor, rows: number, length: number, fromCap: number, toCap: number, hd: number): void {
  const src = from.data as Float32Array | Uint16Array;
  const dst = to.data as Float32Array | Uint16Array;
  for (let r = 0; r < rows; r++) dst.set(src.subarray(r * fromCap * hd, (r * fromCap + length) * hd), r * toCap * hd);
}

/**
 * The same storage as a [rows, toCap, hd] tensor: each row's first `length` positions move to their
 * new offsets, last row first (a row only moves up, onto rows already moved).
 */
function widen(tensor: Tensor, rows: number, length: number, fromCap: number, toCap: number, hd: number): Tensor {
  const view = tensor.data as Float32Array | Uint16Array;
  const storage = new (view.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(
    view.buffer as ArrayBuffer,
    view.byteOffset,
    rows * toCap * hd,
  );
  for (let r = rows - 1; r > 0; r--) storage.copyWithin(r * toCap * hd, r * fromCap * hd, (r * fromCap + length) * hd);
  return new Tensor(tensor.type as 'float32' | 'float16', storage, [...tensor.dims.slice(0, 2), toCap, hd]);
}

/** Writes each of `rows` [S, hd] blocks of this step's keys or values at position `at` of a [rows, capacity, hd] buffer. */
function writePositions(from: Tensor, to: Tensor, rows: number, s: number, at: number, capacity: number, hd: number): void {
  const src = from.data as Float32Array | Uint16Array;
  const dst = to.data as Float32Array | Uint16Array;
  for (let r = 0; r < rows; r++) dst.set(src.subarray(r * s * hd, (r + 1) * s * hd), (r * capacity + at) * hd);
}

/** The caller's [B, P + S] mask laid over the buffer: [B, capacity + S], unused positions P…capacity-1 masked. */
function bufferMask(mask: BigInt64Array, b: number, p: number, s: number, capacity: number): Tensor {
  const t = p + s;
  const out = new BigInt64Array(b * (capacity + s));
  for (let r = 0; r < b; r++) {
    out.set(mask.subarray(r * t, r * t + p), r * (capacity + s));
    out.set(mask.subarray(r * t + p, (r + 1) * t), r * (capacity + s) + capacity);
  }
  return new Tensor('int64', out, [b, capacity + s]);
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
