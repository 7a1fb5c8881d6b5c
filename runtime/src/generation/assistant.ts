// Assisted generation (transformers' AssistedCandidateGenerator): a smaller OPT with the same
// tokenizer drafts the next tokens (greedily, or sampled from its own processed distribution when
// the target samples, for speculative sampling), one cheap pass each, and the target scores them all in
// one pass (generate.ts keeps those it picks itself). The draft keeps its own KV cache, shortened
// to what the target accepted after every round. Drafting stops early when the draft is unsure
// (its top probability under assistant_confidence_threshold), and the number of tokens adapts
// ("heuristic": two more after a round that was all accepted, one fewer otherwise) or stays
// ("constant"), as transformers' num_assistant_tokens_schedule.

import type { KvCache } from '../decoder.js';
import { UsageError } from '../../../protocol/errors.js';
import type { GenerationModel } from './generate.js';
import { type LogitsPlan, type LogitsScratch, createLogitsScratch, processLogits } from './logitsProcessors.js';
import { type Rng, argmax } from './sampling.js';
import { sampleFrom, softmaxInto } from './speculativeSampling.js';

/** transformers' GenerationConfig defaults for assisted generation. */
export const ASSISTANT_DEFAULTS = { numAssistantTokens: 20, schedule: 'constant', confidenceThreshold: 0.4 } as const;

export type AssistantSchedule = 'constant' | 'heuristic';

/** Text whose encoding shows different merges where the vocabularies agree. */
const PROBE = [
  'The quick brown fox jumps over the lazy dog.',
  '    def __init__(self, value=None):\n        self._value = value  # 42\n',
  'const x = await fetch(`https://example.com/${id}`); // émoji 🙂 and ünïcode',
];

/**
 * The draft can propose for the target only when both read and write text with the same ids: every
 * id names the same token, the same special ids, and the same merges (the probe texts encode the
 * same). Throws a UsageError saying what differs.
 */
export async function checkSameTokenizer(target: GenerationModel, draft: GenerationModel): Promise<void> {
  // Compared once per pair of loaded models: every request with an assistant asks, and the
  // comparison walks the whole vocabulary.
  if (sameTokenizers.get(target)?.has(draft)) return;
  const a = target.tokenizer;
  const b = draft.tokenizer;
  let differs: string | undefined;
  if (a.vocabSize !== b.vocabSize) differs = `vocabularies of ${a.vocabSize} and ${b.vocabSize} tokens`;
  else if (a.bosTokenId !== b.bosTokenId || a.eosTokenId !== b.eosTokenId || a.padTokenId !== b.padTokenId) differs = 'special token ids';
  else {
    for (let id = 0; id < a.vocabSize && !differs; id++) {
      if (a.idToToken(id) !== b.idToToken(id))
        differs = `token ${id} (${JSON.stringify(a.idToToken(id))} vs ${JSON.stringify(b.idToToken(id))})`;
    }
    for (const text of PROBE) {
      if (differs) break;
      if ((await a.encode(text)).join() !== (await b.encode(text)).join()) differs = 'merges (the same text encodes differently)';
    }
  }
  if (differs) {
    throw new UsageError(
      `the assistant model cannot draft for this model: their tokenizers differ (${differs}); ` +
        'use an assistant from the same family (e.g. facebook/opt-125m for a larger OPT)',
    );
  }
  let drafts = sameTokenizers.get(target);
  if (!drafts) sameTokenizers.set(target, (drafts = new WeakSet()));
  drafts.add(draft);
}

/** Pairs already found to share a tokenizer (held weakly: disposed models are forgotten). */
const sameTokenizers = new WeakMap<GenerationModel, WeakSet<GenerationModel>>();

export interface AssistantOptions {
  numAssistantTokens: number;
  schedule: AssistantSchedule;
  confidenceThreshold: number;
  /** The target's processors, for the draft's scores too (transformers hands the assistant the same list). */
  plan: LogitsPlan;
  /** Tokens the draft may read beyond the target's (its positions). */
  maxPositions: number;
  /**
   * Sampling (the target's do_sample): the draft samples its tokens from its own processed
   * distribution, kept for speculative sampling; otherwise it drafts greedily.
   */
  sample?: { rng: Rng };
  /** Where the draft's KV state waits between requests, so the next one (the next keystroke) reads only what changed. */
  store?: DraftStateStore;
}

/**
 * The draft's KV state kept between requests: the newest one only (the document being typed in),
 * the size of one context, which the memory check counted when the assistant loaded. A request
 * takes it (so two running at once never share it) and gives it back when it ends.
 */
export class DraftStateStore {
  private _entry: { tokens: number[]; cache: KvCache } | undefined;
  /** Requests that found a shared prefix, and the tokens they did not read again. */
  hits = 0;
  reusedTokens = 0;

  constructor(private readonly _draft: GenerationModel) {}

  /** The state if it shares a prefix with `ids`, cut to what is shared (at most all but the last token, whose scores are needed). */
  take(ids: readonly number[]): { cache: KvCache; length: number } | undefined {
    const e = this._entry;
    this._entry = undefined;
    if (!e) return undefined;
    let shared = 0;
    const n = Math.min(e.tokens.length, ids.length - 1);
    while (shared < n && e.tokens[shared] === ids[shared]) shared++;
    if (shared === 0) {
      this._draft.decoder.releaseCache(e.cache);
      return undefined;
    }
    this.hits++;
    this.reusedTokens += shared;
    return { cache: { ...e.cache, length: shared }, length: shared };
  }

