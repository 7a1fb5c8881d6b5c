// Device selection and fallback: the rules over made-up machines (pure), then real failures
// through onnxruntime: a CUDA provider that cannot load and a WebGPU whose Vulkan driver is
// broken both end on the CPU with a reason; explicit devices the machine lacks are refused by the
// CLI with what to install; the runtime process reports the fallback to the editor.

import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';
import { Initialize, Log, PROTOCOL_VERSION } from '../../protocol/protocol.js';
import { convertCheckpoint } from '../../runtime/src/convert.js';
import { createSessionForDevice } from '../../runtime/src/device/open.js';
import { nvidiaGpus, ortBinaryDir, probeDevices } from '../../runtime/src/device/probe.js';
import { type DeviceProbe, fallbackMessage, fitModelToDevices, planDevices } from '../../runtime/src/device/select.js';
import { estimateModelBytes } from '../../runtime/src/memory.js';
import type { OptConfig } from '../../runtime/src/config.js';
import { UsageError } from '../../protocol/errors.js';
import { loadOptModel, resolveDtype } from '../../runtime/src/model.js';
import type { ModelSession, SessionSettings } from '../../runtime/src/session.js';
import { writeOptCheckpoint } from '../fixtures/optCheckpoint.js';
import { ids64, maxAbsDiff, tempDir } from '../helpers/decoderHarness.js';

const tmp = tempDir('device');
after(() => tmp.remove());

/** A Linux machine with nothing but a CPU; each test adds what it needs. */
function machine(
  patch: { platform?: NodeJS.Platform; cuda?: boolean; gpus?: string[]; loader?: boolean; icds?: string[]; renderNodes?: number } = {},
): DeviceProbe {
  return {
    platform: patch.platform ?? 'linux',
    cudaProvider: { installed: patch.cuda ?? false, dir: '/x/bin', missing: patch.cuda ? [] : ['libonnxruntime_providers_cuda.so'] },
    nvidiaGpus: patch.gpus ?? [],
    vulkan: {
      loader: patch.loader ?? false,
      icds: (patch.icds ?? []).map((library) => ({
        file: `/usr/share/vulkan/icd.d/${library}.json`,
        library,
        software: /lvp/.test(library),
      })),
      renderNodes: patch.renderNodes ?? 0,
    },
  };
}

