// Opens the weights of an OPT model folder in any layout the facebook/opt-* repositories use
// (single or sharded safetensors, single or sharded pytorch_model.bin; `model.decoder.*` or bare
// `decoder.*` keys; tied or untied lm_head), checks every name and shape against the config,
// and reads tensors lazily as float32, one at a time.

import { join } from 'node:path';
import { type OptConfig, hasFinalLayerNorm, hasProjection } from '../config.js';
import { CheckpointError, shown } from '../errors.js';
import { toFloat32 } from './dtype.js';
import { CONFIG_FILE_CAP, checkFileName, locateModelFile, openRegularFile, parseJsonText, readFully, readTextFile } from './modelFiles.js';
import { readSafetensors } from './safetensors.js';
import type { TensorRef } from './tensorRef.js';
import { readTorchBin } from './torchBin.js';

/** Weight files in the order they are preferred (safetensors never runs code; .bin is a pickle). */
const LAYOUTS = [
  { index: 'model.safetensors.index.json', single: 'model.safetensors', read: readSafetensors },
  { index: 'pytorch_model.bin.index.json', single: 'pytorch_model.bin', read: readTorchBin },
] as const;

/** Every parameter of the decoder and its heads, with its PyTorch shape, under canonical names. */
export function expectedParameters(c: OptConfig): Map<string, number[]> {
  const d = c.hidden_size,
    proj = c.word_embed_proj_dim,
    f = c.ffn_dim;
  const p = new Map<string, number[]>();
  const linear = (name: string, out: number, inp: number, bias: boolean) => {
    p.set(`${name}.weight`, [out, inp]);
    if (bias) p.set(`${name}.bias`, [out]);
  };
  const layerNorm = (name: string) => {
    if (!c.layer_norm_elementwise_affine) return;
    p.set(`${name}.weight`, [d]);
    p.set(`${name}.bias`, [d]);
  };
  p.set('model.decoder.embed_tokens.weight', [c.vocab_size, proj]);
  p.set('model.decoder.embed_positions.weight', [c.max_position_embeddings + 2, d]);
  if (hasProjection(c)) {
    linear('model.decoder.project_in', d, proj, false);
    linear('model.decoder.project_out', proj, d, false);
  }
  if (hasFinalLayerNorm(c)) layerNorm('model.decoder.final_layer_norm');
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = `model.decoder.layers.${i}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${l}.self_attn.${m}`, d, d, c.enable_bias);
    layerNorm(`${l}.self_attn_layer_norm`);
    linear(`${l}.fc1`, f, d, c.enable_bias);
    linear(`${l}.fc2`, d, f, c.enable_bias);
    layerNorm(`${l}.final_layer_norm`);
  }
  return p;
}

/** Head parameters by architecture; the decoder's are shared by all. */
export function headParameters(c: OptConfig): Map<string, number[]> {
  const proj = c.word_embed_proj_dim;
  const p = new Map<string, number[]>();
  const arch = c.architectures[0];
  if (arch === 'OPTForCausalLM') p.set('lm_head.weight', [c.vocab_size, proj]);
  if (arch === 'OPTForSequenceClassification') p.set('score.weight', [c.num_labels, proj]);
  if (arch === 'OPTForQuestionAnswering') {
    p.set('qa_outputs.weight', [2, proj]);
    p.set('qa_outputs.bias', [2]);
  }
  return p;
}

/** Maps a checkpoint key to its canonical name: bare `decoder.*` (350m, 6.7b, 13b, 30b) → `model.decoder.*`. */
export function canonicalName(key: string): string {
  return key.startsWith('decoder.') ? `model.${key}` : key;
}

export interface OptWeights {
  /** The files the weights came from, for cache keys and messages. */
  readonly files: string[];
  /** Canonical name → where it lives. Includes `lm_head.weight` (tied: pointing at embed_tokens). */
  readonly tensors: ReadonlyMap<string, TensorRef>;
  /** Whether lm_head shares the embedding matrix (absent from the files, or stored as an identical copy). */
  readonly tiedLmHead: boolean;
  /** Reads a tensor as float32 (one positioned read; nothing is cached). */
  read(name: string): Promise<Float32Array>;
}

