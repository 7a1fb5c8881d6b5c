// Which execution provider a load tries, in order, from what the machine has: pure logic over a
// DeviceProbe (probe.ts reads the real machine), so every rule is tested with made-up machines.
//
//   auto    CUDA when onnxruntime's CUDA provider is installed and an NVIDIA GPU is present, else
//           WebGPU when a hardware adapter is likely (Vulkan on Linux, Metal, D3D12), else the CPU.
//   cpu     the CPU.
//   cuda    refused (DeviceUnavailableError) when the provider or the GPU is missing; else CUDA, then the CPU.
//   webgpu  refused when Linux has no Vulkan loader or driver; else WebGPU, then the CPU.
//
// A GPU candidate that is tried and fails to initialize falls through to the next one (open.ts):
// the CPU is always last, so a broken GPU setup never leaves the runtime without a model.

import { DeviceUnavailableError, UsageError } from '../../../protocol/errors.js';
import { gib } from '../memory.js';

export const EXECUTION_DEVICES = ['cpu', 'webgpu', 'cuda'] as const;
/** An onnxruntime execution provider this runtime can run on. */
export type ExecutionDevice = (typeof EXECUTION_DEVICES)[number];
export const DEVICE_CHOICES = ['auto', ...EXECUTION_DEVICES] as const;
/** What a user may ask for: a provider, or `auto`. */
export type DeviceChoice = (typeof DEVICE_CHOICES)[number];

/** How to get onnxruntime-node's CUDA provider, which npm does not ship in the package. */
export const CUDA_INSTALL_HINT =
  'reinstall onnxruntime-node with its CUDA 12 provider: `ONNXRUNTIME_NODE_INSTALL=cuda12 npm install onnxruntime-node` (it downloads libonnxruntime_providers_cuda.so from NuGet), and have the CUDA 12 and cuDNN 9 libraries on the library path';
export const VULKAN_INSTALL_HINT =
  "install the GPU's Vulkan driver (Debian/Ubuntu: `apt-get install libvulkan1 mesa-vulkan-drivers` for AMD/Intel; NVIDIA's driver ships its own Vulkan ICD)";

/** What the machine has, as far as choosing a provider goes. Every field is cheap to find out. */
export interface DeviceProbe {
  platform: NodeJS.Platform;
  /** onnxruntime-node's CUDA provider libraries next to its binding (`missing` names the absent ones). */
  cudaProvider: { installed: boolean; dir: string; missing: string[] };
  /** NVIDIA GPUs the kernel driver lists (/proc/driver/nvidia/gpus/…/information), or one unnamed entry for /dev/nvidia0. */
  nvidiaGpus: string[];
  /** Linux: the Vulkan loader and the installed drivers (ICDs); Dawn, onnxruntime's WebGPU, runs on Vulkan there. */
  vulkan: {
    loader: boolean;
    icds: { file: string; library: string; software: boolean }[];
    /** DRM render nodes (/dev/dri/renderD*): a GPU that a Mesa driver can open. */
    renderNodes: number;
  };
  /** Memory of the first NVIDIA GPU (nvidia-smi's memory.total), when known. */
  gpuMemoryBytes?: number;
}

export interface DevicePlan {
  requested: DeviceChoice;
  /** Providers to try, in order; always ends with the CPU. */
  candidates: ExecutionDevice[];
  /** For `auto`: why each GPU provider was not a candidate. */
  skipped: { device: ExecutionDevice; reason: string }[];
}

export function isDeviceChoice(s: unknown): s is DeviceChoice {
  return typeof s === 'string' && (DEVICE_CHOICES as readonly string[]).includes(s);
}

export function planDevices(requested: DeviceChoice, probe: DeviceProbe): DevicePlan {
  if (!isDeviceChoice(requested)) throw new UsageError(`unknown device "${String(requested)}": choose one of ${DEVICE_CHOICES.join(', ')}`);
  if (requested === 'cpu') return { requested, candidates: ['cpu'], skipped: [] };
  const cuda = cudaBlocker(probe);
  const webgpu = webgpuBlocker(probe, requested === 'auto');
  if (requested === 'cuda') {
    if (cuda) throw new DeviceUnavailableError(`device cuda is not available: ${cuda}; or choose device auto or cpu`);
    return { requested, candidates: ['cuda', 'cpu'], skipped: [] };
  }
  if (requested === 'webgpu') {
    if (webgpu) throw new DeviceUnavailableError(`device webgpu is not available: ${webgpu}; or choose device auto or cpu`);
    return { requested, candidates: ['webgpu', 'cpu'], skipped: [] };
  }
  const candidates: ExecutionDevice[] = [];
  const skipped: DevicePlan['skipped'] = [];
  for (const [device, blocker] of [
    ['cuda', cuda],
    ['webgpu', webgpu],
  ] as const) {
    if (blocker) skipped.push({ device, reason: blocker });
    else candidates.push(device);
  }
  candidates.push('cpu');
  return { requested, candidates, skipped };
}

