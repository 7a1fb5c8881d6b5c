// Malformed checkpoints must fail with an error that names the file and the problem, before
// anything reaches onnxruntime.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rename, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { openOptWeights } from '../../runtime/src/checkpoint/optWeights.js';
import { readSafetensors } from '../../runtime/src/checkpoint/safetensors.js';
import { readTorchBin } from '../../runtime/src/checkpoint/torchBin.js';
import { readGenerationConfig, readOptConfig } from '../../runtime/src/config.js';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import { CheckpointError, FileAccessError, fileAccessError } from '../../runtime/src/errors.js';
import { readTokenizerFiles } from '../../runtime/src/tokenizer/hfTokenizerFiles.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { joinSafetensors, splitSafetensors, writeSafetensors } from '../fixtures/safetensorsWriter.js';
import { Pickler, nestedParameterPickle, writeMaliciousTorchBin, writeTorchBinRecords } from '../fixtures/torchBinWriter.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('errors');
after(() => tmp.remove());
let n = 0;
const fixture = (options: Parameters<typeof writeOptCheckpoint>[1] = {}) =>
  writeOptCheckpoint(join(tmp.path, `m${n++}`), { tokenizer: false, ...options });
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
  const header = bytes
    .subarray(8, 8 + headerLen)
    .toString('utf8')
    .replace('"dtype":"F32"', '"dtype":"F8Q"');
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

// ---- the security/robustness review of checkpoint loading: each finding, pinned ----

const openWeights = async (dir: string) => openOptWeights(dir, await readOptConfig(dir));
const f32 = (n: number) => new Uint8Array(new Float32Array(n).buffer);

/** Rewrites model.safetensors' header text with `edit` (data kept as is). */
async function editHeader(file: string, edit: (header: Record<string, object>) => unknown): Promise<void> {
  const { headerText, data } = splitSafetensors(await readFile(file));
  const edited = edit(JSON.parse(headerText) as Record<string, object>);
  await writeFile(file, joinSafetensors(typeof edited === 'string' ? edited : JSON.stringify(edited), data));
}

