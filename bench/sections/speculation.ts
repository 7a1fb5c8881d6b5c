// Prompt lookup against plain decoding, side by side in one process, on the same model and inputs:
// rewrites of held-out paragraphs and code blocks (the extension's own rewrite prompt), ghost text
// at held-out code positions (1,500 tokens of context), and a random-weights model where nothing
// repeats (the worst case); and assisted generation, the trained draft for the trained target, on
// the ghost-text inputs. Each input runs plain, then with lookup, alternating; the texts must be
// identical, and the figures are decode tokens per second (after the first token, which the
// prefill produces either way), tokens per model pass and the share of candidates accepted.

import { join } from 'node:path';
import { DEFAULT_TEMPLATES, buildRewritePrompt, rewriteTokenBudget } from '../../extension/src/rewrite/rewriteTemplates.js';
import { DraftStateStore } from '../../runtime/src/generation/assistant.js';
import { type GenerateParams, type GeneratedSequence, generateStream } from '../../runtime/src/generation/generate.js';
import { loadOptModel, type OptModel } from '../../runtime/src/model.js';
import type { GraphDtype } from '../../runtime/src/onnx/optGraph.js';
import { ONNX_CACHE_DIR, ROOT, childScript, median } from '../lib/util.js';
import { samplePositions } from './completionQuality.js';
import { heldOutTexts } from './quality.js';

export type SpeculationTask = 'rewrite' | 'ghost' | 'random' | 'assisted';

export interface SpeculationParams {
  task: SpeculationTask;
  /** A trained fixture's name, or a checkpoint folder (the random-weights case). */
  model: string;
  dtype: GraphDtype;
  lookupTokens: number;
  /** Inputs to run (each twice: plain and with lookup). */
  samples: number;
  /** Assisted generation instead of prompt lookup: this trained fixture drafts. */
  assistant?: string;
}

interface Pair {
  what: string;
  tokens: number;
  plainMs: number;
  lookupMs: number;
  plainTotalMs: number;
  lookupTotalMs: number;
  passes: number;
  proposed: number;
  accepted: number;
  same: boolean;
}

export interface SpeculationResult extends SpeculationParams {
  inputs: number;
  identical: number;
  tokens: number;
  /** Decode tokens/s over all inputs (tokens after the first / decode time), and the ratio. */
  plainTokensPerSecond: number;
  lookupTokensPerSecond: number;
  speedup: number;
  /** Per input: time from the request to the last token (prefill included), medians. */
  plainTotalP50: number;
  lookupTotalP50: number;
  tokensPerPass: number;
  acceptance: number;
  seconds: number;
}

const TRAINED_DIR = join(ROOT, 'test', 'fixtures', 'trained');

/** Runs one generation, timing the decode (from the first token to the end) and the whole request. */
async function timed(
  model: OptModel,
  prompt: string,
  params: GenerateParams,
): Promise<{ row: GeneratedSequence; decodeMs: number; totalMs: number }> {
  const t0 = performance.now();
  let first: number | undefined;
  let row: GeneratedSequence | undefined;
  for await (const e of generateStream(model, prompt, params)) {
    if (e.type === 'token') first ??= performance.now();
    if (e.type === 'done') row = e.result;
  }
  const end = performance.now();
  return { row: row!, decodeMs: end - (first ?? end), totalMs: end - t0 };
}

/** Paragraphs (prose) or blocks (code) of 150-700 characters, the first few of each file. */
function chunks(samples: number): { kind: string; text: string }[] {
  const out: { kind: string; text: string }[] = [];
  const perKind = Math.ceil(samples / 2);
  for (const kind of ['prose', 'code']) {
    for (const f of heldOutTexts('opt-target', 200_000).filter((t) => t.kind === kind)) {
      for (const part of f.text.split(/\n\s*\n/)) {
        if (part.trim().length >= 150 && part.length <= 700) {
          out.push({ kind, text: part });
          break; // one per file: variety
        }
      }
      if (out.filter((c) => c.kind === kind).length >= perKind) break;
    }
  }
  return out.slice(0, samples);
}

