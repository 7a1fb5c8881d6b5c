#!/usr/bin/env node
// The `opt` command line: inspect and convert OPT checkpoints with the same code the editor
// uses. Every command prints JSON on stdout; errors go to stderr with exit code 2 for bad input.

import { parseArgs } from 'node:util';
import { fileAccessError } from './errors.js';
import type { SamplingOptions } from '../../protocol/engine.js';
import { UsageError, kindOf } from '../../protocol/errors.js';
import { SAMPLING_KEYS, SAMPLING_SPEC, type SamplingKey, type SamplingOptionSpec, validSamplingValue } from '../../protocol/sampling.js';
import { perplexityOfTexts, readTextFile, slidingWindows } from './perplexity.js';
import { readOptConfig } from './config.js';
import { DTYPES, type DtypeChoice, type LoadOptions, convertGraphOptions, loadOptModel } from './model.js';
import { convertCheckpoint } from './convert.js';
import { DEVICES, type Device, checkThreads } from './session.js';
import { OptTokenizer } from './tokenizer/optTokenizer.js';
import { topK } from './topk.js';
import { generate, generateStream } from './generation/generate.js';
import { resolveModel } from './hub/resolveModel.js';
import { startRpcServer } from './server/rpcServer.js';
import { checkServeAccess, startOpenAiServer } from './server/openaiServer.js';
import { createLocalEngine } from './engine/localEngine.js';
import { OptHeadModel } from './heads/headModel.js';
import { POOLINGS, type Pooling } from './heads/pooling.js';

/** The sampling flags for the usage text, in the spec's order. */
const SAMPLING_USAGE = SAMPLING_KEYS.flatMap((key) => {
  const { cli, kind }: SamplingOptionSpec = SAMPLING_SPEC[key];
  if (cli === null) return [];
  return [
    kind.type === 'boolean'
      ? `[--${cli}]`
      : kind.type === 'strings'
        ? `[--${cli} STRING]…`
        : `[--${cli} ${kind.type === 'int' ? 'N' : 'X'}]`,
  ];
});

const USAGE = `usage: opt <command> [options]

commands:
  generate  --model DIR "prompt" ${wrap([...SAMPLING_USAGE, '[--assistant-model DIR|ID]', '[--num-return-sequences N]', '[--json]'], 88, '            ')}
                                                                   streams the continuation to stdout
  serve     --model DIR|ID [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--prompt-lookup-num-tokens N]
            [--max-matching-ngram-size N] [--assistant-model DIR|ID]
                                                                   OpenAI-compatible /v1/completions server
  rpc                                                              the runtime process: JSON-RPC over stdio (what the editor starts)
  classify  --model DIR "text"…                                    labels and scores (OPTForSequenceClassification), as JSON
  answer    --model DIR --question "…" --context "…" [--max-answer-length N] [--top-k N] [--max-seq-len N] [--doc-stride N]
                                                                   answer spans in the context (OPTForQuestionAnswering), as JSON
  embed     --model DIR "text"… [--pooling mean|last] [--all-layers]
                                                                   pooled hidden states (any OPT checkpoint), as JSON
  logits    --model DIR (--ids 2,133,… | --text "…") [--top-k N]   last-position logits and top-k, as JSON
  tokenize  --model DIR --text "…" [--no-special]                  token ids and tokens, as JSON
  perplexity --model DIR FILE… [--max-length N] [--stride S]
                                                                   sliding-window perplexity of each file and in total, as JSON
                                                                   (transformers' method; default max length min(1024, positions), stride half of it)
  convert   --model DIR [--force]                                  build (or find) the cached ONNX model

common options:
  --dtype auto|fp32|fp16|int8|int4   weight precision (auto: int8 on cpu, fp16 on gpu)
  --device auto|cpu|webgpu|cuda      execution provider (default auto: CUDA, else WebGPU, else cpu;
                                     a GPU that fails to initialize falls back to cpu with a warning)
  --threads N                        onnxruntime intra-op threads (default: one per core)
  --plain-ops                        standard ONNX operators only (no onnxruntime contrib ops)
  --cache-dir DIR                    where converted models are kept (default ~/.cache/opt-complete)
`;

