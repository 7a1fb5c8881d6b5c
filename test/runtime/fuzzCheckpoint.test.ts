// Seeded fuzzing of checkpoint loading: valid files from the fixture writers, mutated (safetensors
// headers, length prefixes, offsets, dtypes and shapes; data.pkl pickles and the zip around them;
// shard indexes; config.json values; tokenizer files). Every case must end in a correct result or
// a CheckpointError/UsageError: never another exception, never a hang, never a read outside the
// model folder. A few end-to-end runs of `opt logits` check what the user then sees: exit code 2,
// the file named, no stack trace.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdir, readFile, realpath, rm, truncate, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { openOptWeights } from '../../runtime/src/checkpoint/optWeights.js';
import { unpickle } from '../../runtime/src/checkpoint/pickle.js';
import { readSafetensors } from '../../runtime/src/checkpoint/safetensors.js';
import type { TensorRef } from '../../runtime/src/checkpoint/tensorRef.js';
import { readTorchBin } from '../../runtime/src/checkpoint/torchBin.js';
import { parseOptConfig, readOptConfig } from '../../runtime/src/config.js';
import { CheckpointError } from '../../runtime/src/errors.js';
import { UsageError } from '../../protocol/errors.js';
import { readTokenizerFiles } from '../../runtime/src/tokenizer/hfTokenizerFiles.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { joinSafetensors, splitSafetensors, writeSafetensors } from '../fixtures/safetensorsWriter.js';
import { Pickler, nestedParameterPickle, writeTorchBinRecords } from '../fixtures/torchBinWriter.js';
import { tempDir } from '../helpers/decoderHarness.js';

const SEED = 42;
const CASE_MS = 5_000;
const tmp = tempDir('fuzz');
after(() => tmp.remove());