export async function openOptWeights(dir: string, config: OptConfig): Promise<OptWeights> {
  const { files, refs } = await findWeightFiles(dir);
  const tensors = new Map<string, TensorRef>();
  for (const ref of refs) {
    const name = canonicalName(ref.name);
    const other = tensors.get(name);
    // Two shards (or `x` and `model.x`) holding one weight: which one wins would be an accident of order.
    if (other)
      throw new CheckpointError(
        ref.file,
        `${shown(ref.name)} is stored twice (also as ${shown(other.name)} in ${other.file})`,
        'the checkpoint is damaged: download it again',
      );
    tensors.set(name, ref);
  }

  const expected = expectedParameters(config);
  for (const [name, shape] of headParameters(config)) expected.set(name, shape);

  // A tied lm_head is usually absent from the file; if stored, it is a copy (or a view of the same storage).
  let tiedLmHead = false;
  const embed = tensors.get('model.decoder.embed_tokens.weight');
  if (expected.has('lm_head.weight')) {
    const head = tensors.get('lm_head.weight');
    if (!head && config.tie_word_embeddings && embed) {
      tensors.set('lm_head.weight', { ...embed, name: 'lm_head.weight' });
      tiedLmHead = true;
    } else if (head && embed && config.tie_word_embeddings) {
      tiedLmHead = head.file === embed.file && head.offset === embed.offset;
    }
  }

  const missing = [...expected.keys()].filter((n) => !tensors.has(n));
  if (missing.length > 0) {
    const hint =
      missing.includes('lm_head.weight') && !config.tie_word_embeddings
        ? 'config.json sets tie_word_embeddings=false, so lm_head.weight must be in the checkpoint'
        : 'the checkpoint does not match config.json: check that both come from the same model';
    throw new CheckpointError(dir, `${missing.length} weight(s) missing, e.g. ${missing.slice(0, 3).join(', ')}`, hint);
  }
  for (const [name, shape] of expected) {
    const ref = tensors.get(name)!;
    if (ref.shape.length !== shape.length || ref.shape.some((v, i) => v !== shape[i])) {
      throw new CheckpointError(
        ref.file,
        `${ref.name} has shape [${ref.shape}] but config.json implies [${shape}]`,
        'the checkpoint does not match config.json',
      );
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(ref.dtype)) {
      throw new CheckpointError(ref.file, `${ref.name} has dtype ${ref.dtype}, which cannot hold weights`, 'expected F32, F16 or BF16');
    }
  }

  return {
    files,
    tensors,
    tiedLmHead,
    read: (name) => readTensor(tensors, name),
  };
}

async function readTensor(tensors: ReadonlyMap<string, TensorRef>, name: string): Promise<Float32Array> {
  const ref = tensors.get(name);
  if (!ref) throw new Error(`internal: no tensor ${name}`);
  // Read into a fresh ArrayBuffer so float32 data is used in place, without a second copy.
  const bytes = new Uint8Array(new ArrayBuffer(ref.length));
  const { fh } = await openRegularFile(ref.file);
  try {
    const bytesRead = await readFully(fh, bytes, ref.length, ref.offset);
    if (bytesRead !== ref.length) {
      throw new CheckpointError(
        ref.file,
        `${ref.name}: read ${bytesRead} of ${ref.length} bytes`,
        'the file is truncated: download it again',
      );
    }
  } finally {
    await fh.close();
  }
  return ref.dtype === 'F32' ? new Float32Array(bytes.buffer) : toFloat32(bytes, ref.dtype, ref.file);
}

async function findWeightFiles(dir: string): Promise<{ files: string[]; refs: TensorRef[] }> {
  for (const layout of LAYOUTS) {
    const indexFile = await locateModelFile(dir, layout.index);
    if (indexFile !== undefined) {
      const files: string[] = [];
      for (const shard of await readShardIndex(indexFile)) {
        const file = await locateModelFile(dir, shard);
        if (file === undefined)
          throw new CheckpointError(
            join(dir, ...shard.split('/')),
            `shard listed in ${layout.index} is missing`,
            'download every shard of the checkpoint',
          );
        files.push(file);
      }
      // One shard at a time: an index may list many, and each read holds a file open.
      const refs: TensorRef[] = [];
      for (const f of files) for (const ref of await layout.read(f)) refs.push(ref); // no spread: a header may list a million tensors
      return { files, refs };
    }
    const single = await locateModelFile(dir, layout.single);
    if (single !== undefined) return { files: [single], refs: await layout.read(single) };
  }
  throw new CheckpointError(
    dir,
    'no weights found',
    'expected model.safetensors, pytorch_model.bin, or their sharded *.index.json form, as published on huggingface.co/facebook/opt-*',
  );
}

/** The shard file names of an index, each checked to be a plain relative path; sorted, without repeats. */
async function readShardIndex(file: string): Promise<string[]> {
  const index = parseJsonText(await readTextFile(file, CONFIG_FILE_CAP), file) as { weight_map?: unknown } | null;
  const map = typeof index === 'object' && index !== null && !Array.isArray(index) ? index.weight_map : undefined;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new CheckpointError(file, 'has no weight_map object', 'a shard index maps each weight name to its shard file');
  }
  const shards = [...new Set(Object.values(map))];
  if (shards.length === 0)
    throw new CheckpointError(file, 'has an empty weight_map', 'a shard index maps each weight name to its shard file');
  return shards.map((s) => checkFileName(s, file, 'weight_map shard')).sort();
}