  /** Keeps `cache`, which holds the KV of exactly `tokens`; the one kept before is released. */
  put(tokens: number[], cache: KvCache): void {
    if (this._entry) this._draft.decoder.releaseCache(this._entry.cache);
    this._entry = { tokens, cache };
  }

  clear(): void {
    if (this._entry) this._draft.decoder.releaseCache(this._entry.cache);
    this._entry = undefined;
  }
}

export class AssistantDrafter {
  private _past: KvCache | undefined;
  /** Tokens whose KV the draft holds (a prefix of the sequence). */
  private _fed = 0;
  private _tokens: number;
  private readonly _scratch: LogitsScratch;
  private readonly _logits: Float32Array;
  /** All ones (the draft's rows have no padding): each pass's attention mask is a prefix of it. */
  private readonly _mask: BigInt64Array;
  private _lastProposal = 0;
  private _lastBase = 0;
  private readonly _plan: LogitsPlan;
  /** With sampling: the draft's distribution at each token of the last proposal. */
  private _q: Float64Array[] = [];
  /** The sequence the draft has read: its KV holds the first `_fed` of these. */
  private _seq: number[] = [];
  private _tookStore = false;

  constructor(
    private readonly _draft: GenerationModel,
    private readonly _o: AssistantOptions,
  ) {
    this._tokens = _o.numAssistantTokens;
    const vocab = _draft.config.vocab_size;
    this._scratch = createLogitsScratch(Math.min(_draft.tokenizer.vocabSize, vocab));
    this._logits = new Float32Array(vocab);
    this._mask = new BigInt64Array(_o.maxPositions).fill(1n);
    // transformers leaves the min-length processors out of the assistant's list: the target decides when text may end.
    this._plan = { ..._o.plan, minLength: 0, minNewTokens: 0, sample: _o.sample !== undefined };
  }

  /**
   * Up to `room` draft tokens after `ids` (the whole sequence; the draft first reads what it has not
   * seen). `generated` counts the generated tokens among `ids`, for the processors.
   */
  async propose(ids: readonly number[], room: number, generated: number): Promise<number[]> {
    const want = Math.min(Math.floor(this._tokens), room, this._o.maxPositions - ids.length);
    this._lastBase = ids.length;
    this._lastProposal = 0;
    this._q = [];
    if (want <= 0) return [];
    if (!this._tookStore && this._o.store) {
      this._tookStore = true;
      const kept = this._o.store.take(ids);
      if (kept) {
        this._past = kept.cache;
        this._fed = kept.length;
      }
    }
    const seq = [...ids];
    this._seq = seq;
    const out: number[] = [];
    const decoder = this._draft.decoder;
    const vocab = this._scratch.vocab;
    while (out.length < want) {
      const fresh = seq.slice(this._fed); // the whole prompt at first, then each round's new tokens
      const r = await decoder.forward({
        inputIds: BigInt64Array.from(fresh, BigInt),
        batch: 1,
        attentionMask: this._mask.subarray(0, seq.length),
        past: this._past,
        logitsToKeep: 1,
        logitsBuffer: this._logits,
        reserve: Math.min(this._o.maxPositions, 2 * seq.length + 64),
      });
      this._past = r.present;
      this._fed = seq.length;
      const scores = r.logits.subarray(0, vocab);
      processLogits(scores, seq, generated + out.length, this._plan, this._scratch);
      let next: number;
      let confidence: number;
      if (this._o.sample) {
        const q = softmaxInto(scores, new Float64Array(vocab));
        next = sampleFrom(q, this._o.sample.rng);
        this._q.push(q);
        confidence = q[next]!;
      } else {
        next = argmax(scores);
        confidence = this._o.confidenceThreshold > 0 ? topProbability(scores, next) : 1;
      }
      out.push(next);
      seq.push(next);
      if (confidence < this._o.confidenceThreshold) break;
    }
    this._lastProposal = out.length;
    return out;
  }

  /** With sampling: the draft's distribution for candidate `j` of the last proposal. */
  probabilities(j: number): Float64Array | undefined {
    return this._q[j];
  }

  /** `accepted` of the last proposal were kept: the draft forgets what followed them. */
  accepted(accepted: number): void {
    const valid = this._lastBase + accepted;
    if (this._fed > valid && this._past) {
      this._fed = valid;
      this._past = { ...this._past, length: valid };
    }
    if (this._o.schedule === 'heuristic' && this._lastProposal > 0) {
      this._tokens = accepted === this._lastProposal ? this._tokens + 2 : Math.max(1, this._tokens - 1);
    }
  }

  dispose(): void {
    if (this._past && this._o.store && this._fed > 0)
      this._o.store.put(this._seq.slice(0, this._fed), { ...this._past, length: this._fed });
    else if (this._past) this._draft.decoder.releaseCache(this._past);
    this._past = undefined;
  }
}

/** softmax(scores)[id] without materialising the softmax. */
function topProbability(scores: Float32Array, id: number): number {
  const top = scores[id]!;
  if (!Number.isFinite(top)) return 0;
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.exp(scores[i]! - top);
  return 1 / sum;
}
