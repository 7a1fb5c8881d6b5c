// Reads what select.ts needs from the real machine: files and device nodes (plus nvidia-smi for the
// memory size where an NVIDIA GPU is present), no GPU API calls, so probing is quick and cannot crash
// the process. Whether a GPU
// really initializes is learnt by creating the session (open.ts), which falls back if it fails.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { DeviceProbe } from './select.js';

/** What onnxruntime-node's install script adds for CUDA (script/install-metadata.js, manifest linux/x64:cuda12). */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];

let probed: DeviceProbe | undefined;

/** The machine's devices, probed once per process (a load, the body graph and `convert` all ask; nvidia-smi can take seconds). */
export function probeDevices(): DeviceProbe {
  return (probed ??= probe());
}

function probe(): DeviceProbe {
  const bin = ortBinaryDir();
  const missing = CUDA_PROVIDER_FILES.filter((f) => !existsSync(join(bin, f)));
  const gpus = process.platform === 'linux' ? nvidiaGpus() : [];
  return {
    platform: process.platform,
    cudaProvider: { installed: missing.length === 0, dir: bin, missing },
    nvidiaGpus: gpus,
    vulkan: process.platform === 'linux' ? vulkan() : { loader: false, icds: [], renderNodes: 0 },
    gpuMemoryBytes: gpus.length > 0 ? nvidiaMemoryBytes() : undefined,
  };
}

/**
 * The first GPU's memory from nvidia-smi (the kernel driver's /proc files do not say). The one
 * process the probe starts, only where an NVIDIA GPU is present, bounded by a timeout.
 */
export function nvidiaMemoryBytes(): number | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      timeout: 3000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const mib = Number(out.split('\n')[0]?.trim());
    return Number.isFinite(mib) && mib > 0 ? mib * 2 ** 20 : undefined;
  } catch {
    return undefined; // no nvidia-smi: the size is learnt when the session fails to allocate
  }
}

/**
 * The folder holding onnxruntime_binding.node and libonnxruntime: resolved from the package the
 * runtime loads (node_modules in the repository, dist/node_modules in the VSIX and gpu-check).
 */
export function ortBinaryDir(): string {
  const entry = createRequire(import.meta.url).resolve('onnxruntime-node'); // …/onnxruntime-node/dist/index.js
  return join(dirname(dirname(entry)), 'bin', 'napi-v6', process.platform, process.arch);
}

/** GPU names from the NVIDIA kernel driver, e.g. "NVIDIA H100 80GB HBM3". */
export function nvidiaGpus(root = '/'): string[] {
  const gpus = join(root, 'proc/driver/nvidia/gpus');
  const names: string[] = [];
  for (const id of safeReaddir(gpus)) {
    const info = safeRead(join(gpus, id, 'information'));
    names.push(/^Model:\s*(.+)$/m.exec(info ?? '')?.[1]?.trim() ?? `NVIDIA GPU ${id}`);
  }
  if (names.length === 0 && existsSync(join(root, 'dev/nvidia0'))) names.push('NVIDIA GPU');
  return names;
}

const LOADER_DIRS = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/lib',
  '/lib/x86_64-linux-gnu',
  '/lib64',
];
const ICD_DIRS = ['/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/share/vulkan/icd.d'];
/** Drivers that run on the CPU: Mesa's lavapipe (llvmpipe) and Google's SwiftShader. */
const SOFTWARE_ICD = /lvp|lavapipe|llvmpipe|swiftshader/i;

function vulkan(): DeviceProbe['vulkan'] {
  const libDirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...LOADER_DIRS];
  const loader = libDirs.some((d) => existsSync(join(d, 'libvulkan.so.1')));
  // The Vulkan loader's own search order: VK_DRIVER_FILES / VK_ICD_FILENAMES replace the folders.
  const override = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
  const xdg = (process.env.XDG_DATA_DIRS ?? '')
    .split(':')
    .filter(Boolean)
    .map((d) => join(d, 'vulkan/icd.d'));
  const files =
    override !== undefined
      ? override
          .split(':')
          .filter(Boolean)
          .flatMap((p) => (p.endsWith('.json') ? [p] : safeReaddir(p).map((f) => join(p, f))))
      : [...new Set([...ICD_DIRS, ...xdg, join(homedir(), '.local/share/vulkan/icd.d')])].flatMap((d) =>
          safeReaddir(d)
            .filter((f) => f.endsWith('.json'))
            .map((f) => join(d, f)),
        );
  const icds: DeviceProbe['vulkan']['icds'] = [];
  for (const file of files) {
    try {
      const library = String((JSON.parse(readFileSync(file, 'utf8')) as { ICD?: { library_path?: string } }).ICD?.library_path ?? '');
      if (library) icds.push({ file, library, software: SOFTWARE_ICD.test(library) || SOFTWARE_ICD.test(file) });
    } catch {
      // An unreadable manifest is one the Vulkan loader skips too.
    }
  }
  const renderNodes = safeReaddir('/dev/dri').filter((f) => f.startsWith('renderD')).length;
  return { loader, icds, renderNodes };
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function safeRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