describe('finding 13: every malformed file is a CheckpointError naming it, never a crash or a hang', () => {
  test('a safetensors header that is JSON null, a list or a number', async () => {
    const file = join(tmp.path, 'null.safetensors');
    for (const header of ['null', '[1,2]', '42', '"x"']) {
      await writeFile(file, joinSafetensors(header, new Uint8Array()));
      await rejectsWith(readSafetensors(file), file, 'header is not a JSON object');
    }
  });

  test('model.safetensors that is a folder', async () => {
    const f = await fixture();
    const file = join(f.dir, 'model.safetensors');
    await rm(file);
    await mkdir(file);
    await rejectsWith(openWeights(f.dir), file, 'is a folder');
  });

  test('model.safetensors that is a FIFO fails at once instead of waiting for a writer', { timeout: 10_000 }, async (t) => {
    const f = await fixture();
    const file = join(f.dir, 'model.safetensors');
    await rm(file);
    if (spawnSync('mkfifo', [file]).status !== 0) return t.skip('mkfifo is not available');
    await rejectsWith(openWeights(f.dir), file, 'not a regular file');
    // The config files go through the same gate.
    await rm(file);
    await rename(join(f.dir, 'config.json'), join(f.dir, 'config.real.json'));
    spawnSync('mkfifo', [join(f.dir, 'config.json')]);
    await rejectsWith(readOptConfig(f.dir), 'config.json', 'not a regular file');
  });

  test('overlapping, gapped or overhanging data_offsets (the format wants tensors to tile the data)', async () => {
    const file = join(tmp.path, 'tiling.safetensors');
    const tensors = [
      { name: 'a', dtype: 'F32' as const, shape: [2], data: f32(2) },
      { name: 'b', dtype: 'F32' as const, shape: [2], data: f32(2) },
    ];
    await writeSafetensors(file, tensors);
    assert.equal((await readSafetensors(file)).length, 2);
    await editHeader(file, (h) => ({ ...h, b: { ...h.b, data_offsets: [4, 12] } }));
    await rejectsWith(readSafetensors(file), file, 'overlap');
    await writeSafetensors(file, tensors);
    await editHeader(file, (h) => ({ ...h, a: { ...h.a, shape: [1], data_offsets: [0, 4] } }));
    await rejectsWith(readSafetensors(file), file, 'belong to no tensor');
    await writeSafetensors(file, tensors);
    await editHeader(file, (h) => ({ ...h, b: { ...h.b, shape: [1], data_offsets: [8, 12] } }));
    await rejectsWith(readSafetensors(file), file, 'file goes on');
  });

  test('a duplicate key, a prototype-named dtype, bad __metadata__, an overflowing shape', async () => {
    const file = join(tmp.path, 'keys.safetensors');
    await writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [2], data: f32(2) }]);
    await editHeader(
      file,
      () => '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}',
    );
    await rejectsWith(readSafetensors(file), file, '"a" twice');
    for (const [entry, fragment] of [
      [{ dtype: 'toString', shape: [2], data_offsets: [0, 8] }, 'unknown dtype "toString"'],
      [{ dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] }, 'too large'],
      [null, 'not by an object'],
    ] as const) {
      await writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [2], data: f32(2) }]);
      await editHeader(file, () => ({ a: entry }));
      await rejectsWith(readSafetensors(file), file, fragment);
    }
    await writeSafetensors(file, [{ name: 'a', dtype: 'F32', shape: [2], data: f32(2) }], { format: 'pt' });
    await editHeader(file, (h) => ({ ...h, __metadata__: { format: 1 } }));
    await rejectsWith(readSafetensors(file), file, '__metadata__');
  });

  test('100,000 nested _rebuild_parameter calls in data.pkl', async () => {
    const file = join(tmp.path, 'nested.bin');
    await writeTorchBinRecords(file, [
      { name: 'data.pkl', data: nestedParameterPickle('w', 100_000, 2) },
      { name: 'data/0', data: f32(2) },
    ]);
    await rejectsWith(readTorchBin(file), file, 'wrapped in parameters');
  });

  test('dicts nested 100,000 deep in data.pkl', async () => {
    const file = join(tmp.path, 'deep.bin');
    const p = new Pickler();
    p.proto();
    for (let i = 0; i < 100_000; i++) {
      p.op(0x7d);
      p.str('k');
    }
    p.op(0x7d);
    for (let i = 0; i < 100_000; i++) p.op(0x73);
    p.stop();
    await writeTorchBinRecords(file, [{ name: 'data.pkl', data: p.bytes() }]);
    await rejectsWith(readTorchBin(file), file, 'nests dicts');
  });

  test('a pickle of millions of one-byte allocations stops at the value budget', async () => {
    const file = join(tmp.path, 'bomb.bin');
    await writeTorchBinRecords(file, [
      { name: 'data.pkl', data: Uint8Array.from([0x80, 0x02, ...new Array<number>(5_000_000).fill(0x7d), 0x2e]) },
    ]);
    await rejectsWith(readTorchBin(file), file, 'more than 4000000 values');
  });

  test('an oversized byteorder record', async () => {
    const file = join(tmp.path, 'order.bin');
    const p = new Pickler();
    p.proto();
    p.emptyDict();
    p.stop();
    await writeTorchBinRecords(file, [{ name: 'data.pkl', data: p.bytes() }], 'archive', { byteorder: new Uint8Array(1 << 20) });
    await rejectsWith(readTorchBin(file), file, 'byteorder');
  });

  test('a cache folder that is a file: ENOTDIR becomes a FileAccessError naming the path', async () => {
    const cache = join(tmp.path, 'cache-is-a-file');
    await writeFile(cache, 'x');
    const err = await mkdir(join(cache, 'onnx', 'key'), { recursive: true }).catch((e: unknown) => e);
    const clear = fileAccessError(err);
    assert.ok(clear instanceof FileAccessError, `expected a FileAccessError for ${String(err)}`);
    assert.match(clear.message, /cache-is-a-file.*a file where a folder is needed \(ENOTDIR\)/);
    assert.equal(fileAccessError(new TypeError('x')), undefined);
  });
});