describe('device plans', () => {
  test('auto on a CPU-only machine: the CPU, with why each GPU provider was skipped', () => {
    const plan = planDevices('auto', machine());
    assert.deepEqual(plan.candidates, ['cpu']);
    assert.match(plan.skipped.find((s) => s.device === 'cuda')!.reason, /CUDA provider is not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12/);
    assert.match(plan.skipped.find((s) => s.device === 'webgpu')!.reason, /libvulkan\.so\.1 was not found.*apt-get install/);
  });

  test("auto with the CUDA provider and an NVIDIA GPU: CUDA first, then WebGPU through NVIDIA's Vulkan driver, then the CPU", () => {
    const plan = planDevices(
      'auto',
      machine({ cuda: true, gpus: ['NVIDIA H100 80GB HBM3'], loader: true, icds: ['libGLX_nvidia.so.0', 'libvulkan_lvp.so'] }),
    );
    assert.deepEqual(plan.candidates, ['cuda', 'webgpu', 'cpu']);
    assert.deepEqual(plan.skipped, []);
  });

  test('auto with the CUDA provider but no GPU skips CUDA and says so', () => {
    const plan = planDevices('auto', machine({ cuda: true }));
    assert.deepEqual(plan.candidates, ['cpu']);
    assert.match(plan.skipped[0]!.reason, /no NVIDIA GPU found/);
  });

  test('auto never picks a software Vulkan adapter (lavapipe runs shaders on the CPU, slower than the CPU provider)', () => {
    const plan = planDevices('auto', machine({ loader: true, icds: ['libvulkan_lvp.so'] }));
    assert.deepEqual(plan.candidates, ['cpu']);
    assert.match(plan.skipped.find((s) => s.device === 'webgpu')!.reason, /only software Vulkan drivers/);
    // Mesa installs hardware ICDs for every vendor; without a render node there is no GPU for them.
    assert.deepEqual(planDevices('auto', machine({ loader: true, icds: ['libvulkan_radeon.so', 'libvulkan_lvp.so'] })).candidates, ['cpu']);
    assert.deepEqual(planDevices('auto', machine({ loader: true, icds: ['libvulkan_radeon.so'], renderNodes: 1 })).candidates, [
      'webgpu',
      'cpu',
    ]);
  });

  test('auto on macOS and Windows tries WebGPU (Metal, D3D12) and never CUDA', () => {
    for (const platform of ['darwin', 'win32'] as const) {
      const plan = planDevices('auto', machine({ platform }));
      assert.deepEqual(plan.candidates, ['webgpu', 'cpu']);
      assert.match(plan.skipped[0]!.reason, /CUDA provider for Linux only/);
    }
  });

  test('explicit devices are honoured when possible, with the CPU as the fallback', () => {
    assert.deepEqual(planDevices('cpu', machine()).candidates, ['cpu']);
    assert.deepEqual(planDevices('cuda', machine({ cuda: true, gpus: ['NVIDIA GPU'] })).candidates, ['cuda', 'cpu']);
    // An explicit webgpu takes whatever adapter Dawn finds, a software one included.
    assert.deepEqual(planDevices('webgpu', machine({ loader: true, icds: ['libvulkan_lvp.so'] })).candidates, ['webgpu', 'cpu']);
  });

  test('explicit devices the machine lacks are refused with what is missing and how to fix it', () => {
    assert.throws(
      () => planDevices('cuda', machine()),
      (e: Error) =>
        e instanceof UsageError &&
        /device cuda is not available: .*CUDA provider is not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node/.test(
          e.message,
        ),
    );
    assert.throws(() => planDevices('cuda', machine({ cuda: true })), /device cuda is not available: no NVIDIA GPU found/);
    assert.throws(() => planDevices('cuda', machine({ platform: 'darwin' })), /CUDA provider for Linux only \(this is darwin\)/);
    assert.throws(
      () => planDevices('webgpu', machine()),
      /device webgpu is not available: WebGPU on Linux needs Vulkan and libvulkan\.so\.1 was not found/,
    );
    assert.throws(() => planDevices('webgpu', machine({ loader: true })), /no Vulkan driver \(ICD\) is installed/);
    assert.throws(() => planDevices('tpu' as never, machine()), /unknown device "tpu": choose one of auto, cpu, webgpu, cuda/);
  });

  test('dtype auto follows the device that runs', () => {
    assert.equal(resolveDtype('auto', 'cpu'), 'int8');
    assert.equal(resolveDtype('auto', 'cuda'), 'fp16');
    assert.equal(resolveDtype('auto', 'webgpu'), 'fp16');
    assert.equal(resolveDtype('fp32', 'cuda'), 'fp32');
  });

  test('the fallback message names the failed provider, its error, the fix, and where the model runs', () => {
    const m = fallbackMessage(
      'cuda',
      [{ device: 'cuda', error: 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library' }],
      'cpu',
    );
    assert.match(
      m,
      /^cuda failed to initialize: OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library \(reinstall onnxruntime-node.*\); running on the CPU instead of the requested cuda$/,
    );
    const w = fallbackMessage(
      'auto',
      [
        {
          device: 'webgpu',
          error:
            '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters',
        },
      ],
      'cpu',
    );
    assert.match(
      w,
      /^webgpu failed to initialize: Failed to get a WebGPU adapter: No supported adapters \(WebGPU needs a working GPU driver.*\); running on the CPU instead$/,
    );
  });
});

describe('models larger than the GPU', () => {
  const gpu = (gib: number) => ({
    ...machine({ cuda: true, gpus: ['NVIDIA A10G'], loader: true, icds: ['libGLX_nvidia.so.0'] }),
    gpuMemoryBytes: gib * 2 ** 30,
  });
  // opt-30b's shapes: 48 layers, hidden 7168, ffn 28672.
  const opt30b = {
    hidden_size: 7168,
    word_embed_proj_dim: 7168,
    ffn_dim: 28672,
    num_hidden_layers: 48,
    vocab_size: 50272,
    max_position_embeddings: 2048,
  } as OptConfig;
  const need = (d: string) => estimateModelBytes(opt30b, d === 'cpu' ? 'int8' : 'fp16');

  test('auto skips CUDA with the figures and moves on', () => {
    const plan = fitModelToDevices(planDevices('auto', gpu(24)), gpu(24), need);
    assert.deepEqual(plan.candidates, ['webgpu', 'cpu']);
    assert.match(plan.skipped.find((s) => s.device === 'cuda')!.reason, /needs about 5\d\.\d GiB on the GPU and NVIDIA A10G has 24\.0 GiB/);
  });

  test('an explicit cuda is refused with the figures and what to do', () => {
    assert.throws(
      () => fitModelToDevices(planDevices('cuda', gpu(24)), gpu(24), need),
      (e: Error) =>
        e instanceof UsageError &&
        /device cuda cannot hold this model: the model needs about 5\d\.\d GiB .* has 24\.0 GiB; choose a smaller model/.test(e.message),
    );
  });

  test('a model that fits, or a GPU whose memory is unknown, keeps the plan', () => {
    assert.deepEqual(fitModelToDevices(planDevices('cuda', gpu(80)), gpu(80), need).candidates, ['cuda', 'cpu']);
    const unknown = machine({ cuda: true, gpus: ['NVIDIA A10G'] });
    assert.deepEqual(fitModelToDevices(planDevices('cuda', unknown), unknown, need).candidates, ['cuda', 'cpu']);
  });
});

describe('the probe reads the real machine', () => {
  test("onnxruntime-node's binary folder is found, and the CUDA provider reported as it is", () => {
    const bin = ortBinaryDir();
    assert.ok(existsSync(join(bin, 'onnxruntime_binding.node')), bin);
    const p = probeDevices();
    assert.equal(p.cudaProvider.dir, bin);
    assert.equal(
      p.cudaProvider.installed,
      existsSync(join(bin, 'libonnxruntime_providers_cuda.so')) && existsSync(join(bin, 'libonnxruntime_providers_shared.so')),
    );
  });

  test("NVIDIA GPUs are named from the kernel driver's information files", () => {
    const root = join(tmp.path, 'fakeroot');
    mkdirSync(join(root, 'proc/driver/nvidia/gpus/0000:01:00.0'), { recursive: true });
    writeFileSync(join(root, 'proc/driver/nvidia/gpus/0000:01:00.0/information'), 'Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   16\n');
    assert.deepEqual(nvidiaGpus(root), ['NVIDIA H100 80GB HBM3']);
    assert.deepEqual(nvidiaGpus(join(tmp.path, 'empty')), []);
  });
});

describe('fallback when a provider fails to initialize', () => {
  const cpuSession = {
    inputNames: [],
    outputNames: [],
    inputTypes: {},
    inputShapes: {},
    run: async () => ({}),
    release: async () => undefined,
  } as ModelSession;

  test('each failing GPU is recorded and the next candidate tried; the model path follows the device', async () => {
    const tried: SessionSettings[] = [];
    const paths: string[] = [];
    const opened = await createSessionForDevice(
      async (d) => `/models/${resolveDtype('auto', d)}.onnx`,
      {
        device: 'auto',
        threads: 2,
        preferredOutputLocation: { 'present.0.key': 'gpu-buffer' },
        probe: machine({ cuda: true, gpus: ['NVIDIA GPU'], loader: true, icds: ['libGLX_nvidia.so.0'] }),
      },
      async (path, s) => {
        tried.push(s);
        paths.push(path);
        if (s.device === 'cuda') throw new Error('CUDA failure 100: no CUDA-capable device is detected');
        if (s.device === 'webgpu') throw new Error('Failed to get a WebGPU adapter: No supported adapters');
        return cpuSession;
      },
    );
    assert.equal(opened.device, 'cpu');
    assert.deepEqual(
      tried.map((s) => s.device),
      ['cuda', 'webgpu', 'cpu'],
    );
    assert.deepEqual(paths, ['/models/fp16.onnx', '/models/fp16.onnx', '/models/int8.onnx']);
    assert.equal(tried[0]!.threads, 2);
    assert.deepEqual(tried[0]!.preferredOutputLocation, { 'present.0.key': 'gpu-buffer' });
    assert.equal(tried[2]!.preferredOutputLocation, undefined, 'the CPU keeps every output on the host');
    assert.match(
      opened.fallbackReason!,
      /cuda failed to initialize: CUDA failure 100.*; webgpu failed to initialize: Failed to get a WebGPU adapter.*; running on the CPU instead$/,
    );
  });

  test('a GPU that works is used, with no fallback reason', async () => {
    const opened = await createSessionForDevice(
      '/m.onnx',
      { device: 'cuda', threads: 0, probe: machine({ cuda: true, gpus: ['NVIDIA GPU'] }) },
      async () => cpuSession,
    );
    assert.equal(opened.device, 'cuda');
    assert.equal(opened.fallbackReason, undefined);
  });

  test("a CPU failure is the model's own error and is thrown as it is", async () => {
    await assert.rejects(
      createSessionForDevice('/m.onnx', { device: 'cpu', threads: 0, probe: machine() }, async () => {
        throw new Error('Load model from /m.onnx failed: Protobuf parsing failed');
      }),
      /Protobuf parsing failed/,
    );
  });

  test('real onnxruntime: a CUDA provider that cannot load falls back to the CPU, which runs the model', async (t) => {
    const probe = probeDevices();
    if (probe.cudaProvider.installed && probe.nvidiaGpus.length > 0)
      return t.skip('this machine has a working CUDA setup: nothing fails to fall back from');
    const f = await writeOptCheckpoint(join(tmp.path, 'cuda-fallback'), { seed: 5 });
    const cacheDir = join(tmp.path, 'cache');
    const { modelPath } = await convertCheckpoint(f.dir, { dtype: 'fp32', cacheDir });
    // The plan a machine with the provider and a GPU would make; onnxruntime then really tries CUDA here.
    const opened = await createSessionForDevice(modelPath, {
      device: 'cuda',
      threads: 1,
      probe: { ...probe, cudaProvider: { ...probe.cudaProvider, installed: true, missing: [] }, nvidiaGpus: ['NVIDIA GPU'] },
    });
    try {
      assert.equal(opened.device, 'cpu');
      assert.match(
        opened.fallbackReason!,
        /^cuda failed to initialize: .*Failed to load shared library.*ONNXRUNTIME_NODE_INSTALL=cuda12.*running on the CPU instead of the requested cuda$/,
      );
      assert.ok(opened.session.inputNames.includes('input_ids'));
    } finally {
      await opened.session.release();
    }
  });
});

const opt = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });

