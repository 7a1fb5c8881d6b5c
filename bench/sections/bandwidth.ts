// Section 3, the physical limit: streaming-read bandwidth (bench/membw.c, compiled now with
// `cc -O3 -march=native`) with 1 and 2 threads over a buffer far larger than the last-level cache,
// and over a buffer the size of what one decode step reads; plus the bytes a decode step reads,
// summed from the converted model's initializers. Runs in a child of bench/run.ts.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import type { GraphDtype } from '../../runtime/src/onnx/optGraph.js';
import { CHECKPOINT_DIR, DECODER_SHAPE, ONNX_CACHE_DIR, OUT_DIR, ROOT, median } from '../lib/util.js';

const { onnx } = onnxProto;

export interface BandwidthRun {
  bufferBytes: number;
  threads: number;
  gbps: number[];
  medianGBps: number;
  bestGBps: number;
}

export interface DecodeBytes {
  dtype: GraphDtype;
  /** Bytes of initializers one decode step (batch 1, one token) reads. */
  totalBytes: number;
  /** The same, split by role. */
  parts: Record<string, number>;
  /** All initializer bytes (what the model holds). */
  initializerBytes: number;
  /** Tables the model holds of which a step reads one row, by name: bytes held. */
  readByRow: Record<string, number>;
}

export interface BandwidthResult {
  compiler: string;
  llcBytes: number;
  large: BandwidthRun[];
  workingSet: BandwidthRun[];
  decodeBytes: DecodeBytes[];
}

export async function measureBandwidth(p: { quick?: boolean }): Promise<BandwidthResult> {
  const exe = join(OUT_DIR, 'membw');
  mkdirSync(OUT_DIR, { recursive: true });
  execFileSync('cc', ['-O3', '-march=native', '-pthread', join(ROOT, 'bench', 'membw.c'), '-o', exe]);
  const compiler = execFileSync('cc', ['--version'], { encoding: 'utf8' }).split('\n')[0]!;
  const llcBytes = lastLevelCacheBytes();

  const decodeBytes: DecodeBytes[] = [];
  for (const dtype of ['int8', 'int4', 'fp32'] as const) {
    const { modelPath } = await convertCheckpoint(CHECKPOINT_DIR, { dtype, cacheDir: ONNX_CACHE_DIR });
    decodeBytes.push({ dtype, ...bytesPerDecodeStep(modelPath) });
  }

  const run = (bytes: number, threads: number, reps: number, passes: number): BandwidthRun => {
    const out = JSON.parse(execFileSync(exe, [String(bytes), String(threads), String(reps), String(passes)], { encoding: 'utf8' })) as {
      gbps: number[];
    };
    return { bufferBytes: bytes, threads, gbps: out.gbps, medianGBps: median(out.gbps), bestGBps: Math.max(...out.gbps) };
  };
  // Far past the last-level cache (this VM reports a large one), within a quarter of RAM.
  const large = Math.min(Math.max(4 * llcBytes, 2 ** 30), totalmem() / 4, 4 * 2 ** 30);
  const reps = p.quick ? 3 : 5;
  const int8 = decodeBytes[0]!.totalBytes;
  return {
    compiler,
    llcBytes,
    large: [1, 2].map((t) => run(large, t, reps, 1)),
    // The weights one int8 decode step reads, read again and again: they may stay in the LLC.
    workingSet: [1, 2].map((t) => run(int8, t, reps, Math.max(1, Math.round((4 * 2 ** 30) / int8)))),
    decodeBytes,
  };
}

function lastLevelCacheBytes(): number {
  const base = '/sys/devices/system/cpu/cpu0/cache';
  let best = 0;
  try {
    for (const idx of readdirSync(base).filter((d) => d.startsWith('index'))) {
      const size = readFileSync(join(base, idx, 'size'), 'utf8').trim();
      const m = /^(\d+)([KMG]?)/.exec(size);
      if (m) best = Math.max(best, Number(m[1]) * ({ '': 1, K: 1024, M: 2 ** 20, G: 2 ** 30 } as Record<string, number>)[m[2]!]!);
    }
  } catch {
    // not Linux
  }
  return best || 32 * 2 ** 20;
}

/**
 * Sums the initializers a batch-1, one-token decode step reads: all of a weight matrix, its scales
 * and biases, but only one row of a table read by index (Gather, GatherBlockQuantized: token and
 * position embeddings). Also lists what the model holds but a step reads only a row of.
 */
export function bytesPerDecodeStep(modelPath: string, vocab = DECODER_SHAPE.vocabSize): Omit<DecodeBytes, 'dtype'> {
  const model = onnx.ModelProto.decode(readFileSync(modelPath));
  const graph = model.graph!;
  const sizes = new Map<string, { bytes: number; rows: number }>();
  for (const t of graph.initializer ?? []) {
    const ext = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
    const bytes = ext.length !== undefined ? Number(ext.length) : (t.rawData?.length ?? 0) || elementBytes(t);
    sizes.set(t.name!, { bytes, rows: Number(t.dims?.[0] ?? 1) });
  }
  const parts: Record<string, number> = {};
  const byRow: Record<string, number> = {};
  const counted = new Set<string>();
  const add = (role: string, n: number) => (parts[role] = (parts[role] ?? 0) + n);
  for (const node of graph.node ?? []) {
    const op = node.opType!;
    const nAttr = Number(String(node.attribute?.find((a) => a.name === 'N')?.i ?? 0)); // int64 attributes decode as Long
    for (const [i, input] of (node.input ?? []).entries()) {
      const s = sizes.get(input);
      if (!s || counted.has(input)) continue;
      counted.add(input);
      const rowRead = (op === 'Gather' && i === 0) || (op === 'GatherBlockQuantized' && i !== 1);
      if (rowRead) {
        const table = input.includes('embed_positions') ? 'position embedding' : 'token embedding';
        add(`${table} (1 row)`, s.bytes / s.rows);
        byRow[`${table} (${input})`] = s.bytes;
      } else if (
        (op === 'MatMulNBits' && nAttr === vocab) ||
        ((op === 'Gemm' || op === 'MatMul') && s.rows === vocab) ||
        input.startsWith('lm_head')
      )
        add('lm_head', s.bytes);
      else if (/_Q\d+G\d+$/.test(input) || ((op === 'Gemm' || op === 'MatMul') && input.endsWith('.weight'))) add('layer weights', s.bytes);
      else if (input.endsWith('weight_scales')) add('layer weight scales', s.bytes);
      else add('biases, norms, constants', s.bytes);
    }
  }
  // A tied fp32 lm_head is the embedding table itself: read whole by the Gemm as well as a row by the Gather.
  const shared = (graph.node ?? []).find(
    (n) => n.opType === 'Gemm' && (n.input ?? []).some((x) => byRow[`token embedding (${x})`] !== undefined),
  );
  if (shared) {
    const table = (shared.input ?? []).find((x) => byRow[`token embedding (${x})`] !== undefined)!;
    add('lm_head (the tied embedding table)', sizes.get(table)!.bytes);
    delete byRow[`token embedding (${table})`];
  }
  const totalBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  return { totalBytes, parts, initializerBytes: [...sizes.values()].reduce((n, s) => n + s.bytes, 0), readByRow: byRow };
}

function elementBytes(t: onnxProto.onnx.ITensorProto): number {
  return (t.floatData?.length ?? 0) * 4 + (t.int64Data?.length ?? 0) * 8 + (t.int32Data?.length ?? 0) * 4;
}
