// Section 2, the peer: @huggingface/transformers (transformers.js) on the same weights, exported
// into the folder layout it loads (config, tokenizer.json, onnx/model.onnx + model.onnx_data, and
// our int8 graph as onnx/model_quantized.onnx for its 'q8' dtype). Measures load, prefill, time to
// first token, decode (greedy and top-k sampling) and peak RSS; runs in a child of bench/run.ts.

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { register } from 'node:module';
import { join } from 'node:path';
import { writeOnnxModel } from '../../runtime/src/convert.js';
import { DEFAULT_GRAPH_OPTIONS, type GraphDtype } from '../../runtime/src/onnx/optGraph.js';
import { generate } from '../../runtime/src/generation/generate.js';
import { loadOptModel } from '../../runtime/src/model.js';
import { OptTokenizer } from '../../runtime/src/tokenizer/optTokenizer.js';
import { writeOptTokenizerFiles } from '../../test/fixtures/tokenizerFiles.js';
import { CHECKPOINT_DIR, PEER_MODEL_NAME, PEER_ROOT, ROOT, fileBytes, median, timeRepeated } from '../lib/util.js';
import { CHECK, type GenerationFigures, SAMPLING, benchPrompt, benchPromptIds } from './ours.js';

/** transformers.js dtype → the graph we write for it, and its file name (transformers.js's suffix rule). */
export const PEER_FILES: Record<'fp32' | 'q8', { graph: GraphDtype; file: string }> = {
  fp32: { graph: 'fp32', file: 'model.onnx' },
  q8: { graph: 'int8', file: 'model_quantized.onnx' },
};
export type PeerDtype = keyof typeof PEER_FILES;

export const peerDir = (): string => join(PEER_ROOT, PEER_MODEL_NAME);

export interface ExportResult {
  dir: string;
  reused: boolean;
  seconds: number;
  files: Record<string, number>;
}

/** Writes (or finds, when the checkpoint has not changed) the transformers.js folder. */
export async function exportForPeer(_p: unknown = {}): Promise<ExportResult> {
  const dir = peerDir();
  const weights = statSync(join(CHECKPOINT_DIR, 'model.safetensors'));
  // Rewritten when the checkpoint or the converter's code changes (other work moves the graph on).
  const code = createHash('sha256');
  for (const f of ['convert.ts', 'onnx/optGraph.ts', 'onnx/graphBuilder.ts', 'onnx/quantize.ts'])
    code.update(readFileSync(join(ROOT, 'runtime', 'src', f)));
  const stamp = JSON.stringify({
    size: weights.size,
    mtimeMs: weights.mtimeMs,
    files: PEER_FILES,
    options: DEFAULT_GRAPH_OPTIONS,
    code: code.digest('hex'),
  });
  const stampFile = join(dir, 'bench-export.json');
  const files = () =>
    Object.fromEntries(
      Object.values(PEER_FILES).flatMap(({ file }) => [
        [`onnx/${file}`, fileBytes(join(dir, 'onnx', file))],
        [`onnx/${file}_data`, fileBytes(join(dir, 'onnx', `${file}_data`))],
      ]),
    );
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return { dir, reused: true, seconds: 0, files: files() };

  const started = performance.now();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const f of ['config.json', 'generation_config.json']) copyFileSync(join(CHECKPOINT_DIR, f), join(dir, f));
  await writeOptTokenizerFiles(dir, { withTokenizerJson: true });
  for (const { graph, file } of Object.values(PEER_FILES)) {
    // Plain ONNX operators, the cache grown by Concat, logits for every position: Optimum's layout.
    const options = { ...DEFAULT_GRAPH_OPTIONS, dtype: graph, fused: false, logitsToKeepInput: false };
    await writeOnnxModel(CHECKPOINT_DIR, join(dir, 'onnx', file), options, undefined, join(dir, 'onnx', `${file}_data`));
  }
  writeFileSync(stampFile, stamp);
  return { dir, reused: false, seconds: (performance.now() - started) / 1000, files: files() };
}

export interface PeerParams {
  dtype: PeerDtype;
  threads: number;
  quick?: boolean;
  prefillLengths?: number[];
  promptTokens?: number;
  newTokens?: number;
}

export interface PeerResult {
  dtype: PeerDtype;
  threads: number;
  /** How transformers.js was imported (and what the `sharp` image dependency needed). */
  importNote: string;
  loadMs: number;
  loadRunsMs: number[];
  prefill: { tokens: number; ms: number; tokensPerSecond: number; runs: number }[];
  generation: Partial<Record<'greedy' | 'topK', GenerationFigures>>;
  /** The ids CHECK generates after the decode prompt. */
  checkTokenIds: number[];
  /** The ids CHECK generates with our runtime on the exported (plain) graph transformers.js ran. */
  oursOnTheirGraphCheckIds: number[];
  /** Whether transformers.js's tokenizer gives our ids for the prompt. */
  tokenizerMatches: boolean;
  peakRssBytes: number;
}

type Transformers = typeof import('@huggingface/transformers');

/**
 * transformers.js imports `sharp` (an image library) at the top of its Node build. When sharp's
 * native part is missing, resolve `sharp` to an empty module: transformers.js then treats image
 * support as absent, which text generation never needs.
 */
