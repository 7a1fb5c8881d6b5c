// The fp32 and fp16 graphs on onnxruntime's WebGPU provider against the CPU's fp32, through the
// real decoder with its KV cache (prefill, then decode steps). Runs wherever Dawn finds an adapter:
// a GPU, or on CPU-only Linux Mesa's software Vulkan driver lavapipe (Mesa ≥ 24; Debian 12's 22.3 is
// refused by Dawn, "Vulkan shaderUniform*ArrayDynamicIndexing required"; bookworm-backports has 25):
//   apt-get install -y libvulkan1 && apt-get install -y -t bookworm-backports mesa-vulkan-drivers
// Skipped, with the reason, where WebGPU cannot start.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type OptModel, loadOptModel } from '../../runtime/src/model.js';
import type { KvCache } from '../../runtime/src/decoder.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { argmax, ids64, maxAbs, maxAbsDiff, tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('webgpu');
after(() => tmp.remove());
const cacheDir = join(tmp.path, 'cache');
const PROMPT = [2, 31414, 232, 328, 740, 1140, 12695];
const NEXT = [69, 46078, 1588];

/** Last-position logits after the prompt, then after each of NEXT fed one at a time. */
async function steps(model: OptModel): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let ids = PROMPT;
  let past: KvCache | undefined;
  let feed = PROMPT;
  for (let i = 0; i <= NEXT.length; i++) {
    const r = await model.decoder.forward({
      inputIds: ids64([feed]),
      batch: 1,
      attentionMask: ids64([ids.map(() => 1)]),
      past,
      logitsToKeep: 1,
    });
    out.push(r.logits.slice());
    // On WebGPU the cache never leaves the device: its tensors are GPU buffers fed back as they are.
    if (model.device === 'webgpu')
      assert.ok(
        r.present.tensors.every((t) => t.location === 'gpu-buffer'),
        `KV cache on ${r.present.tensors[0]!.location}`,
      );
    past = r.present;
    if (i < NEXT.length) {
      feed = [NEXT[i]!];
      ids = [...ids, NEXT[i]!];
    }
  }
  return out;
}

describe('WebGPU provider parity with the CPU', { timeout: 300_000 }, () => {
  let dir: string;
  let reference: Float32Array[];
  let unavailable: string | undefined;
  before(async () => {
    dir = (await writeOptCheckpoint(join(tmp.path, 'model'), { seed: 21, config: { max_position_embeddings: 128 } })).dir;
    const cpu = await loadOptModel(dir, { device: 'cpu', dtype: 'fp32', cacheDir, threads: 1 });
    reference = await steps(cpu);
    await cpu.dispose();
    try {
      const probe = await loadOptModel(dir, { device: 'webgpu', dtype: 'fp32', cacheDir });
      if (probe.device !== 'webgpu') unavailable = `WebGPU did not start: ${probe.deviceFallback}`;
      await probe.dispose();
    } catch (e) {
      unavailable = (e as Error).message;
    }
  });

  for (const [dtype, tolerance] of [
    ['fp32', 1e-4],
    ['fp16', 2e-2],
  ] as const) {
    test(`${dtype} graph: prefill and decode steps match the CPU's fp32 (relative ${tolerance})`, async (t) => {
      if (unavailable) return t.skip(unavailable);
      const model = await loadOptModel(dir, { device: 'webgpu', dtype, cacheDir });
      try {
        assert.equal(model.device, 'webgpu');
        const got = await steps(model);
        for (const [i, logits] of got.entries()) {
          const scale = Math.max(1, maxAbs(reference[i]!));
          const diff = maxAbsDiff(logits, reference[i]!);
          assert.ok(diff <= tolerance * scale, `step ${i}: max |Δ| ${diff} > ${tolerance} × ${scale.toFixed(2)}`);
          if (dtype === 'fp32') assert.equal(argmax(logits), argmax(reference[i]!));
        }
      } finally {
        await model.dispose();
      }
    });
  }
});