/** A Vulkan driver manifest whose library does not exist: the loader finds no driver and Dawn no adapter. */
function brokenIcd(): string {
  const file = join(tmp.path, 'broken_icd.json');
  writeFileSync(
    file,
    JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: '/nonexistent/libvulkan_broken.so', api_version: '1.3.0' } }),
  );
  return file;
}

describe('the CLI --device flag', () => {
  let modelDir: string;
  const cacheDir = join(tmp.path, 'cli-cache');
  before(async () => {
    modelDir = (await writeOptCheckpoint(join(tmp.path, 'cli-model'), { seed: 7, tokenizer: true })).dir;
  });

  test('an unknown device is a usage error listing the choices', () => {
    const r = opt(['logits', '--model', modelDir, '--ids', '2,100', '--device', 'tpu']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--device must be one of auto, cpu, webgpu, cuda, got "tpu"/);
  });

  test('--device cuda without the CUDA provider is refused with the install command', (t) => {
    if (probeDevices().cudaProvider.installed) return t.skip('the CUDA provider is installed here');
    const r = opt(['logits', '--model', modelDir, '--ids', '2,100', '--device', 'cuda', '--cache-dir', cacheDir]);
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /opt: device cuda is not available: onnxruntime's CUDA provider is not installed .*ONNXRUNTIME_NODE_INSTALL=cuda12/,
    );
  });

  test("--device webgpu with a broken Vulkan driver falls back to the CPU with a warning, and the logits are the CPU's", (t) => {
    if (process.platform !== 'linux') return t.skip('the broken driver is simulated with the Linux Vulkan loader');
    const icd = brokenIcd();
    const refused = (() => {
      try {
        planDevices('webgpu', {
          ...probeDevices(),
          vulkan: { ...probeDevices().vulkan, icds: [{ file: icd, library: '/nonexistent/libvulkan_broken.so', software: false }] },
        });
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
    })();
    const r = opt(['logits', '--model', modelDir, '--ids', '2,100,200', '--device', 'webgpu', '--cache-dir', cacheDir], {
      VK_ICD_FILENAMES: icd,
      VK_DRIVER_FILES: icd,
    });
    if (refused) {
      // No Vulkan loader on this machine (apt-get install libvulkan1 to run the real fallback): the refusal is the answer.
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /device webgpu is not available: WebGPU on Linux needs Vulkan and libvulkan\.so\.1 was not found/);
      return;
    }
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /opt: warning: webgpu failed to initialize: .*Failed to get a WebGPU adapter.*running on the CPU instead of the requested webgpu/,
    );
    const out = JSON.parse(r.stdout) as { dtype: string; logits: number[] };
    assert.equal(out.dtype, 'int8', 'dtype auto re-resolves for the CPU it fell back to');
    const cpu = JSON.parse(
      opt(['logits', '--model', modelDir, '--ids', '2,100,200', '--device', 'cpu', '--cache-dir', cacheDir]).stdout,
    ) as { logits: number[] };
    assert.equal(maxAbsDiff(out.logits, cpu.logits), 0);
  });
});

