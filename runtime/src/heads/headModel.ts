// A loaded OPT checkpoint for everything but generation: the body as a cache-less ONNX graph that
// returns hidden states, and whichever small head the checkpoint has (score, qa_outputs), read from
// its weights and applied here in float32. Classification, extractive QA and embeddings over texts.
//
// Legend: B batch, S tokens, E word_embed_proj_dim, N num_labels.

import type { AnswerResult, ClassifyResult, EmbedResult } from '../../../protocol/protocol.js';
import { type OptArchitecture, type OptConfig, readOptConfig } from '../config.js';
import { openOptWeights } from '../checkpoint/optWeights.js';
import type { ModelTask } from '../../../protocol/engine.js';
import { UsageError } from '../../../protocol/errors.js';
import { OptTokenizer } from '../tokenizer/optTokenizer.js';
import { type BodyInput, type BodyLoadOptions, OptBody } from './body.js';
import { labelScores, linearAt, pooledPositions } from './classification.js';
import { type HeadConfig, readHeadConfig, requireTask } from './headConfig.js';
import { type Pooling, POOLINGS, pool } from './pooling.js';
import { DEFAULT_MAX_SEQ_LEN, QaEncoder } from './qaEncoding.js';
import { searchSpans } from './spanSearch.js';

export interface HeadModelLoadOptions extends BodyLoadOptions {
  /** Refuse, before converting anything, a checkpoint whose head cannot serve this task. */
  task?: ModelTask;
}

export interface AnswerOptions {
  maxAnswerLength?: number;
  topK?: number;
  /** Tokens per window over a long context (default min(384, the model's positions)), and their overlap (default min(maxSeqLen / 2, 128)). */
  maxSeqLen?: number;
  docStride?: number;
}

export interface EmbedOptions {
  pooling?: Pooling;
  /** Every layer's pooled state too (needs a body loaded with allHiddenStates). */
  allLayers?: boolean;
}

export interface Embedding extends EmbedResult {
  /** With allLayers: hidden_states.0 … hidden_states.L pooled the same way (the last is `embedding`). */
  layers?: number[][];
}

interface HeadWeights {
  score?: Float32Array; // [N, E]
  qaWeight?: Float32Array; // [2, E]
  qaBias?: Float32Array; // [2]
}

export class OptHeadModel {
  private constructor(
    readonly dir: string,
    readonly config: OptConfig,
    readonly headConfig: HeadConfig,
    readonly tokenizer: OptTokenizer,
    readonly body: OptBody,
    private readonly _weights: HeadWeights,
    private readonly _qa: QaEncoder | undefined,
  ) {}

  get architecture(): OptArchitecture {
    return this.config.architectures[0]!;
  }

  static async load(dir: string, options: HeadModelLoadOptions = {}): Promise<OptHeadModel> {
    const config = await readOptConfig(dir);
    const architecture = config.architectures[0]!;
    if (options.task) requireTask(architecture, options.task, dir);
    const headConfig = await readHeadConfig(dir, config);
    const weights: HeadWeights = {};
    if (architecture === 'OPTForSequenceClassification' || architecture === 'OPTForQuestionAnswering') {
      const w = await openOptWeights(dir, config); // checks every name and shape, heads included
      if (architecture === 'OPTForSequenceClassification') weights.score = await w.read('score.weight');
      else [weights.qaWeight, weights.qaBias] = await Promise.all([w.read('qa_outputs.weight'), w.read('qa_outputs.bias')]);
    }
    const [tokenizer, qa] = await Promise.all([
      OptTokenizer.fromDir(dir),
      architecture === 'OPTForQuestionAnswering' ? QaEncoder.fromDir(dir) : undefined,
    ]);
    const body = await OptBody.load(dir, config, options);
    return new OptHeadModel(dir, config, headConfig, tokenizer, body, weights, qa);
  }

  /** Raw classifier logits at each row's pooled token: [B, N]. */
  async classificationLogits(input: BodyInput): Promise<Float32Array> {
    requireTask(this.architecture, 'classify', this.dir);
    const pooled = pooledPositions(input.inputIds, input.batch, this.headConfig.padTokenId); // before the model: a refused batch costs nothing
    const out = await this.body.forward(input);
    return linearAt(
      out.lastHiddenState,
      out.width,
      pooled.map((p, r) => r * out.length + p),
      this._weights.score!,
    );
  }

