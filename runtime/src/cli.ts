#!/usr/bin/env node
// The `opt` command line: inspect and convert OPT checkpoints with the same code the editor
// uses. Every command prints JSON on stdout; errors go to stderr with exit code 2 for bad input.

import { parseArgs } from 'node:util';
import { CheckpointError, UsageError } from './errors.js';
import { DTYPES, type DtypeChoice, loadOptModel, resolveDtype } from './model.js';
import { convertCheckpoint } from './convert.js';
import { DEVICES, type Device } from './session.js';
import { OptTokenizer } from './tokenizer/optTokenizer.js';
import { topK } from './topk.js';

const USAGE = `usage: opt <command> [options]

commands:
  logits    --model DIR (--ids 2,133,… | --text "…") [--top-k N]   last-position logits and top-k, as JSON
  tokenize  --model DIR --text "…" [--no-special]                  token ids and tokens, as JSON
  convert   --model DIR [--force]                                  build (or find) the cached ONNX model

common options:
  --dtype auto|fp32|fp16|int8|int4   weight precision (auto: int8 on cpu, fp16 on gpu)
  --device cpu|webgpu|cuda           execution provider (default cpu)
  --threads N                        onnxruntime intra-op threads (default: one per core)
  --plain-ops                        standard ONNX operators only (no onnxruntime contrib ops)
  --cache-dir DIR                    where converted models are kept (default ~/.cache/opt-complete)
`;

const OPTIONS = {
  model: { type: 'string' },
  ids: { type: 'string' },
  text: { type: 'string' },
  'top-k': { type: 'string', default: '10' },
  'no-special': { type: 'boolean', default: false },
  dtype: { type: 'string', default: 'auto' },
  device: { type: 'string', default: 'cpu' },
  threads: { type: 'string', default: '0' },
  'plain-ops': { type: 'boolean', default: false },
  'cache-dir': { type: 'string' },
  force: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return;
  }
  const commands: Record<string, (v: Values) => Promise<unknown>> = { logits, tokenize, convert };
  const run = commands[command];
  if (!run) throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  const result = await run(values);
  process.stdout.write(`${JSON.stringify(result)}\n`); // one line: pipe through jq to read it
}

async function logits(v: Values) {
  const model = await loadOptModel(requireModel(v), {
    dtype: dtypeOf(v),
    device: deviceOf(v),
    threads: intOf(v.threads, '--threads', 0),
    fused: !v['plain-ops'],
    cacheDir: v['cache-dir'],
  });
  try {
    const ids = v.ids !== undefined ? parseIds(v.ids, model.config.vocab_size) : v.text !== undefined ? await model.tokenizer.encode(v.text) : undefined;
    if (!ids) throw new UsageError('logits needs --ids 2,133,… or --text "…"');
    if (ids.length === 0) throw new UsageError('logits needs at least one token');
    const out = await model.decoder.forward({
      inputIds: BigInt64Array.from(ids, BigInt),
      batch: 1,
      attentionMask: new BigInt64Array(ids.length).fill(1n),
      logitsToKeep: 1,
    });
    const k = intOf(v['top-k'], '--top-k', 0);
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

async function tokenize(v: Values) {
  if (v.text === undefined) throw new UsageError('tokenize needs --text "…"');
  const tokenizer = await OptTokenizer.fromDir(requireModel(v));
  const ids = await tokenizer.encode(v.text, { addSpecialTokens: !v['no-special'] });
  return { ids, tokens: ids.map((id) => tokenizer.idToToken(id) ?? null) };
}

async function convert(v: Values) {
  const dtype = resolveDtype(dtypeOf(v), deviceOf(v));
  const r = await convertCheckpoint(requireModel(v), { dtype, fused: !v['plain-ops'], cacheDir: v['cache-dir'], force: v.force });
  return { model_path: r.modelPath, dtype, converted: r.converted, seconds: Number(r.seconds.toFixed(3)) };
}

function requireModel(v: Values): string {
  if (!v.model) throw new UsageError('--model DIR is required (a folder with config.json and weights)');
  return v.model;
}

function dtypeOf(v: Values): DtypeChoice {
  if (!(DTYPES as readonly string[]).includes(v.dtype)) throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got "${v.dtype}"`);
  return v.dtype as DtypeChoice;
}

function deviceOf(v: Values): Device {
  if (!(DEVICES as readonly string[]).includes(v.device)) throw new UsageError(`--device must be one of ${DEVICES.join(', ')}, got "${v.device}"`);
  return v.device as Device;
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
  if (err instanceof UsageError || err instanceof CheckpointError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`opt: ${(err as Error).message}\n`);
    process.exit(2);
  }
  process.stderr.write(`opt: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
