// Converts a Hugging Face OPT checkpoint into the runtime's ONNX decoder and caches the result
// on disk, keyed by the checkpoint's content and the graph options, so only the first load of a
// model pays for conversion. Weights stream through one tensor at a time.

import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { type OptConfig, readOptConfig } from './config.js';
import { type OptWeights, openOptWeights } from './checkpoint/optWeights.js';
import { ExternalDataFile, GraphBuilder } from './onnx/graphBuilder.js';
import { type OptGraphOptions, DEFAULT_GRAPH_OPTIONS, OPSETS, buildOptGraph, kvCacheLayout } from './onnx/optGraph.js';

/** Bump when the graph builder changes what it emits, so stale cached models are rebuilt. */
const GRAPH_FORMAT_VERSION = 5;
const MODEL_FILE = 'model.onnx';
const SAMPLE_BYTES = 1 << 20;

export function defaultCacheDir(): string {
  if (process.env.OPT_COMPLETE_CACHE) return process.env.OPT_COMPLETE_CACHE;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'opt-complete');
}

export interface ConvertResult {
  /** Path of the ONNX model (its weights in `model.onnx.data` beside it). */
  modelPath: string;
  /** Whether this call built it (false: it came from the cache). */
  converted: boolean;
  /** Seconds spent converting (0 when cached). */
  seconds: number;
}

export interface ConvertOptions extends Partial<OptGraphOptions> {
  cacheDir?: string;
  /** Rebuild even if a cached model exists. */
  force?: boolean;
}

export async function convertCheckpoint(dir: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  const graphOptions: OptGraphOptions = { ...DEFAULT_GRAPH_OPTIONS, ...pickGraphOptions(options) };
  const config = await readOptConfig(dir);
  const weights = await openOptWeights(dir, config);
  const key = await cacheKey(dir, weights.files, graphOptions);
  const target = join(options.cacheDir ?? defaultCacheDir(), 'onnx', key);
  const modelPath = join(target, MODEL_FILE);
  if (!options.force && (await isComplete(target))) return { modelPath, converted: false, seconds: 0 };

  const started = performance.now();
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  try {
    await writeOnnxModel(dir, join(tmp, MODEL_FILE), graphOptions, { config, weights });
    await writeFile(join(tmp, 'meta.json'), JSON.stringify({ source: dir, files: weights.files.map((f) => basename(f)), options: graphOptions, formatVersion: GRAPH_FORMAT_VERSION }, null, 2));
    await rm(target, { recursive: true, force: true });
    await rename(tmp, target); // atomic publish: a crash mid-conversion never leaves a half-written model in the cache
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return { modelPath, converted: true, seconds: (performance.now() - started) / 1000 };
}

/**
 * Writes the decoder of the checkpoint in `dir` to `modelFile`, its weights streamed into
 * `<modelFile>.data` (or `dataFile`), e.g. `onnx/model.onnx` + `onnx/model.onnx_data` for
 * transformers.js. Not cached; `convertCheckpoint` is the cached entry point.
 */
export async function writeOnnxModel(
  dir: string,
  modelFile: string,
  graphOptions: OptGraphOptions,
  opened?: { config: OptConfig; weights: OptWeights },
  dataFile = `${modelFile}.data`,
): Promise<void> {
  const config = opened?.config ?? (await readOptConfig(dir));
  const weights = opened?.weights ?? (await openOptWeights(dir, config));
  const data = await ExternalDataFile.create(dataFile);
  const g = new GraphBuilder(data);
  try {
    await buildOptGraph(g, config, weights, graphOptions);
  } finally {
    await data.close();
  }
  await writeFile(modelFile, g.encode('opt_decoder', OPSETS, metadata(dir, config, graphOptions)));
}

function pickGraphOptions(o: ConvertOptions): Partial<OptGraphOptions> {
  const { cacheDir: _c, force: _f, ...rest } = o;
  return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
}

function metadata(dir: string, c: OptConfig, o: OptGraphOptions): Record<string, string> {
  return { source: basename(dir), dtype: o.dtype, fused: String(o.fused), kv_cache: kvCacheLayout(o), output: o.output ?? 'logits', architecture: c.architectures[0]! };
}

async function isComplete(target: string): Promise<boolean> {
  return stat(join(target, 'meta.json')).then(() => true, () => false);
}

/**
 * sha256 over config.json, the graph options and a content fingerprint of each weight file
 * (its size plus 1 MB sampled at the start, middle and end: the safetensors header and
 * neighbouring tensors change with any re-save, and hashing 26 GB on every load would not do).
 */
async function cacheKey(dir: string, files: string[], o: OptGraphOptions): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: GRAPH_FORMAT_VERSION, o }));
  h.update(await readFile(join(dir, 'config.json')));
  for (const file of files) {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      h.update(`${basename(file)}:${size}`);
      const buf = Buffer.alloc(Math.min(SAMPLE_BYTES, size));
      for (const at of [0, Math.max(0, Math.floor(size / 2) - buf.length / 2), Math.max(0, size - buf.length)]) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, at);
        h.update(buf.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
  }
  return h.digest('hex').slice(0, 32);
}