/** Runs one case: a result, or a clear error; anything else, or a case slower than CASE_MS, fails the property. */
async function settle<T>(work: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: CheckpointError | UsageError }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: no answer in ${CASE_MS} ms`)), CASE_MS);
  });
  try {
    return { ok: true, value: await Promise.race([work, timeout]) };
  } catch (err) {
    if (err instanceof CheckpointError || err instanceof UsageError) return { ok: false, error: err };
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** What every accepted safetensors file must satisfy: refs inside the data region, tiling it exactly. */
function assertRefsSound(file: string, refs: TensorRef[], fileSize: number): void {
  const sorted = [...refs].sort((a, b) => a.offset - b.offset || a.length - b.length);
  let end = -1;
  for (const ref of sorted) {
    assert.equal(ref.file, file);
    assert.ok(
      Number.isSafeInteger(ref.offset) && Number.isSafeInteger(ref.length) && ref.offset >= 8 && ref.offset + ref.length <= fileSize,
      `${ref.name} lies outside the file`,
    );
    if (end >= 0) assert.equal(ref.offset, end, 'tensors overlap or leave a gap');
    end = ref.offset + ref.length;
  }
  if (end >= 0) assert.equal(end, fileSize);
}

/** One edit of a byte string: overwrite a byte, insert bytes, or cut a run out. */
interface ByteEdit {
  kind: 'flip' | 'insert' | 'cut';
  at: number;
  byte?: number;
  bytes?: number[];
  length?: number;
}

const f32 = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);
const f16 = (n: number) => new Uint8Array(2 * n).fill(0x3c);

// JSON values a hostile header or config could hold in any slot.
const anyJson = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(
    null,
    -1,
    0.5,
    2 ** 53,
    2 ** 64,
    -0,
    1e308,
    '',
    'toString',
    '__proto__',
    'constructor',
    'F32',
    'F16',
    'BF16',
    'I64',
    'BOOL',
    [],
    {},
    [0],
    [0, 0],
    [-1, 4],
    [4, 0],
  ),
  fc.array(fc.oneof(fc.integer({ min: -4, max: 64 }), fc.constantFrom(2 ** 31, 2 ** 53, 2 ** 60, 1.5, -0)), { maxLength: 5 }),
);

describe('safetensors headers', () => {
  let file: string;
  let base: Buffer;
  before(async () => {
    file = join(tmp.path, 'fuzz.safetensors');
    await writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: f32([1, 2, 3, 4, 5, 6]) },
      { name: 'b', dtype: 'F16', shape: [4], data: f16(4) },
      { name: 'c', dtype: 'BF16', shape: [0, 7], data: new Uint8Array() },
      { name: 'd', dtype: 'F32', shape: [], data: f32([7]) },
    ]);
    base = await readFile(file);
  });

  async function check(bytes: Uint8Array): Promise<void> {
    await writeFile(file, bytes);
    const r = await settle(readSafetensors(file));
    if (r.ok) assertRefsSound(file, r.value, bytes.length);
    else assert.ok(r.error.message.startsWith(file), `the error names the file: ${r.error.message}`);
  }

  test('the unmutated file reads', async () => {
    const refs = await readSafetensors(file);
    assertRefsSound(file, refs, base.length);
    assert.deepEqual(
      refs.map((r) => r.name),
      ['a', 'b', 'c', 'd'],
    );
  });

  test('entry fields replaced, deleted or added', { timeout: 30_000 }, async () => {
    const field = fc.constantFrom('dtype', 'shape', 'data_offsets', 'extra');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('a', 'b', 'c', 'd', '__metadata__', 'new'), field, fc.option(anyJson), async (name, key, value) => {
        const { headerText, data } = splitSafetensors(base);
        const header = JSON.parse(headerText);
        if (name === '__metadata__' || name === 'new') header[name] = value;
        else if (value === null) delete header[name][key];
        else header[name][key] = value;
        await check(joinSafetensors(JSON.stringify(header), data));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  test('offsets, dtypes and shapes drawn at random, keeping the rest valid', { timeout: 30_000 }, async () => {
    const offsets = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 40 }));
    const dtype = fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I8', 'U8', 'BOOL', 'I64', 'F8_E4M3', 'U16');
    const shape = fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 3 });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ dtype, shape, offsets }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 48 }),
        async (tensors, dataLength) => {
          const header = Object.fromEntries(tensors.map((t, i) => [`t${i}`, { dtype: t.dtype, shape: t.shape, data_offsets: t.offsets }]));
          await check(joinSafetensors(JSON.stringify(header), new Uint8Array(dataLength)));
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
  });

  test('the length prefix', { timeout: 30_000 }, async () => {
    const { headerText, data } = splitSafetensors(base);
    const trueLength = BigInt(Buffer.byteLength(headerText));
    const claimed = fc.oneof(
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.bigInt({ min: -16n, max: 16n }).map((d) => (trueLength + d < 0n ? 0n : trueLength + d)),
    );
    await fc.assert(
      fc.asyncProperty(claimed, async (length) => {
        await check(joinSafetensors(headerText, data, length));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  test('header bytes flipped, inserted, cut; raw text and duplicate keys', { timeout: 30_000 }, async () => {
    const edit = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
      fc.record({
        kind: fc.constant('text' as const),
        text: fc.oneof(
          fc.string({ maxLength: 40 }),
          fc.json({ maxDepth: 3 }),
          fc.constantFrom(
            'null',
            '[]',
            '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}',
            '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
            '{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
          ),
        ),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(edit, { minLength: 1, maxLength: 3 }), async (edits) => {
        const { headerText, data } = splitSafetensors(base);
        let header = Buffer.from(headerText);
        let body: Uint8Array = data;
        for (const e of edits) {
          if (e.kind === 'flip') {
            header = Buffer.from(header);
            header[e.at % header.length] = e.byte;
          }
          if (e.kind === 'insert') {
            const at = e.at % (header.length + 1);
            header = Buffer.concat([header.subarray(0, at), e.bytes, header.subarray(at)]);
          }
          if (e.kind === 'cut') body = body.subarray(0, e.at % (body.length + 1));
          if (e.kind === 'text') {
            header = Buffer.from(e.text);
            body = new Uint8Array(4);
          }
        }
        await check(joinSafetensors(header, body));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('pytorch_model.bin', () => {
  let file: string;
  let pickle: Uint8Array;
  let archive: Buffer;
  const storages = [
    { name: 'data/0', data: f32([1, 2, 3, 4, 5, 6]) },
    { name: 'data/1', data: f32([7, 8]) },
  ];
  before(async () => {
    file = join(tmp.path, 'fuzz.bin');
    const p = new Pickler();
    p.proto();
    p.call('collections', 'OrderedDict', () => p.emptyTuple());
    p.op(0x28);
    p.str('w');
    p.tensor('FloatStorage', '0', 6, [2, 3]);
    p.str('p');
    p.call('torch._utils', '_rebuild_parameter', () =>
      p.tuple([
        () => p.tensor('FloatStorage', '1', 2, [2]),
        () => p.op(0x89),
        () => p.call('collections', 'OrderedDict', () => p.emptyTuple()),
      ]),
    );
    p.op(0x75); // SETITEMS
    p.stop();
    pickle = p.bytes();
    await writeTorchBinRecords(file, [{ name: 'data.pkl', data: pickle }, ...storages]);
    archive = await readFile(file);
  });

  test('the unmutated archive reads', async () => {
    const refs = await readTorchBin(file);
    assert.deepEqual(
      refs.map((r) => [r.name, r.shape]),
      [
        ['w', [2, 3]],
        ['p', [2]],
      ],
    );
  });

  const opcode = fc.constantFrom(
    0x80,
    0x95,
    0x2e,
    0x28,
    0x7d,
    0x5d,
    0x29,
    0x74,
    0x85,
    0x86,
    0x87,
    0x6c,
    0x64,
    0x4a,
    0x4b,
    0x4d,
    0x8a,
    0x8b,
    0x47,
    0x58,
    0x8c,
    0x8d,
    0x42,
    0x43,
    0x8e,
    0x4e,
    0x88,
    0x89,
    0x71,
    0x72,
    0x94,
    0x68,
    0x6a,
    0x63,
    0x93,
    0x52,
    0x81,
    0x92,
    0x62,
    0x73,
    0x75,
    0x61,
    0x65,
    0x51,
    0x30,
    0x31,
    0x32,
  );
  const pickleEdit = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.array(fc.oneof(opcode, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 12 }),
    }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
  );
  function mutate(bytes: Uint8Array, edits: ByteEdit[]): Uint8Array {
    let out = Buffer.from(bytes);
    for (const e of edits) {
      const at = e.at % (out.length + 1);
      if (e.kind === 'flip' && out.length) {
        out = Buffer.from(out);
        out[e.at % out.length] = e.byte ?? 0;
      }
      if (e.kind === 'insert') out = Buffer.concat([out.subarray(0, at), Uint8Array.from(e.bytes ?? [0]), out.subarray(at)]);
      if (e.kind === 'cut') out = Buffer.concat([out.subarray(0, at), out.subarray(at + (e.length ?? 1))]);
    }
    return out;
  }

  test('mutated pickles, unpickled directly', { timeout: 30_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(pickleEdit, { minLength: 1, maxLength: 4 }), async (edits) => {
        await settle((async () => unpickle(mutate(pickle, edits), file))());
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });

  test('random opcode streams, unpickled directly', { timeout: 30_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(opcode, fc.integer({ min: 0, max: 255 })), { maxLength: 64 }), async (ops) => {
        await settle((async () => unpickle(Uint8Array.from([0x80, 0x02, ...ops, 0x2e]), file))());
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });

  test('mutated pickles inside an archive: any tensor read lies inside its storage record', { timeout: 30_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(pickleEdit, { minLength: 1, maxLength: 3 }), async (edits) => {
        await writeTorchBinRecords(file, [{ name: 'data.pkl', data: mutate(pickle, edits) }, ...storages]);
        const size = (await readFile(file)).length;
        const r = await settle(readTorchBin(file));
        if (r.ok)
          for (const ref of r.value) assert.ok(ref.offset >= 0 && ref.offset + ref.length <= size, `${ref.name} lies outside the file`);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  test('mutated zip structure (headers, central directory, end record)', { timeout: 30_000 }, async () => {
    // Bias edits towards the tail, where the central directory and end record live.
    const tailEdit = fc.record({
      kind: fc.constantFrom('flip' as const, 'cut' as const, 'insert' as const),
      fromEnd: fc.integer({ min: 1, max: 400 }),
      byte: fc.integer({ min: 0, max: 255 }),
      bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 8 }),
      length: fc.integer({ min: 1, max: 64 }),
    });
    const anywhere: fc.Arbitrary<ByteEdit> = pickleEdit;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            tailEdit.map((e): ByteEdit => ({ ...e, at: Math.max(0, archive.length - e.fromEnd) })),
            anywhere,
          ),
          { minLength: 1, maxLength: 3 },
        ),
        async (edits) => {
          const bytes = mutate(archive, edits);
          await writeFile(file, bytes);
          const r = await settle(readTorchBin(file));
          if (r.ok)
            for (const ref of r.value)
              assert.ok(ref.offset >= 0 && ref.offset + ref.length <= bytes.length, `${ref.name} lies outside the file`);
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('model folders', () => {
  let root: string;
  let dir: string;
  let config: unknown;
  before(async () => {
    root = join(tmp.path, 'folders');
    dir = join(root, 'a', 'b', 'model');
    const f = await writeOptCheckpoint(dir, { tokenizer: false, format: 'safetensors-sharded' });
    config = JSON.parse(await readFile(join(f.dir, 'config.json'), 'utf8'));
    // Bait: valid weights outside the folder, where a traversal would find them.
    await writeSafetensors(join(root, 'outside.safetensors'), [
      { name: 'model.decoder.embed_tokens.weight', dtype: 'F32', shape: [1], data: f32([1]) },
    ]);
    await writeFile(join(root, 'a', 'outside.safetensors'), await readFile(join(root, 'outside.safetensors')));
  });

  test('shard names in the index never lead outside the folder', { timeout: 30_000 }, async () => {
    const indexFile = join(dir, 'model.safetensors.index.json');
    const original = await readFile(indexFile, 'utf8');
    const realDir = await realpath(dir);
    const piece = fc.constantFrom(
      '..',
      '.',
      '',
      'outside.safetensors',
      'model-00001-of-00002.safetensors',
      'etc',
      'passwd',
      '/',
      '\\',
      'C:',
      '\0',
      'a',
    );
    const name = fc.oneof(
      fc.array(piece, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/')),
      fc.constantFrom(
        '../../outside.safetensors',
        '../../../outside.safetensors',
        '/etc/passwd',
        '../../../../etc/passwd',
        'model-00002-of-00002.safetensors',
      ),
      anyJson,
    );
    try {
      await fc.assert(
        fc.asyncProperty(name, async (shard) => {
          const index = JSON.parse(original);
          index.weight_map[Object.keys(index.weight_map)[0]!] = shard;
          await writeFile(indexFile, JSON.stringify(index));
          const r = await settle(openOptWeights(dir, parseOptConfig(config)));
          if (r.ok) {
            for (const f of r.value.files) {
              const rel = relative(realDir, await realpath(f));
              assert.ok(rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..', `${f} is outside ${dir}`);
            }
          }
        }),
        { seed: SEED, numRuns: 150 },
      );
    } finally {
      await writeFile(indexFile, original);
    }
  });

  test('config.json values', { timeout: 30_000 }, async () => {
    const keys = [
      'vocab_size',
      'hidden_size',
      'num_hidden_layers',
      'num_attention_heads',
      'ffn_dim',
      'max_position_embeddings',
      'word_embed_proj_dim',
      'do_layer_norm_before',
      'enable_bias',
      'activation_function',
      'architectures',
      'model_type',
      'id2label',
      'num_labels',
      'eos_token_id',
      'tie_word_embeddings',
    ];
    const value = fc.oneof(
      anyJson,
      fc.integer({ min: -2, max: 1 << 30 }),
      fc.constantFrom(1e9, 2 ** 40, 1e300, 'OPTForCausalLM', ['OPTForCausalLM'], ['GPT2LMHeadModel'], 'opt', 'gelu'),
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 4 }), async (overrides) => {
        const raw = { ...(config as object), ...overrides };
        const parsed = await settle((async () => parseOptConfig(raw, 'config.json'))());
        if (parsed.ok) {
          // Bounded sizes: whatever passes can be planned without looping for ever.
          assert.ok(parsed.value.num_hidden_layers <= 4096 && parsed.value.vocab_size <= 1 << 24);
          await settle(openOptWeights(dir, parsed.value));
        }
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  test('whole config.json texts', { timeout: 30_000 }, async () => {
    const folder = join(root, 'configs');
    await mkdir(folder, { recursive: true });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 80 }),
          fc.json({ maxDepth: 4 }),
          fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('latin1')),
        ),
        async (text) => {
          await writeFile(join(folder, 'config.json'), text, 'latin1');
          const r = await settle(readOptConfig(folder));
          if (!r.ok) assert.ok(r.error.message.length < 800, r.error.message);
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });

  test('tokenizer files', { timeout: 30_000 }, async () => {
    const folder = join(root, 'tokenizer');
    await mkdir(folder, { recursive: true });
    const vocab = fc.oneof(
      fc.json({ maxDepth: 2 }),
      fc.constant(JSON.stringify({ a: 0, b: 1, ab: 2, '</s>': 3, '<pad>': 4 })),
      fc.constant('{"a": 4000000000}'),
    );
    const merges = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom('#version: 0.2\na b\n', 'a b\n', 'a b c\n', 'x y\n'),
      fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b).toString('latin1')),
    );
    await fc.assert(
      fc.asyncProperty(vocab, merges, fc.option(fc.json({ maxDepth: 3 })), async (v, m, tokenizerConfig) => {
        await writeFile(join(folder, 'vocab.json'), v);
        await writeFile(join(folder, 'merges.txt'), m, 'latin1');
        if (tokenizerConfig === null) await rm(join(folder, 'tokenizer_config.json'), { force: true });
        else await writeFile(join(folder, 'tokenizer_config.json'), tokenizerConfig);
        const r = await settle(readTokenizerFiles(folder));
        if (!r.ok) assert.ok(r.error.message.length < 800, r.error.message);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });
});

describe('the CLI shows one clear line and exit code 2', () => {
  const run = promisify(execFile);
  let n = 0;
  const fresh = async (options: Parameters<typeof writeOptCheckpoint>[1] = {}) =>
    (await writeOptCheckpoint(join(tmp.path, `cli${n++}`), { tokenizer: true, ...options })).dir;

  async function cli(dir: string, fileFragment: string, extra: string[] = []): Promise<void> {
    const args = [
      '--import',
      'tsx',
      'runtime/src/cli.ts',
      'logits',
      '--model',
      dir,
      '--text',
      'hi',
      '--device',
      'cpu',
      '--dtype',
      'fp32',
      '--cache-dir',
      join(tmp.path, 'cli-cache'),
      ...extra,
    ];
    const r = await run(process.execPath, args, { timeout: 30_000, encoding: 'utf8' }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code?: number; stderr?: string; killed?: boolean }) => ({ code: err.killed ? 'killed' : err.code, stderr: err.stderr ?? '' }),
    );
    assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
    assert.ok(r.stderr.includes(fileFragment), `stderr names ${fileFragment}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /^ {4}at /m, 'no stack trace');
  }

  const cases: [string, () => Promise<[string, string, string[]?]>][] = [
    [
      'a safetensors header of JSON null',
      async () => {
        const dir = await fresh();
        const { data } = splitSafetensors(await readFile(join(dir, 'model.safetensors')));
        await writeFile(join(dir, 'model.safetensors'), joinSafetensors('null', data));
        return [dir, 'model.safetensors'];
      },
    ],
    [
      'model.safetensors that is a folder',
      async () => {
        const dir = await fresh();
        await rm(join(dir, 'model.safetensors'));
        await mkdir(join(dir, 'model.safetensors'));
        return [dir, 'model.safetensors'];
      },
    ],
    [
      'a shard outside the folder',
      async () => {
        const dir = await fresh({ format: 'safetensors-sharded' });
        const indexFile = join(dir, 'model.safetensors.index.json');
        const index = JSON.parse(await readFile(indexFile, 'utf8'));
        index.weight_map[Object.keys(index.weight_map)[0]!] = '../../outside.safetensors';
        await writeFile(indexFile, JSON.stringify(index));
        return [dir, 'model.safetensors.index.json'];
      },
    ],
    [
      'a 200 MB config.json',
      async () => {
        const dir = await fresh();
        await truncate(join(dir, 'config.json'), 200 << 20);
        return [dir, 'config.json'];
      },
    ],
    [
      'a garbage merges.txt',
      async () => {
        const dir = await fresh();
        await writeFile(join(dir, 'merges.txt'), Buffer.from(Array.from({ length: 3000 }, (_, i) => 33 + ((i * 7) % 90))));
        return [dir, 'merges.txt'];
      },
    ],
    [
      '100,000 nested _rebuild_parameter calls',
      async () => {
        const dir = await fresh({ format: 'bin' });
        await writeTorchBinRecords(join(dir, 'pytorch_model.bin'), [
          { name: 'data.pkl', data: nestedParameterPickle('model.decoder.embed_tokens.weight', 100_000, 1) },
          { name: 'data/0', data: f32([0]) },
        ]);
        return [dir, 'pytorch_model.bin'];
      },
    ],
  ];
  if (spawnSync('mkfifo', ['--version']).status === 0) {
    cases.push([
      'model.safetensors that is a FIFO',
      async () => {
        const dir = await fresh();
        await rm(join(dir, 'model.safetensors'));
        spawnSync('mkfifo', [join(dir, 'model.safetensors')]);
        return [dir, 'model.safetensors'];
      },
    ]);
  }
  for (const [label, make] of cases) {
    test(label, { timeout: 40_000 }, async () => {
      const [dir, fragment, extra] = await make();
      await cli(dir, fragment, extra);
    });
  }

  // Needs runtime/src/cli.ts to map Node's file-system errors through fileAccessError() (errors.ts): not this suite's file.
  test('a --cache-dir that is a file', { timeout: 40_000 }, async () => {
    const dir = await fresh();
    const cache = join(tmp.path, 'cache-file');
    await writeFile(cache, '');
    const args = [
      '--import',
      'tsx',
      'runtime/src/cli.ts',
      'logits',
      '--model',
      dir,
      '--text',
      'hi',
      '--device',
      'cpu',
      '--dtype',
      'fp32',
      '--cache-dir',
      cache,
    ];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.ok(r.stderr.includes('cache-file'));
    assert.doesNotMatch(r.stderr, /^ {4}at /m);
  });
});
