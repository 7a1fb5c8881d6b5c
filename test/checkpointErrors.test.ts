// Malformed checkpoints must fail with an error that names the file and the problem, before
// anything reaches onnxruntime.

import assert from 'node:assert/strict';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { convertCheckpoint } from '../runtime/src/convert.js';
import { CheckpointError } from '../runtime/src/errors.js';
import { writeOptCheckpoint } from './fixtures/optCheckpoint.js';
import { writeMaliciousTorchBin } from './fixtures/torchBinWriter.js';
import { tempDir } from './helpers/decoderHarness.js';

const tmp = tempDir('errors');
after(() => tmp.remove());
let n = 0;
const fixture = (options: Parameters<typeof writeOptCheckpoint>[1] = {}) => writeOptCheckpoint(join(tmp.path, `m${n++}`), { tokenizer: false, ...options });
const convert = (dir: string) => convertCheckpoint(dir, { dtype: 'fp32', cacheDir: join(tmp.path, 'cache') });

/** Asserts a CheckpointError whose message contains each fragment. */
async function rejectsWith(p: Promise<unknown>, ...fragments: (string | RegExp)[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CheckpointError, `expected CheckpointError, got ${String(err)}`);
    for (const f of fragments) {
      if (typeof f === 'string') assert.ok(err.message.includes(f), `"${err.message}" lacks "${f}"`);
      else assert.match(err.message, f);
    }
    return true;
  });
}

test('missing config.json', async () => {
  const f = await fixture();
  await rm(join(f.dir, 'config.json'));
  await rejectsWith(convert(f.dir), 'config.json', 'missing');
});

test('config.json of another architecture', async () => {
  const f = await fixture();
  const file = join(f.dir, 'config.json');
  const cfg = JSON.parse(await readFile(file, 'utf8'));
  await writeFile(file, JSON.stringify({ ...cfg, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }));
  await rejectsWith(convert(f.dir), 'model_type is "gpt2"');
  await writeFile(file, JSON.stringify({ ...cfg, architectures: ['OPTForTokenClassification'] }));
  await rejectsWith(convert(f.dir), 'unsupported architecture "OPTForTokenClassification"');
});

test('no weight files at all', async () => {
  const f = await fixture();
  await rm(join(f.dir, 'model.safetensors'));
  await rejectsWith(convert(f.dir), 'no weights found', 'model.safetensors');
});

test('truncated safetensors names the file and says to download again', async () => {
  const f = await fixture();
  const file = join(f.dir, 'model.safetensors');
  const { size } = await import('node:fs/promises').then((fs) => fs.stat(file));
  await truncate(file, Math.floor(size / 2));
  await rejectsWith(convert(f.dir), 'model.safetensors', 'truncated');
});

test('safetensors header cut short', async () => {
  const f = await fixture();
  await truncate(join(f.dir, 'model.safetensors'), 5);
  await rejectsWith(convert(f.dir), 'too short');
});

test('shape mismatch between config.json and the weights', async () => {
  const f = await fixture();
  const file = join(f.dir, 'config.json');
  const cfg = JSON.parse(await readFile(file, 'utf8'));
  await writeFile(file, JSON.stringify({ ...cfg, ffn_dim: cfg.ffn_dim * 2 }));
  await rejectsWith(convert(f.dir), /fc1\.weight has shape \[64,32\] but config\.json implies \[128,32\]/);
});

test('a weight missing from the checkpoint', async () => {
  const f = await fixture();
  const file = join(f.dir, 'config.json');
  const cfg = JSON.parse(await readFile(file, 'utf8'));
  await writeFile(file, JSON.stringify({ ...cfg, num_hidden_layers: cfg.num_hidden_layers + 1 }));
  await rejectsWith(convert(f.dir), 'missing', 'layers.2');
});

test('untied config without lm_head.weight in the file', async () => {
  const f = await fixture({ lmHead: 'absent' });
  const file = join(f.dir, 'config.json');
  const cfg = JSON.parse(await readFile(file, 'utf8'));
  await writeFile(file, JSON.stringify({ ...cfg, tie_word_embeddings: false }));
  await rejectsWith(convert(f.dir), 'lm_head.weight', 'tie_word_embeddings=false');
});

test('a shard listed in the index is missing', async () => {
  const f = await fixture({ format: 'safetensors-sharded' });
  await rm(join(f.dir, 'model-00002-of-00002.safetensors'));
  await rejectsWith(convert(f.dir), 'model-00002-of-00002.safetensors', 'missing');
});

test('unknown tensor dtype in safetensors', async () => {
  const f = await fixture();
  const file = join(f.dir, 'model.safetensors');
  const bytes = await readFile(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, 8 + headerLen).toString('utf8').replace('"dtype":"F32"', '"dtype":"F8Q"');
  await writeFile(file, Buffer.concat([bytes.subarray(0, 8), Buffer.from(header), bytes.subarray(8 + headerLen)]));
  await rejectsWith(convert(f.dir), 'unknown dtype "F8Q"');
});

test('a pickle that would run code is refused, naming the global', async () => {
  const f = await fixture();
  await rm(join(f.dir, 'model.safetensors'));
  await writeMaliciousTorchBin(join(f.dir, 'pytorch_model.bin'), 'os.system');
  await rejectsWith(convert(f.dir), 'pytorch_model.bin', 'os.system');
});

test('truncated pytorch_model.bin', async () => {
  const f = await fixture({ format: 'bin' });
  const file = join(f.dir, 'pytorch_model.bin');
  const { size } = await import('node:fs/promises').then((fs) => fs.stat(file));
  await truncate(file, Math.floor(size / 2));
  await rejectsWith(convert(f.dir), 'pytorch_model.bin');
});
