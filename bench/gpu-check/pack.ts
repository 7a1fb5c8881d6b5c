// Packs the GPU check (check.ts) to run on a Linux x64 machine that may have no Node and no
// network: an esbuild bundle of the check and the runtime, onnxruntime-node with its native
// libraries (the CUDA provider's too when installed here, or from --cuda-libs), the tokenizers
// module, GPT-2's BPE files the fixture writer reads, an xz-compressed Node binary and run.sh,
// which unpacks Node on first use and runs the check. Writes a folder and a .tar.gz of it.
//
//   npm run gpu-check:pack -- [--out DIR] [--node PATH] [--cuda-libs DIR] [--xz-level 0-9] [--no-tar]

import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '../..');
const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: join(root, 'dist/gpu-check') },
    node: { type: 'string', default: process.execPath },
    'cuda-libs': { type: 'string' },
    'xz-level': { type: 'string', default: '9' },
    'no-tar': { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  process.stderr.write(`gpu-check:pack: ${message}\n`);
  process.exit(2);
}

if (process.platform !== 'linux' || process.arch !== 'x64')
  fail(
    `packs for linux-x64 from a linux-x64 machine (this is ${process.platform}-${process.arch}): the native libraries come from this checkout`,
  );
const out = resolve(args.out);
const level = Number(args['xz-level']);
if (!Number.isInteger(level) || level < 0 || level > 9) fail(`--xz-level must be 0-9, got "${args['xz-level']}"`);
const ORT_BIN = 'onnxruntime-node/bin/napi-v6/linux/x64';
const CUDA_FILES = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// 1. The check and everything it imports, in one ESM file; native modules stay external.
await build({
  entryPoints: [join(root, 'bench/gpu-check/check.ts')],
  outfile: join(out, 'check.mjs'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  external: ['onnxruntime-node', 'tokenizers', 'gpt-3-encoder'],
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});

// 2. Native modules, this platform's binaries only (as scripts/package.mjs does for the VSIX).
const nm = (p: string) => join(root, 'node_modules', p);
const copy = (from: string, to = from) => {
  if (!existsSync(nm(from))) fail(`node_modules/${from} is missing: run npm ci first`);
  mkdirSync(dirname(join(out, 'node_modules', to)), { recursive: true });
  cpSync(nm(from), join(out, 'node_modules', to), { recursive: true, dereference: true });
};
copy('onnxruntime-node/package.json');
for (const f of readdirSync(nm('onnxruntime-node/dist')).filter((f) => f.endsWith('.js'))) copy(`onnxruntime-node/dist/${f}`);
copy(ORT_BIN); // the binding, libonnxruntime.so.1, and the CUDA provider when `ONNXRUNTIME_NODE_INSTALL=cuda12` put it here
copy('onnxruntime-common/package.json');
copy('onnxruntime-common/dist/cjs');
for (const f of ['package.json', 'index.js', 'tokenizers.linux-x64-gnu.node']) copy(`tokenizers/${f}`);
for (const f of ['package.json', 'index.js', 'Encoder.js', 'encoder.json', 'vocab.bpe']) copy(`gpt-3-encoder/${f}`);
if (args['cuda-libs']) {
  for (const f of CUDA_FILES) {
    const src = join(resolve(args['cuda-libs']), f);
    if (!existsSync(src))
      fail(
        `--cuda-libs: ${src} is missing (take both ${CUDA_FILES.join(' and ')} from the NuGet package Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0, runtimes/linux-x64/native/)`,
      );
    cpSync(src, join(out, 'node_modules', ORT_BIN, f));
  }
}
const hasCuda = CUDA_FILES.every((f) => existsSync(join(out, 'node_modules', ORT_BIN, f)));

// 3. Node, xz-compressed (run.sh unpacks it with xz, or Python's lzma where xz is missing).
if (!existsSync(args.node)) fail(`--node ${args.node} does not exist`);
execFileSync('sh', ['-c', `xz -T0 -${level} -c "$1" > "$2"`, 'sh', args.node, join(out, 'node.xz')]);
const nodeVersion = execFileSync(args.node, ['--version'], { encoding: 'utf8' }).trim();

writeFileSync(join(out, 'run.sh'), RUN_SH(nodeVersion));
chmodSync(join(out, 'run.sh'), 0o755);
writeFileSync(join(out, 'README.txt'), README(nodeVersion, hasCuda));

let tarball: string | undefined;
if (!args['no-tar']) {
  tarball = `${out}.tar.gz`;
  execFileSync('tar', ['-czf', tarball, '-C', dirname(out), basename(out)]);
}
const mib = (p: string) => `${(du(p) / 2 ** 20).toFixed(1)} MiB`;
console.log(
  `packed ${relative(process.cwd(), out) || out} (${mib(out)}; node ${nodeVersion} ${mib(join(out, 'node.xz'))} as xz; CUDA provider ${hasCuda ? 'included' : 'not included'})${tarball ? `\n  ${tarball} ${mib(tarball)}` : ''}`,
);
if (!hasCuda) console.log('  without the CUDA provider the check runs WebGPU (Vulkan) only; see README.txt to add it');

function du(p: string): number {
  const s = statSync(p);
  return s.isDirectory() ? readdirSync(p).reduce((n, f) => n + du(join(p, f)), 0) : s.size;
}

function RUN_SH(version: string): string {
  return `#!/bin/sh
# Runs the OPT GPU check with the Node ${version} it brings (unpacked once into ./node/).
# Usage: ./run.sh [--device auto|cuda|webgpu|cpu] [--shapes 125m,1.3b] [--prompt 128] [--steps 64] [--out FILE]
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
node="$here/node/bin/node"
if [ ! -x "$node" ]; then
  mkdir -p "$here/node/bin"
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$here/node.xz" > "$node.part"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$here/node.xz" "$node.part"
  else
    echo "gpu-check: neither xz nor python3 is installed to unpack node.xz (apt-get install xz-utils)" >&2
    exit 2
  fi
  chmod +x "$node.part"
  mv "$node.part" "$node"
fi
# The CUDA provider finds libcudart/libcublas/libcudnn on the library path; NVIDIA's usual places are added.
for d in /usr/local/cuda/lib64 /usr/local/cuda-12/lib64 /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done
export LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:-}"
export GPU_CHECK_HOME="$here"
exec "$node" "$here/check.mjs" "$@"
`;
}

function README(version: string, cuda: boolean): string {
  return `OPT GPU check (opt-complete)

  ./run.sh                      every GPU provider this machine can try (CUDA, WebGPU over Vulkan)
  ./run.sh --device cuda        one provider; --device cpu runs the same checks on the CPU
  ./run.sh --shapes 125m        opt-125m-shaped only (default 125m,1.3b)

Writes gpu-check-results.json in the current folder and prints a table: logits parity of the GPU's
fp16 graph against the CPU's fp32 (prefill and decode through the KV cache, relative tolerance
2e-2), time to first token, prefill and decode tokens/s at batch 1 and 8. Random checkpoints and
converted models go to ./work (opt-1.3b: about 2.6 GB checkpoint + 5 GB fp32 and 2.6 GB fp16 ONNX).
Needs: Linux x64, glibc 2.28+, nothing else (Node ${version} is in node.xz).

CUDA: the onnxruntime CUDA provider is ${cuda ? 'included' : 'NOT included'} in this pack.${
    cuda
      ? ''
      : `
  To add it: copy libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so from the
  NuGet package Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 (runtimes/linux-x64/native/) into
  node_modules/${ORT_BIN}/, or pack on a machine where ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci ran.`
  }
  The provider also needs the CUDA 12 runtime, cuBLAS and cuDNN 9 libraries on the library path
  (run.sh adds /usr/local/cuda/lib64). Without them CUDA fails to start, the check says why and
  goes on with WebGPU, which needs only the NVIDIA driver's Vulkan ICD.
`;
}
