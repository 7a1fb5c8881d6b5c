// What a model needs in memory (protocol/memory.ts, shared by the runtime's check and the model
// picker): KV bytes per token at each OPT size, the automatic prefix-cache budget, and the refusal
// of a load that cannot fit with the figures that make it up.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { OPT_SIZES } from '../../extension/src/models/optModels.js';
import { PREFIX_CACHE_CONTEXTS, autoPrefixCacheBytes, contextKvBytes, kvBytesPerToken, memoryNeed } from '../../protocol/memory.js';
import { PrefixCache } from '../../runtime/src/engine/prefixCache.js';
import { loadOptModel } from '../../runtime/src/model.js';
import type { Tensor } from '../../runtime/src/session.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('memory');
after(() => tmp.remove());
const KiB = 1024,
  MiB = 2 ** 20,
  GiB = 2 ** 30;
const size = (label: string) => OPT_SIZES.find((s) => s.label === label)!.shape;

describe('KV memory per OPT size', () => {
  test('fp32 KV bytes per token are layers × 2 × hidden × 4', () => {
    const expected: Record<string, number> = {
      '125m': 72 * KiB,
      '350m': 192 * KiB,
      '1.3b': 384 * KiB,
      '2.7b': 640 * KiB,
      '6.7b': 1024 * KiB,
    };
    for (const [label, bytes] of Object.entries(expected)) assert.equal(kvBytesPerToken(size(label), 'int8'), bytes, label);
    assert.equal(kvBytesPerToken(size('1.3b'), 'fp16'), 192 * KiB, 'fp16 graphs keep an fp16 cache');
  });

  test('a context is counted in the 64-position steps the cache grows by, at most the model positions', () => {
    const c = size('350m');
    assert.equal(contextKvBytes(c, 'int8', 1500), 1536 * 192 * KiB);
    assert.equal(contextKvBytes(c, 'int8', 1536), 1536 * 192 * KiB);
    assert.equal(contextKvBytes(c, 'int8', 10_000), 2048 * 192 * KiB);
  });

  test('the automatic prefix cache holds a few contexts at every size up to opt-6.7b on this kind of machine', () => {
    for (const label of ['125m', '350m', '1.3b', '2.7b', '6.7b']) {
      const c = size(label);
      const budget = autoPrefixCacheBytes(c, 'int8', 1548, 22 * GiB);
      const context = contextKvBytes(c, 'int8', 1548);
      assert.ok(budget >= 2 * context, `${label}: ${budget / MiB} MiB for contexts of ${context / MiB} MiB`);
      assert.ok(budget <= PREFIX_CACHE_CONTEXTS * context);
    }
  });

  test('the automatic budget takes at most half of what the weights and the running request leave, and is never 0 (which would turn reuse off)', () => {
    const c = size('1.3b');
    const need = memoryNeed(c, 'int8', 2048);
    const spare = 1 * GiB;
    assert.equal(autoPrefixCacheBytes(c, 'int8', 2048, need.total + spare), spare / 2);
    const tight = new PrefixCache(autoPrefixCacheBytes(c, 'int8', 2048, need.total - 1));
    tight.put([2, 5, 6], {
      batch: 1,
      length: 3,
      capacity: 3,
      tensors: [{ data: { buffer: { byteLength: need.context } } } as unknown as Tensor],
    });
    assert.equal(tight.take([2, 5, 6, 7])?.tokens.length, 3, 'with no memory to spare, the document being typed in still keeps its state');
  });
});

test('a load that cannot fit is refused with the weights, the KV cache and a hand-set prefix cache in the message', async () => {
  const f = await writeOptCheckpoint(join(tmp.path, 'model'), {
    seed: 5,
    config: { max_position_embeddings: 2048, hidden_size: 64, num_hidden_layers: 64, ffn_dim: 128 },
  });
  const need = memoryNeed(f.config, 'int8', 2048);
  const options = { dtype: 'int8', cacheDir: join(tmp.path, 'cache'), checkMemory: true } as const;
  // Enough for the weights, not for them and a full context's KV cache (the default context: the model's positions).
  await assert.rejects(
    loadOptModel(f.dir, { ...options, availableMemoryBytes: need.model + need.context / 2 }),
    /needs about 0\.\d GiB of memory at int8, but only 0\.\d GiB is available \(weights and runtime \d+ MiB, KV cache for 2048 tokens 64 MiB\): choose a shorter context/,
  );
  await assert.rejects(
    loadOptModel(f.dir, { ...options, contextTokens: 256, prefixCacheBytes: 4 * GiB, availableMemoryBytes: 2 * GiB }),
    /KV cache for 256 tokens 8 MiB, prefix cache 4\.0 GiB\): choose a smaller prefix cache \(optComplete\.runtime\.prefixCacheMiB\)/,
  );
  const model = await loadOptModel(f.dir, { ...options, contextTokens: 256, availableMemoryBytes: need.model + need.context / 2 });
  await model.dispose();
});