const OPTIONS = {
  model: { type: 'string' },
  ids: { type: 'string' },
  text: { type: 'string' },
  'top-k': { type: 'string' }, // logits: how many to list (default 10); generate: top_k sampling
  'no-special': { type: 'boolean', default: false },
  dtype: { type: 'string', default: 'auto' },
  device: { type: 'string', default: 'auto' },
  threads: { type: 'string', default: '0' },
  'plain-ops': { type: 'boolean', default: false },
  'cache-dir': { type: 'string' },
  force: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  // generate (and every sampling option's flag, from the spec: SAMPLING_FLAGS)
  'num-return-sequences': { type: 'string' },
  'assistant-model': { type: 'string' },
  json: { type: 'boolean', default: false },
  // classify, answer, embed
  question: { type: 'string' },
  context: { type: 'string' },
  'max-answer-length': { type: 'string' },
  'max-seq-len': { type: 'string' },
  'doc-stride': { type: 'string' },
  pooling: { type: 'string', default: 'mean' },
  'all-layers': { type: 'boolean', default: false },
  // perplexity
  'max-length': { type: 'string' },
  stride: { type: 'string' },
  // serve
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8000' },
  'api-key': { type: 'string' },
} as const;

/** parseArgs' options for the sampling spec's flags: booleans, repeatable strings, and numbers given as text. */
const SAMPLING_FLAGS: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = Object.fromEntries(
  SAMPLING_KEYS.flatMap((key) => {
    const { cli, kind }: SamplingOptionSpec = SAMPLING_SPEC[key];
    if (cli === null) return [];
    return [
      [
        cli,
        kind.type === 'boolean' ? { type: 'boolean' } : kind.type === 'strings' ? { type: 'string', multiple: true } : { type: 'string' },
      ],
    ];
  }),
);

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { ...SAMPLING_FLAGS, ...OPTIONS }, allowPositionals: true });
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return;
  }
  if (command === 'generate') return generateCommand(values, positionals.slice(1));
  if (command === 'serve') return serveCommand(values);
  if (command === 'rpc') {
    // Every setting comes in `initialize`: an option here would be silently ignored, so none is taken.
    if (argv.length !== 1)
      throw new UsageError(
        `rpc takes no arguments or options (its settings come in the initialize request), got: ${argv.slice(1).join(' ')}`,
      );
    // stdout carries the protocol: nothing else may write to it from here on.
    startRpcServer(process.stdin, process.stdout, {
      // A load still running in the inference worker (native code, or a stuck file-system call in
      // libuv's pool) can keep process.exit from ever returning: its threads are joined at exit.
      // Then the process ends itself at once, which the kernel always does.
      onClose: (code, clean) => (clean ? process.exit(code) : process.kill(process.pid, 'SIGKILL')),
    });
    return;
  }
  const commands: Record<string, (v: Values, texts: string[]) => Promise<unknown>> = {
    logits,
    tokenize,
    convert,
    classify,
    answer,
    embed,
    perplexity,
  };
  const run = commands[command];
  if (!run) throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  const result = await run(values, positionals.slice(1));
  process.stdout.write(`${JSON.stringify(result)}\n`); // one line: pipe through jq to read it
}

/** Streams one row's text as it is generated; with several rows, prints each when it is done. */
async function generateCommand(v: Values, prompts: string[]): Promise<void> {
  if (prompts.length === 0) throw new UsageError('generate needs a prompt: opt generate --model DIR "Once upon a time"');
  const options: SamplingOptions & { num_return_sequences?: number } = samplingFromFlags(v);
  if (v['num-return-sequences'] !== undefined) options.num_return_sequences = numberFlag('num-return-sequences', v['num-return-sequences']);
  const model = await loadModel(v);
  // transformers' assistant_model: loaded like the model (same precision and device).
  const assistantModel = v['assistant-model']
    ? await loadModel({ ...v, model: v['assistant-model'] }).catch(async (err: unknown) => {
        await model.dispose();
        throw err;
      })
    : undefined;
  try {
    const onWarning = (w: string) => process.stderr.write(`opt: warning: ${w}\n`);
    const params = { ...options, assistantModel, onWarning };
    if (v.json) {
      const rows = await generate(model, prompts, params);
      process.stdout.write(
        `${JSON.stringify(rows.map((r) => ({ prompt: r.prompt, generated_text: r.text, token_ids: r.tokenIds, finish_reason: r.finishReason })))}\n`,
      );
      return;
    }
    const single = prompts.length === 1 && (options.num_return_sequences ?? 1) === 1;
    let echoed = false; // the prompt is echoed once generation has started, so a refused option prints nothing
    for await (const e of generateStream(model, prompts, { ...params, return_full_text: !single })) {
      if (single && !echoed) echoed = process.stdout.write(prompts[0]!) || true;
      if (single && e.type === 'token') process.stdout.write(e.text);
      else if (!single && e.type === 'done') process.stdout.write(`--- [${e.sequence}] ${e.result.finishReason}\n${e.result.text}\n`);
    }
    if (single) process.stdout.write('\n');
  } finally {
    await model.dispose();
    await assistantModel?.dispose();
  }
}