describe('finding 14: every file a checkpoint names stays inside its folder', () => {
  async function shardedWithName(name: unknown): Promise<string> {
    const f = await fixture({ format: 'safetensors-sharded' });
    const indexFile = join(f.dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexFile, 'utf8'));
    const first = Object.keys(index.weight_map)[0]!;
    index.weight_map[first] = name;
    await writeFile(indexFile, JSON.stringify(index));
    return f.dir;
  }

  for (const name of [
    '../../outside.safetensors',
    '../../../../etc/passwd',
    '/etc/passwd',
    'sub/../../x.safetensors',
    './model.safetensors',
    'C:\\x.safetensors',
    'a\u0000b',
    '',
  ]) {
    test(`a shard named ${JSON.stringify(name)} is refused by its index`, async () => {
      const dir = await shardedWithName(name);
      await rejectsWith(openWeights(dir), 'model.safetensors.index.json', 'not a plain relative path');
    });
  }

  test('a shard name that is not a string', async () => {
    await rejectsWith(openWeights(await shardedWithName(7)), 'model.safetensors.index.json', 'not a file name but a number');
  });

  test('pytorch_model.bin.index.json is held to the same rule', async () => {
    const f = await fixture({ format: 'bin-sharded' });
    const indexFile = join(f.dir, 'pytorch_model.bin.index.json');
    const index = JSON.parse(await readFile(indexFile, 'utf8'));
    index.weight_map[Object.keys(index.weight_map)[0]!] = '../../outside.bin';
    await writeFile(indexFile, JSON.stringify(index));
    await rejectsWith(openWeights(f.dir), 'pytorch_model.bin.index.json', '"../../outside.bin"');
  });

  test('a plain name that is a link out of the folder is refused; one inside it is fine', async () => {
    const f = await fixture();
    const outside = join(tmp.path, `outside-${n}.safetensors`);
    await rename(join(f.dir, 'model.safetensors'), outside);
    await symlink(outside, join(f.dir, 'model.safetensors'));
    await rejectsWith(openWeights(f.dir), 'model.safetensors', 'outside the model folder');
    await rm(join(f.dir, 'model.safetensors'));
    await mkdir(join(f.dir, 'weights'));
    await rename(outside, join(f.dir, 'weights', 'real.safetensors'));
    await symlink(join('weights', 'real.safetensors'), join(f.dir, 'model.safetensors'));
    assert.ok((await openWeights(f.dir)).tensors.size > 0);
  });

  test('config.json linked to a file outside the folder is refused', async () => {
    const f = await fixture();
    const outside = join(tmp.path, `outside-config-${n}.json`);
    await rename(join(f.dir, 'config.json'), outside);
    await symlink(outside, join(f.dir, 'config.json'));
    await rejectsWith(readOptConfig(f.dir), 'config.json', 'outside the model folder');
  });

  test("a Hub snapshot: links into its own repo's blobs/ load, links into another repo's do not", async () => {
    const hub = join(tmp.path, `hub-${n++}`);
    const repo = join(hub, 'models--facebook--opt-tiny');
    const other = join(hub, 'models--evil--repo');
    const snapshot = join(repo, 'snapshots', 'a'.repeat(40));
    const f = await fixture();
    await mkdir(snapshot, { recursive: true });
    for (const [blobs, name] of [
      [join(repo, 'blobs'), 'config.json'],
      [join(repo, 'blobs'), 'model.safetensors'],
    ] as const) {
      await mkdir(blobs, { recursive: true });
      await rename(join(f.dir, name), join(blobs, `sha-${name}`));
      await symlink(join('..', '..', 'blobs', `sha-${name}`), join(snapshot, name));
    }
    assert.ok((await openWeights(snapshot)).tensors.size > 0);
    await mkdir(join(other, 'blobs'), { recursive: true });
    await rename(join(repo, 'blobs', 'sha-model.safetensors'), join(other, 'blobs', 'sha-model.safetensors'));
    await rm(join(snapshot, 'model.safetensors'));
    await symlink(join('..', '..', '..', 'models--evil--repo', 'blobs', 'sha-model.safetensors'), join(snapshot, 'model.safetensors'));
    await rejectsWith(openWeights(snapshot), 'model.safetensors', 'outside the model folder');
  });
});

describe('finding 15: what is read whole is bounded first, and bad input is quoted briefly', () => {
  test('a 200 MB config.json is refused from its size, without reading it', async () => {
    const f = await fixture();
    await truncate(join(f.dir, 'config.json'), 200 << 20); // sparse: costs no disk
    const before = process.memoryUsage().rss;
    await rejectsWith(readOptConfig(f.dir), 'config.json', '209715200 bytes', '4.0 MiB');
    assert.ok(process.memoryUsage().rss - before < 100 << 20, 'the file was not read');
  });

  test('the caps of the other small files and of the tokenizer files', async () => {
    const f = await fixture();
    await writeFile(join(f.dir, 'generation_config.json'), '{}');
    await truncate(join(f.dir, 'generation_config.json'), 5 << 20);
    await rejectsWith(readGenerationConfig(f.dir), 'generation_config.json', '4.0 MiB');
    for (const name of ['tokenizer_config.json', 'vocab.json']) {
      const dir = join(tmp.path, `tok-${n++}`);
      await mkdir(dir);
      await writeFile(join(dir, name), '{}');
      await truncate(join(dir, name), name === 'vocab.json' ? 65 << 20 : 5 << 20);
      await rejectsWith(readTokenizerFiles(dir), name, name === 'vocab.json' ? '64.0 MiB' : '4.0 MiB');
    }
    const index = join(tmp.path, `idx-${n++}`);
    await mkdir(index);
    await writeFile(join(index, 'config.json'), await readFile(join(f.dir, 'config.json')));
    await writeFile(join(index, 'model.safetensors.index.json'), '{}');
    await truncate(join(index, 'model.safetensors.index.json'), 5 << 20);
    await rejectsWith(openWeights(index), 'model.safetensors.index.json', '4.0 MiB');
  });

  test('a garbage merges.txt is quoted in at most 60 escaped characters', async () => {
    const dir = join(tmp.path, `merges-${n++}`);
    await mkdir(dir);
    await writeFile(join(dir, 'vocab.json'), JSON.stringify({ a: 0, b: 1, ab: 2 }));
    const garbage = Buffer.from(
      Array.from({ length: 4000 }, (_, i) => (i * 37 + 1) % 128).filter((b) => b !== 10 && b !== 32 && b !== 9 && b !== 13),
    );
    await writeFile(join(dir, 'merges.txt'), garbage);
    const err = await readTokenizerFiles(dir).catch((e: unknown) => e);
    assert.ok(err instanceof CheckpointError, String(err));
    assert.match(err.message, /merges\.txt line 1 must hold two tokens/);
    assert.ok(err.message.length < 400, `message of ${err.message.length} characters`);
    assert.doesNotMatch(err.message, /[\u0000-\u001f]/, 'no raw control characters');
    await writeFile(join(dir, 'merges.txt'), Buffer.from([0xff, 0xfe, 0x61, 0x20, 0x62]));
    await rejectsWith(readTokenizerFiles(dir), 'merges.txt', 'not UTF-8');
  });

  test('invalid JSON is quoted briefly and escaped, not dumped', async () => {
    const f = await fixture();
    await writeFile(join(f.dir, 'config.json'), `{"a": \u0001${'\u0002'.repeat(5000)}`);
    const err = await readOptConfig(f.dir).catch((e: unknown) => e);
    assert.ok(err instanceof CheckpointError, String(err));
    assert.match(err.message, /config\.json is not valid JSON/);
    // 60 characters of input at most, each escaped in at most 6.
    assert.ok(err.message.length < 600, err.message);
    assert.doesNotMatch(err.message, /[\u0000-\u001f]/);
  });
});