/** Why CUDA cannot run here, or undefined when it may. */
function cudaBlocker(p: DeviceProbe): string | undefined {
  // onnxruntime-node downloads its CUDA provider for linux/x64 only (script/install-metadata.js).
  if (p.platform !== 'linux') return `onnxruntime-node has a CUDA provider for Linux only (this is ${p.platform})`;
  if (!p.cudaProvider.installed)
    return `onnxruntime's CUDA provider is not installed (${p.cudaProvider.missing.join(', ')} missing in ${p.cudaProvider.dir}): ${CUDA_INSTALL_HINT}`;
  if (p.nvidiaGpus.length === 0)
    return 'no NVIDIA GPU found (no /proc/driver/nvidia/gpus, no /dev/nvidia0): install the NVIDIA driver, or run where the GPU is visible (containers need --gpus)';
  return undefined;
}

/**
 * Why WebGPU cannot run here, or undefined when it may. `hardwareOnly` (auto) also rules out a
 * Linux machine whose only Vulkan drivers are software (lavapipe, SwiftShader) or that has no GPU
 * device node: such an adapter runs shaders on the CPU, slower than onnxruntime's CPU provider.
 */
function webgpuBlocker(p: DeviceProbe, hardwareOnly: boolean): string | undefined {
  if (p.platform === 'darwin' || p.platform === 'win32') return undefined; // Metal / D3D12 are part of the OS
  if (p.platform !== 'linux') return `WebGPU is not supported on ${p.platform}`;
  if (!p.vulkan.loader) return `WebGPU on Linux needs Vulkan and libvulkan.so.1 was not found: ${VULKAN_INSTALL_HINT}`;
  if (p.vulkan.icds.length === 0) return `WebGPU on Linux needs Vulkan and no Vulkan driver (ICD) is installed: ${VULKAN_INSTALL_HINT}`;
  if (!hardwareOnly) return undefined;
  const hardware = p.vulkan.icds.filter((i) => !i.software);
  if (hardware.length === 0)
    return `only software Vulkan drivers are installed (${p.vulkan.icds.map((i) => i.library).join(', ')}), which are slower than the CPU provider`;
  const nvidiaIcd = hardware.some((i) => /nvidia/i.test(i.library) || /nvidia/i.test(i.file));
  if (p.vulkan.renderNodes === 0 && !(nvidiaIcd && p.nvidiaGpus.length > 0))
    return 'no GPU device is visible (no /dev/dri/renderD*, no NVIDIA GPU with its Vulkan driver)';
  return undefined;
}

/**
 * Drops the CUDA candidate when the GPU's memory cannot hold the model (`need`: bytes at the
 * precision that device would use). An explicit `cuda` is refused with the figures; `auto` moves on
 * to the next candidate with the reason in `skipped`. WebGPU does not say its memory: a model too
 * large for it fails to initialize and falls back like any other failure.
 */
export function fitModelToDevices(plan: DevicePlan, probe: DeviceProbe, need: (device: ExecutionDevice) => number): DevicePlan {
  const have = probe.gpuMemoryBytes;
  if (have === undefined || !plan.candidates.includes('cuda')) return plan;
  const bytes = need('cuda');
  if (bytes <= have) return plan;
  const reason = `the model needs about ${gib(bytes)} on the GPU and ${probe.nvidiaGpus[0] ?? 'the GPU'} has ${gib(have)}`;
  if (plan.requested === 'cuda')
    throw new DeviceUnavailableError(
      `device cuda cannot hold this model: ${reason}; choose a smaller model, a lower precision (dtype int8 or int4, which run on the CPU), or device cpu`,
    );
  return { ...plan, candidates: plan.candidates.filter((d) => d !== 'cuda'), skipped: [...plan.skipped, { device: 'cuda', reason }] };
}

/** The status line for a load that did not run where it was asked to. */
export function fallbackMessage(
  requested: DeviceChoice,
  failures: { device: ExecutionDevice; error: string }[],
  used: ExecutionDevice,
): string {
  const parts = failures.map(
    ({ device, error }) =>
      `${device} failed to initialize: ${oneLine(error)}${device === 'cuda' ? ` (${CUDA_INSTALL_HINT})` : device === 'webgpu' ? ` (WebGPU needs a working GPU driver: ${VULKAN_INSTALL_HINT})` : ''}`,
  );
  return `${parts.join('; ')}; running on ${used === 'cpu' ? 'the CPU' : used} instead${requested === 'auto' ? '' : ` of the requested ${requested}`}`;
}

/** onnxruntime's messages carry source paths and newlines; keep the part that says what failed. */
function oneLine(message: string): string {
  const lines = message
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  // onnxruntime prefixes its errors with the source location and the check that failed
  // ("… adapter_result.status == wgpu::RequestAdapterStatus::Success was false. "): what follows says it in words.
  const text = lines
    .join(' ')
    .replace(/\/onnxruntime_src\/\S+ (\S+::)*\S+\(.*?\)(::<lambda\(\)>)? /g, '')
    .replace(/^\S+ [!=]= \S+ was false\. (?=\S)/, '');
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}