/** Serves /v1/completions until interrupted. The API key may also come from OPT_API_KEY. */
async function serveCommand(v: Values): Promise<void> {
  if (!v.model) throw new UsageError('--model is required: a folder with config.json and weights, or a Hub id such as facebook/opt-125m');
  // A bind beyond loopback without a key, or a blank key, is refused before the model loads (minutes for a large one).
  const apiKey = checkServeAccess(v.host, v['api-key'] ?? process.env.OPT_API_KEY);
  const { prompt_lookup_num_tokens, max_matching_ngram_size, ...rest } = samplingFromFlags(v);
  if (Object.keys(rest).length > 0) {
    throw new UsageError(`serve takes sampling options per request (in the body), not as flags: ${Object.keys(rest).join(', ')}`);
  }
  const speculation = { prompt_lookup_num_tokens, max_matching_ngram_size };
  for (const [key, value] of Object.entries(speculation)) {
    if (value !== undefined && !validSamplingValue(key as SamplingKey, value)) {
      throw new UsageError(
        `--${SAMPLING_SPEC[key as SamplingKey].cli} must be ${SAMPLING_SPEC[key as SamplingKey].expected}, got ${value}`,
      );
    }
  }
  const engine = await createLocalEngine({
    model: v.model,
    dtype: dtypeOf(v),
    device: deviceOf(v),
    threads: threadsOf(v),
    cacheDir: v['cache-dir'],
    assistantModel: v['assistant-model'],
    onProgress: (m) => process.stderr.write(`opt: ${m}\n`),
  });
  const server = await startOpenAiServer(engine, {
    host: v.host,
    port: intOf(v.port, '--port', 0),
    apiKey,
    speculation: Object.fromEntries(Object.entries(speculation).filter(([, x]) => x !== undefined)),
    log: (line) => process.stderr.write(`${line}\n`),
  }).catch(async (err: unknown) => {
    await engine.dispose();
    throw err;
  });
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
  });
  await server.close();
  await engine.dispose();
}

async function logits(v: Values) {
  const model = await loadModel(v);
  try {
    const ids =
      v.ids !== undefined
        ? parseIds(v.ids, model.config.vocab_size)
        : v.text !== undefined
          ? await model.tokenizer.encode(v.text)
          : undefined;
    if (!ids) throw new UsageError('logits needs --ids 2,133,… or --text "…"');
    if (ids.length === 0) throw new UsageError('logits needs at least one token');
    const out = await model.decoder.forward({
      inputIds: BigInt64Array.from(ids, BigInt),
      batch: 1,
      attentionMask: new BigInt64Array(ids.length).fill(1n),
      logitsToKeep: 1,
    });
    const k = intOf(v['top-k'] ?? '10', '--top-k', 0);
    return {
      model: model.dir,
      dtype: model.source.dtype,
      source: model.source.kind,
      ids,
      top_k: topK(out.logits, k).map(({ index, value }) => ({ id: index, token: model.tokenizer.idToToken(index) ?? null, logit: value })),
      logits: Array.from(out.logits),
    };
  } finally {
    await model.dispose();
  }
}