  /** Start and end logits over every token of one row: [S] each. */
  async qaLogits(input: BodyInput): Promise<{ start: Float32Array; end: Float32Array }> {
    requireTask(this.architecture, 'answer', this.dir);
    if (input.batch !== 1) throw new UsageError('question answering runs one question at a time');
    const out = await this.body.forward(input);
    const rows = Array.from({ length: out.length }, (_, i) => i);
    const both = linearAt(out.lastHiddenState, out.width, rows, this._weights.qaWeight!, this._weights.qaBias); // [S, 2]
    const start = new Float32Array(out.length),
      end = new Float32Array(out.length);
    for (let i = 0; i < out.length; i++) [start[i], end[i]] = [both[2 * i]!, both[2 * i + 1]!];
    return { start, end };
  }

  async classify(texts: readonly string[]): Promise<ClassifyResult[]> {
    requireTask(this.architecture, 'classify', this.dir);
    const input = await this._batch(texts);
    const logits = await this.classificationLogits(input);
    const n = this.config.num_labels;
    const { problemType, labels } = this.headConfig;
    return texts.map((_, r) => {
      const row = Array.from(logits.subarray(r * n, (r + 1) * n));
      return { problemType, labels: labelScores(row, problemType, labels), logits: row };
    });
  }

  async answer(question: string, context: string, options: AnswerOptions = {}): Promise<AnswerResult> {
    requireTask(this.architecture, 'answer', this.dir);
    const maxAnswerLength = positiveInt(options.maxAnswerLength ?? 15, 'maxAnswerLength');
    const topK = positiveInt(options.topK ?? 1, 'topK');
    const maxSeqLen = positiveInt(options.maxSeqLen ?? Math.min(DEFAULT_MAX_SEQ_LEN, this.config.max_position_embeddings), 'maxSeqLen');
    if (maxSeqLen > this.config.max_position_embeddings)
      throw new UsageError(`maxSeqLen ${maxSeqLen} exceeds the model's ${this.config.max_position_embeddings} positions`);
    const windows = await this._qa!.encodeWindows(question, context, { maxSeqLen, docStride: options.docStride });
    // As the pipeline: each window's spans scored within the window, then all of them ranked together.
    const answers: AnswerResult['answers'] = [];
    for (const w of windows) {
      const s = w.ids.length;
      const { start, end } = await this.qaLogits({
        inputIds: BigInt64Array.from(w.ids, BigInt),
        attentionMask: new BigInt64Array(s).fill(1n),
        batch: 1,
      });
      for (const span of searchSpans(start, end, w.candidate, { maxAnswerLength, topK })) {
        const chars = w.charSpan(span.start, span.end);
        answers.push({ text: context.slice(chars.start, chars.end), start: chars.start, end: chars.end, score: span.score });
      }
    }
    return { answers: answers.sort((a, b) => b.score - a.score).slice(0, topK) }; // stable: ties keep window order
  }

  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<Embedding[]> {
    const pooling = options.pooling ?? 'mean';
    if (!POOLINGS.includes(pooling)) throw new UsageError(`pooling must be one of ${POOLINGS.join(', ')}, got "${String(pooling)}"`);
    if (options.allLayers && !this.body.allHiddenStates)
      throw new UsageError("every layer's states need the model loaded with allHiddenStates");
    const input = await this._batch(texts);
    const out = await this.body.forward(input);
    const last = pool(out.lastHiddenState, input.attentionMask, input.batch, out.width, pooling);
    const layers = options.allLayers
      ? out.hiddenStates!.map((h) => pool(h.data, input.attentionMask, input.batch, h.width, pooling))
      : undefined;
    return texts.map((_, r) => {
      const tokens = input.attentionMask.subarray(r * out.length, (r + 1) * out.length).reduce((n, m) => n + Number(m), 0);
      const e: Embedding = { embedding: Array.from(last[r]!), tokens };
      if (layers) e.layers = layers.map((l) => Array.from(l[r]!));
      return e;
    });
  }

  dispose(): Promise<void> {
    return this.body.release();
  }

  /** Tokenizes texts (BOS first, as transformers) and pads them on the right, OPT's tokenizer side. */
  private async _batch(texts: readonly string[]): Promise<BodyInput> {
    if (texts.length === 0) throw new UsageError('give at least one text');
    const rows = await this.tokenizer.encodeBatch(texts);
    const s = Math.max(...rows.map((r) => r.length));
    const inputIds = new BigInt64Array(texts.length * s).fill(BigInt(this.tokenizer.padTokenId));
    const attentionMask = new BigInt64Array(texts.length * s);
    rows.forEach((row, r) => {
      row.forEach((id, j) => {
        inputIds[r * s + j] = BigInt(id);
        attentionMask[r * s + j] = 1n;
      });
    });
    return { inputIds, attentionMask, batch: texts.length };
  }
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${name} must be an integer >= 1, got ${JSON.stringify(v)}`);
  return v;
}