describe('found on the way', () => {
  test('config.json sizes are bounded, so a hostile one cannot loop or allocate for ever', async () => {
    const f = await fixture();
    const file = join(f.dir, 'config.json');
    const cfg = JSON.parse(await readFile(file, 'utf8'));
    for (const [key, value] of [
      ['num_hidden_layers', 1e9],
      ['vocab_size', 2 ** 40],
      ['hidden_size', 1e300],
      ['eos_token_id', 2 ** 53],
    ] as const) {
      await writeFile(file, JSON.stringify({ ...cfg, [key]: value }));
      await rejectsWith(readOptConfig(f.dir), `${key} must be an integer from`);
    }
    await writeFile(file, JSON.stringify({ ...cfg, id2label: 'abc' }));
    await rejectsWith(readOptConfig(f.dir), 'id2label');
    await writeFile(file, JSON.stringify({ ...cfg, model_type: 'x'.repeat(10_000) }));
    const err = await readOptConfig(f.dir).catch((e: unknown) => e);
    assert.ok(err instanceof CheckpointError && err.message.length < 300, String(err));
  });

  test('a weight stored in two shards is refused, not silently taken from one', async () => {
    const f = await fixture({ format: 'safetensors-sharded' });
    const indexFile = join(f.dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexFile, 'utf8'));
    const shards = [...new Set(Object.values(index.weight_map) as string[])].sort();
    const one = splitSafetensors(await readFile(join(f.dir, shards[0]!)));
    const name = Object.keys(JSON.parse(one.headerText)).find((k) => k !== '__metadata__')!;
    const entry = JSON.parse(one.headerText)[name];
    const bytes = one.data.subarray(entry.data_offsets[0], entry.data_offsets[1]);
    await writeSafetensors(join(f.dir, 'model-extra.safetensors'), [{ name, dtype: entry.dtype, shape: entry.shape, data: bytes }]);
    index.weight_map['extra'] = 'model-extra.safetensors';
    await writeFile(indexFile, JSON.stringify(index));
    await rejectsWith(openWeights(f.dir), 'is stored twice');
  });

  test('JSON nested 100,000 deep in tokenizer.json is refused before anything walks it', async () => {
    const dir = join(tmp.path, `deep-${n++}`);
    await mkdir(dir);
    await writeFile(
      join(dir, 'tokenizer.json'),
      `{"post_processor":${'{"type":"Sequence","processors":['.repeat(100_000)}${']}'.repeat(100_000)}}`,
    );
    await rejectsWith(readTokenizerFiles(dir), 'tokenizer.json', 'more than 100 deep');
  });

  test('token ids far beyond any vocabulary are refused', async () => {
    const dir = join(tmp.path, `ids-${n++}`);
    await mkdir(dir);
    await writeFile(join(dir, 'vocab.json'), JSON.stringify({ a: 0, b: 4_000_000_000 }));
    await writeFile(join(dir, 'merges.txt'), 'a b\n');
    await rejectsWith(readTokenizerFiles(dir), 'vocab.json', 'not to an integer id from 0 to');
  });
});