/** Each file's perplexity and the total; the files are read (and checked) before the model loads. */
async function perplexity(v: Values, paths: string[]) {
  if (paths.length === 0) throw new UsageError('perplexity needs a text file: opt perplexity --model DIR FILE…');
  const texts = await Promise.all(paths.map(async (file) => ({ file, text: await readTextFile(file) })));
  // The options are checked against the config before the model loads (a large one takes minutes).
  const dir = await requireModel(v);
  const positions = (await readOptConfig(dir)).max_position_embeddings;
  const maxLength = v['max-length'] === undefined ? Math.min(1024, positions) : intOf(v['max-length'], '--max-length', 2);
  if (maxLength > positions) throw new UsageError(`--max-length ${maxLength} is more than the model's ${positions} positions`);
  const stride = v.stride === undefined ? Math.max(1, Math.floor(maxLength / 2)) : intOf(v.stride, '--stride', 1);
  slidingWindows(0, maxLength, stride); // refuses a stride longer than the window
  const model = await loadModel(v);
  try {
    let shown = 0;
    const { files, total } = await perplexityOfTexts(model, texts, {
      maxLength,
      stride,
      onProgress: (file, window, windows) => {
        if (windows < 4 || (Date.now() - shown < 1000 && window < windows)) return; // long inputs only
        shown = Date.now();
        process.stderr.write(`opt: perplexity: ${file}: window ${window}/${windows}\n`);
      },
    });
    return { model: model.dir, dtype: model.source.dtype, device: model.device, max_length: maxLength, stride, ...total, files };
  } finally {
    await model.dispose();
  }
}

async function tokenize(v: Values) {
  if (v.text === undefined) throw new UsageError('tokenize needs --text "…"');
  const tokenizer = await OptTokenizer.fromDir(await requireModel(v));
  const ids = await tokenizer.encode(v.text, { addSpecialTokens: !v['no-special'] });
  return { ids, tokens: ids.map((id) => tokenizer.idToToken(id) ?? null) };
}

async function convert(v: Values) {
  const dir = await requireModel(v);
  const { dtype, ...graph } = convertGraphOptions(await readOptConfig(dir), loadOptionsOf(v)); // the very graph a load here looks up first
  const r = await convertCheckpoint(dir, { dtype, ...graph, cacheDir: v['cache-dir'], force: v.force });
  return { model_path: r.modelPath, dtype, converted: r.converted, seconds: Number(r.seconds.toFixed(3)) };
}

/** Labels and scores for each text; one text prints one object, several an array. */
async function classify(v: Values, texts: string[]) {
  if (texts.length === 0) throw new UsageError('classify needs a text: opt classify --model DIR "I loved this film"');
  const model = await loadHeadModel(v, 'classify');
  try {
    const results = await model.classify(texts);
    return texts.length === 1 ? results[0] : results;
  } finally {
    await model.dispose();
  }
}

async function answer(v: Values) {
  if (v.question === undefined || v.context === undefined) throw new UsageError('answer needs --question "…" and --context "…"');
  const maxAnswerLength = intOf(v['max-answer-length'] ?? '15', '--max-answer-length', 1);
  const topK = intOf(v['top-k'] ?? '1', '--top-k', 1);
  const maxSeqLen = v['max-seq-len'] === undefined ? undefined : intOf(v['max-seq-len'], '--max-seq-len', 1);
  const docStride = v['doc-stride'] === undefined ? undefined : intOf(v['doc-stride'], '--doc-stride', 0);
  const model = await loadHeadModel(v, 'answer');
  try {
    return await model.answer(v.question, v.context, { maxAnswerLength, topK, maxSeqLen, docStride });
  } finally {
    await model.dispose();
  }
}

/** Pooled hidden states of each text (and every layer's with --all-layers); one text prints one object. */
async function embed(v: Values, texts: string[]) {
  if (texts.length === 0) throw new UsageError('embed needs a text: opt embed --model DIR "some text"');
  if (!(POOLINGS as readonly string[]).includes(v.pooling))
    throw new UsageError(`--pooling must be one of ${POOLINGS.join(', ')}, got "${v.pooling}"`);
  const allLayers = v['all-layers'];
  const model = await loadHeadModel(v, 'embed', allLayers);
  try {
    const results = (await model.embed(texts, { pooling: v.pooling as Pooling, allLayers })).map((r) => ({ pooling: v.pooling, ...r }));
    return texts.length === 1 ? results[0] : results;
  } finally {
    await model.dispose();
  }
}