export async function measureSpeculation(p: SpeculationParams): Promise<SpeculationResult> {
  const started = performance.now();
  const dir = p.model.includes('/') ? p.model : join(TRAINED_DIR, p.model);
  const model = await loadOptModel(dir, { dtype: p.dtype, device: 'cpu', threads: 2, cacheDir: ONNX_CACHE_DIR });
  const assistant = p.assistant
    ? await loadOptModel(join(TRAINED_DIR, p.assistant), { dtype: p.dtype, device: 'cpu', threads: 2, cacheDir: ONNX_CACHE_DIR })
    : undefined;
  // The assistant keeps its state between requests, as the runtime does: the positions of a file
  // come in order, so each one reads only the text since the one before.
  const faster: GenerateParams = assistant
    ? { assistantModel: assistant, assistantStore: new DraftStateStore(assistant) }
    : { prompt_lookup_num_tokens: p.lookupTokens };
  const pairs: Pair[] = [];
  const run = async (what: string, prompt: string, params: GenerateParams) => {
    const plain = await timed(model, prompt, params);
    const fast = await timed(model, prompt, { ...params, ...faster });
    const s = fast.row.speculation ?? { passes: fast.row.tokenIds.length, proposed: 0, accepted: 0 };
    pairs.push({
      what,
      tokens: plain.row.tokenIds.length,
      plainMs: plain.decodeMs,
      lookupMs: fast.decodeMs,
      plainTotalMs: plain.totalMs,
      lookupTotalMs: fast.totalMs,
      passes: s.passes,
      proposed: s.proposed,
      accepted: s.accepted,
      same: plain.row.text === fast.row.text && plain.row.tokenIds.join() === fast.row.tokenIds.join(),
    });
  };
  try {
    await run('warm-up', 'def f(x):\n    return x\n', { max_new_tokens: 8 }); // first-run costs out of the figures
    pairs.length = 0;
    if (p.task === 'rewrite') {
      const template = DEFAULT_TEMPLATES[0]!;
      for (const c of chunks(p.samples)) {
        await run(c.kind, buildRewritePrompt(template, c.text), {
          max_new_tokens: rewriteTokenBudget(c.text, 512),
          do_sample: false,
          stop_strings: [template.stop],
        });
      }
    } else if (p.task === 'ghost' || p.task === 'assisted') {
      const files = heldOutTexts('opt-target', 400_000).filter((t) => t.kind === 'code');
      const positions = files.flatMap((f) => samplePositions(f.file, f.text, 1, 7).map((pos) => ({ ...pos, text: f.text })));
      for (const pos of positions.slice(0, p.samples)) {
        await run(pos.kind, pos.text.slice(0, pos.offset), { max_new_tokens: 48, truncate: 'left', maxPromptTokens: 1500 });
      }
    } else {
      const prompts = [
        'The harbour master logged every ship',
        'import numpy as np\n',
        'Once upon a time',
        '<html><body>',
        'SELECT name FROM',
      ];
      for (let i = 0; i < p.samples; i++) await run('random', prompts[i % prompts.length]!, { max_new_tokens: 64 });
    }
  } finally {
    await model.dispose();
    await assistant?.dispose();
  }
  const sum = (f: (x: Pair) => number) => pairs.reduce((n, x) => n + f(x), 0);
  const decodeTokens = sum((x) => Math.max(0, x.tokens - 1));
  const plainTps = (decodeTokens / sum((x) => x.plainMs)) * 1000;
  const lookupTps = (decodeTokens / sum((x) => x.lookupMs)) * 1000;
  return {
    ...p,
    inputs: pairs.length,
    identical: pairs.filter((x) => x.same).length,
    tokens: sum((x) => x.tokens),
    plainTokensPerSecond: plainTps,
    lookupTokensPerSecond: lookupTps,
    speedup: lookupTps / plainTps,
    plainTotalP50: median(pairs.map((x) => x.plainTotalMs)),
    lookupTotalP50: median(pairs.map((x) => x.lookupTotalMs)),
    tokensPerPass: sum((x) => x.tokens) / sum((x) => x.passes),
    acceptance: sum((x) => x.proposed) > 0 ? sum((x) => x.accepted) / sum((x) => x.proposed) : 0,
    seconds: (performance.now() - started) / 1000,
  };
}

export const SPECULATION_SCRIPT = await childScript(import.meta.url, { speculation: (p: SpeculationParams) => measureSpeculation(p) });