async function importTransformers(): Promise<{ t: Transformers; note: string }> {
  let note = 'imported as is (sharp loads)';
  try {
    await import('sharp');
  } catch (err) {
    const stub = 'data:text/javascript,export default undefined;';
    const hook = `export async function resolve(s, c, next) { return s === 'sharp' ? { url: ${JSON.stringify(stub)}, shortCircuit: true } : next(s, c); }`;
    register(`data:text/javascript,${encodeURIComponent(hook)}`);
    note = `sharp failed to load (${(err as Error).message.split('\n')[0]}); resolved to an empty module through a loader hook`;
  }
  return { t: await import('@huggingface/transformers'), note };
}

export async function measurePeer(p: PeerParams): Promise<PeerResult> {
  const quick = p.quick ?? false;
  const promptTokens = p.promptTokens ?? 128;
  const newTokens = p.newTokens ?? 64;
  const { t, note } = await importTransformers();
  t.env.allowRemoteModels = false;
  t.env.allowLocalModels = true;
  t.env.localModelPath = `${PEER_ROOT}/`;
  const load = () =>
    t.AutoModelForCausalLM.from_pretrained(PEER_MODEL_NAME, {
      local_files_only: true,
      dtype: p.dtype,
      device: 'cpu',
      session_options: { intraOpNumThreads: p.threads },
    });

  await (await load()).dispose(); // warms the page cache, as our warm load does
  let model: Awaited<ReturnType<typeof load>> | undefined;
  const loadRunsMs = await timeRepeated(
    async () => {
      await model?.dispose();
      model = await load();
    },
    { min: quick ? 2 : 3, max: quick ? 2 : 5, budgetMs: 15_000 },
  );
  const m = model!;
  const tokenizer = await t.AutoTokenizer.from_pretrained(PEER_MODEL_NAME, { local_files_only: true });
  const ours = await OptTokenizer.fromDir(peerDir());

  const ids = (xs: readonly number[]) => new t.Tensor('int64', BigInt64Array.from(xs, BigInt), [1, xs.length]);
  const ones = (n: number) => new t.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]);

  // Prefill: one generate() of a single new token, which is one forward over the whole prompt.
  const prefill: PeerResult['prefill'] = [];
  for (const n of p.prefillLengths ?? [128, 512, 1024]) {
    const promptIds = await benchPromptIds(ours, n);
    const run = () => m.generate({ input_ids: ids(promptIds), attention_mask: ones(n), max_new_tokens: 1, do_sample: false });
    await run();
    const times = await timeRepeated(run, { min: 1, max: quick ? 2 : 3, budgetMs: quick ? 2500 : 5000 });
    prefill.push({ tokens: n, ms: median(times), tokensPerSecond: n / (median(times) / 1000), runs: times.length });
  }

  const prompt = await benchPrompt(ours, promptTokens);
  const theirIds = (tokenizer(prompt.text) as { input_ids: { data: BigInt64Array } }).input_ids.data;
  const tokenizerMatches = theirIds.length === prompt.ids.length && prompt.ids.every((id, i) => BigInt(id) === theirIds[i]);

  const generation: PeerResult['generation'] = {};
  for (const name of ['greedy', 'topK'] as const) {
    const settings = SAMPLING[name] as Record<string, unknown>;
    const { seed: _seed, ...params } = settings; // transformers.js takes no seed
    const ttft: number[] = [],
      rates: number[] = [];
    let tokenIds: number[] = [];
    const runs = 2;
    for (let r = 0; r <= runs; r++) {
      const stamps: number[] = [];
      const got: number[] = [];
      const streamer = Object.assign(new t.BaseStreamer(), {
        put(value: bigint[][]) {
          stamps.push(performance.now());
          if (stamps.length > 1) got.push(Number(value[0]![0]));
        },
        end() {},
      });
      const s = performance.now();
      // Their tokenizer runs inside the timed region, as ours does in generateStream; the ids fed are ours (identical when tokenizerMatches).
      tokenizer(prompt.text);
      await m.generate({
        input_ids: ids(prompt.ids),
        attention_mask: ones(prompt.ids.length),
        max_new_tokens: newTokens,
        min_new_tokens: newTokens,
        ...params,
        streamer: streamer as never,
      });
      if (r === 0) {
        tokenIds = got;
        continue;
      }
      // stamps[0] is the prompt (put before the first forward); stamps[1] the first new token.
      ttft.push(stamps[1]! - s);
      rates.push((stamps.length - 2) / ((stamps.at(-1)! - stamps[1]!) / 1000));
    }
    const rate = median(rates);
    generation[name] = {
      promptTokens: prompt.ids.length,
      newTokens: tokenIds.length,
      ttftMs: median(ttft),
      decodeTokensPerSecond: rate,
      decodeMsPerToken: 1000 / rate,
      runs,
      tokenIds,
    };
  }
  const checked = (await m.generate({ input_ids: ids(prompt.ids), attention_mask: ones(prompt.ids.length), ...CHECK })) as unknown as {
    data: BigInt64Array;
  };
  const checkTokenIds = Array.from(checked.data.slice(prompt.ids.length), Number);
  await m.dispose();
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;

  // Our generation on transformers.js's graph file (the plain export): tells a difference in the
  // pipelines from a numeric difference between our fused graph and the plain one.
  const mine = await loadOptModel(peerDir(), { dtype: PEER_FILES[p.dtype].graph, threads: p.threads });
  const oursOnTheirGraphCheckIds = (await generate(mine, prompt.text, CHECK))[0]!.tokenIds;
  await mine.dispose();
  return {
    dtype: p.dtype,
    threads: p.threads,
    importNote: note,
    loadMs: median(loadRunsMs),
    loadRunsMs,
    prefill,
    generation,
    checkTokenIds,
    oursOnTheirGraphCheckIds,
    tokenizerMatches,
    peakRssBytes,
  };
}