/** --model for a head other than generation; a checkpoint without that head is refused before any conversion. */
async function loadHeadModel(v: Values, task: 'classify' | 'answer' | 'embed', allHiddenStates = false): Promise<OptHeadModel> {
  const model = await OptHeadModel.load(await requireModel(v), { ...loadOptionsOf(v), task, allHiddenStates });
  if (model.body.deviceFallback) process.stderr.write(`opt: warning: ${model.body.deviceFallback}\n`);
  return model;
}

/** --model as a local folder, or a Hub id resolved through the Hugging Face cache (downloading what is missing). */
async function requireModel(v: Values): Promise<string> {
  if (!v.model) throw new UsageError('--model is required: a folder with config.json and weights, or a Hub id such as facebook/opt-125m');
  let last = 0;
  return resolveModel(v.model, {
    onProgress: ({ file, received, total }) => {
      const now = Date.now();
      if (now - last < 500 && received !== total) return;
      last = now;
      process.stderr.write(
        `opt: downloading ${file}: ${(received / 2 ** 20).toFixed(1)}${total ? ` / ${(total / 2 ** 20).toFixed(1)}` : ''} MiB\n`,
      );
    },
  });
}

/** Loads --model; a GPU that failed to initialize is a warning on stderr (the model runs on the CPU). */
async function loadModel(v: Values) {
  const model = await loadOptModel(await requireModel(v), loadOptionsOf(v));
  if (model.deviceFallback) process.stderr.write(`opt: warning: ${model.deviceFallback}\n`);
  return model;
}

function loadOptionsOf(v: Values): LoadOptions {
  return { dtype: dtypeOf(v), device: deviceOf(v), threads: threadsOf(v), fused: !v['plain-ops'], cacheDir: v['cache-dir'] };
}

function dtypeOf(v: Values): DtypeChoice {
  if (!(DTYPES as readonly string[]).includes(v.dtype))
    throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got "${v.dtype}"`);
  return v.dtype as DtypeChoice;
}

function deviceOf(v: Values): Device {
  if (!(DEVICES as readonly string[]).includes(v.device))
    throw new UsageError(`--device must be one of ${DEVICES.join(', ')}, got "${v.device}"`);
  return v.device as Device;
}

/** --threads: 0 (one per physical core) up to the machine's logical CPUs (session.ts maxThreads). */
function threadsOf(v: Values): number {
  return checkThreads(intOf(v.threads, '--threads', 0), '--threads');
}

function numberFlag(flag: string, s: string): number {
  const n = Number(s);
  if (s.trim() === '' || Number.isNaN(n)) throw new UsageError(`--${flag} must be a number, got "${s}"`);
  return n;
}

/** The sampling options given as flags (their ranges are checked where generation resolves them, naming the option). */
function samplingFromFlags(v: Record<string, unknown>): SamplingOptions {
  const options: Record<string, unknown> = {};
  for (const key of SAMPLING_KEYS) {
    const { cli, kind }: SamplingOptionSpec = SAMPLING_SPEC[key];
    const raw = cli === null ? undefined : v[cli];
    if (raw === undefined) continue;
    options[key] = kind.type === 'int' || kind.type === 'number' ? numberFlag(cli!, raw as string) : raw;
  }
  return options as SamplingOptions;
}

/** Items joined by spaces and wrapped at `width` columns, continuation lines indented. */
function wrap(items: string[], width: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of items) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join(`\n${indent}`);
}

function intOf(s: string, flag: string, min: number): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be an integer >= ${min}, got "${s}"`);
  return n;
}

function parseIds(s: string, vocab: number): number[] {
  return s.split(',').map((part) => {
    const id = Number(part.trim());
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new UsageError(`--ids: "${part}" is not a token id in [0, ${vocab})`);
    return id;
  });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  err = fileAccessError(err) ?? err; // a cache folder that is a file, no permission, a full disk: one line naming the path
  if (kindOf(err).userFault || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`opt: ${(err as Error).message}\n`);
    process.exit(2);
  }
  process.stderr.write(`opt: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
