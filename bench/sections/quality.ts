// Quality per precision: held-out perplexity of the trained fixtures (test/fixtures/trained) at
// fp32, fp16, int8 and int4, by `opt perplexity`'s method (runtime/src/perplexity.ts). The text is
// each model's own held-out list (heldout.txt: files never trained on), the files that are on this
// machine with the same SHA-256, sorted by path and taken up to a byte budget per kind (code,
// prose), each file scored on its own and summed per kind. Random weights cannot show what a
// precision costs; these can.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadOptModel } from '../../runtime/src/model.js';
import type { GraphDtype } from '../../runtime/src/onnx/optGraph.js';
import { type PerplexityResult, perplexityOfTexts } from '../../runtime/src/perplexity.js';
import { ONNX_CACHE_DIR, ROOT, childScript } from '../lib/util.js';

/** The committed trained fixtures: the target, and the draft that proposes tokens for it. */
export const TRAINED_MODELS = ['opt-target', 'opt-draft'] as const;
export const QUALITY_DTYPES: GraphDtype[] = ['fp32', 'fp16', 'int8', 'int4'];
const TRAINED_DIR = join(ROOT, 'test', 'fixtures', 'trained');

export interface QualityParams {
  model: (typeof TRAINED_MODELS)[number];
  dtype: GraphDtype;
  /** Bytes of held-out text per kind. */
  budgetBytes: number;
  maxLength: number;
  stride: number;
}

export interface QualityResult extends QualityParams {
  parameters: number;
  kinds: Record<string, PerplexityResult & { files: number; bytes: number }>;
  /** Held-out files listed but absent here (or changed): not scored. */
  missing: number;
  seconds: number;
}

/** The held-out files this machine has, as listed beside the model, up to the budget per kind. */
export function heldOutTexts(
  model: string,
  budgetBytes: number,
): { kind: string; file: string; text: string; bytes: number }[] & { missing?: number } {
  const lines = readFileSync(join(TRAINED_DIR, model, 'heldout.txt'), 'utf8')
    .split('\n')
    .filter(Boolean);
  const taken: { kind: string; file: string; text: string; bytes: number }[] & { missing?: number } = [];
  const used: Record<string, number> = {};
  let missing = 0;
  for (const line of lines.sort((a, b) => (a.split('\t')[3]! < b.split('\t')[3]! ? -1 : 1))) {
    const [kind, bytes, sha, file] = line.split('\t') as [string, string, string, string];
    if ((used[kind] ?? 0) >= budgetBytes) continue;
    if (!existsSync(file)) {
      missing++;
      continue;
    }
    const buffer = readFileSync(file);
    if (createHash('sha256').update(buffer).digest('hex') !== sha) {
      missing++;
      continue;
    }
    taken.push({ kind, file, text: buffer.toString('utf8'), bytes: Number(bytes) });
    used[kind] = (used[kind] ?? 0) + Number(bytes);
  }
  taken.missing = missing;
  return taken;
}

export async function measureQuality(p: QualityParams): Promise<QualityResult> {
  const started = performance.now();
  const texts = heldOutTexts(p.model, p.budgetBytes);
  const model = await loadOptModel(join(TRAINED_DIR, p.model), { dtype: p.dtype, device: 'cpu', threads: 2, cacheDir: ONNX_CACHE_DIR });
  try {
    const kinds: QualityResult['kinds'] = {};
    for (const kind of [...new Set(texts.map((t) => t.kind))].sort()) {
      const mine = texts.filter((t) => t.kind === kind);
      const { total } = await perplexityOfTexts(model, mine, { maxLength: p.maxLength, stride: p.stride });
      kinds[kind] = { ...total, files: mine.length, bytes: mine.reduce((n, t) => n + t.bytes, 0) };
    }
    const log = JSON.parse(readFileSync(join(TRAINED_DIR, p.model, 'training_log.json'), 'utf8')) as { parameters: number };
    return { ...p, parameters: log.parameters, kinds, missing: texts.missing ?? 0, seconds: (performance.now() - started) / 1000 };
  } finally {
    await model.dispose();
  }
}

export const QUALITY_SCRIPT = await childScript(import.meta.url, { quality: (p: QualityParams) => measureQuality(p) });