describe('the runtime process reports a fallback', { timeout: 120_000 }, () => {
  test('initialize answers device cpu with deviceFallback, and logs a warning', async (t) => {
    if (process.platform !== 'linux') return t.skip('the broken driver is simulated with the Linux Vulkan loader');
    const probe = probeDevices();
    if (!probe.vulkan.loader)
      return t.skip('no Vulkan loader (libvulkan.so.1): apt-get install libvulkan1 to exercise a real WebGPU failure');
    const modelDir = (await writeOptCheckpoint(join(tmp.path, 'rpc-model'), { seed: 9, tokenizer: true })).dir;
    const icd = brokenIcd();
    const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', 'rpc'], {
      stdio: 'pipe',
      env: { ...process.env, VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: icd },
    });
    child.stderr.resume();
    const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
    const logs: string[] = [];
    connection.onNotification(Log, (p: { message: string }) => void logs.push(p.message));
    connection.listen();
    try {
      const init = await connection.sendRequest(Initialize, {
        protocolVersion: PROTOCOL_VERSION,
        model: modelDir,
        device: 'webgpu',
        cacheDir: join(tmp.path, 'rpc-cache'),
      });
      assert.equal(init.info.device, 'cpu');
      assert.equal(init.info.dtype, 'int8');
      assert.match(init.info.deviceFallback ?? '', /webgpu failed to initialize: .*No supported adapters/);
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(
        logs.some((l) => /device fallback: webgpu failed to initialize/.test(l)),
        logs.join('\n'),
      );
      const auto = await connection.sendRequest(Initialize, {
        protocolVersion: PROTOCOL_VERSION,
        model: modelDir,
        device: 'auto',
        cacheDir: join(tmp.path, 'rpc-cache'),
      });
      assert.equal(auto.info.deviceFallback, undefined, 'auto on this machine plans what it can run');
    } finally {
      connection.dispose();
      child.stdin.end();
      await new Promise((r) => child.once('exit', r));
    }
  });
});

// loadOptModel is what the CLI and the engine call: the same fallback in process, decoded end to end.
describe('loadOptModel on the CPU reports its device', () => {
  test('device and no fallback', async () => {
    const f = await writeOptCheckpoint(join(tmp.path, 'load-model'), { seed: 11, tokenizer: true });
    const model = await loadOptModel(f.dir, { device: 'cpu', dtype: 'fp32', cacheDir: join(tmp.path, 'cache') });
    try {
      assert.equal(model.device, 'cpu');
      assert.equal(model.deviceFallback, undefined);
      const out = await model.decoder.forward({ inputIds: ids64([[2, 100]]), batch: 1, attentionMask: ids64([[1, 1]]), logitsToKeep: 1 });
      assert.equal(out.logits.length, f.config.vocab_size);
    } finally {
      await model.dispose();
    }
  });
});
